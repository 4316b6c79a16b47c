"""Bad input: one clear line, a non-zero exit, nothing half-written."""

import io
import json

import pytest
from PIL import Image

from tests.cli_run import assert_clean_exit, invoke


def run(env, *args):
    return invoke(args, env)  # fails on an exception the runner would keep out of the output


def assert_one_line_error(result, code, *fragments):
    assert_clean_exit(result, code)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 if code == 1 else lines, result.output
    for f in fragments:
        assert f in result.output


def datasets(env):
    return json.loads(run(env, "dataset", "list", "--json").stdout)


def write_image(path, color=(200, 30, 30), size=(24, 20)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def test_unknown_dataset(cli_env):
    r = run(cli_env, "train", "--dataset", "nope", "--arch", "resnet18", "--epochs", "1")
    assert_one_line_error(r, 1, "unknown dataset 'nope'")


def test_unknown_arch_is_a_usage_error(cli_env):
    r = run(cli_env, "train", "--dataset", "x", "--arch", "resnet9000")
    assert_clean_exit(r, 2)
    assert "resnet9000" in r.output


def test_path_that_is_not_a_folder(cli_env, tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("hello")
    assert_one_line_error(run(cli_env, "dataset", "add", "d", str(f)), 1, "not a folder")
    assert_one_line_error(run(cli_env, "dataset", "add", "d", str(tmp_path / "missing")), 1)
    assert datasets(cli_env) == []


def test_unprintable_characters_in_an_error_are_escaped(cli_env, tmp_path):
    # A newline or a record separator in a quoted name must not split the error line.
    for odd in ("two\nlines", "record\x1esep", "bidi\u202eoverride"):
        r = run(cli_env, "dataset", "add", "d", str(tmp_path / odd))
        assert_one_line_error(r, 1, odd.encode("unicode_escape").decode("ascii"))
    assert datasets(cli_env) == []


def test_folder_without_images(cli_env, tmp_path):
    (tmp_path / "empty" / "artist").mkdir(parents=True)
    (tmp_path / "empty" / "artist" / "notes.txt").write_text("no images here")
    assert_one_line_error(run(cli_env, "dataset", "add", "d", str(tmp_path / "empty")), 1, "no images")
    assert datasets(cli_env) == []


def test_corrupt_and_empty_files_are_recorded_and_skipped(cli_env, tmp_path):
    root = tmp_path / "art"
    for artist, color in (("Anna", (200, 20, 20)), ("Bért", (20, 20, 200))):
        for i in range(4):
            write_image(root / artist / f"{i}.png", (color[0], i * 30, color[2]))
    (root / "Anna" / "empty.jpg").write_bytes(b"")
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (1, 2, 3)).save(buf, "JPEG")
    (root / "Bért" / "truncated.jpg").write_bytes(buf.getvalue()[:60])
    (root / "Bért" / "text.png").write_text("not a png")

    r = run(cli_env, "dataset", "add", "mixed", str(root), "--seed", "3")
    assert r.exit_code == 0, r.output
    assert "8 images" in r.output and "3 skipped" in r.output
    (row,) = datasets(cli_env)
    assert (row["images"], row["skipped"], row["labels"]) == (8, 3, 2)
    show = run(cli_env, "dataset", "show", "mixed").output
    assert "empty.jpg" in show and "truncated.jpg" in show and "Bért" in show


def test_duplicate_dataset_name_writes_nothing_twice(cli_env, tmp_path):
    for artist in ("a", "b"):
        for i in range(3):  # other bytes per artist: the same file under two labels would be skipped
            write_image(tmp_path / "art" / artist / f"{i}.png", (i * 50, ord(artist), 0))
    assert run(cli_env, "dataset", "add", "d", str(tmp_path / "art")).exit_code == 0
    assert_one_line_error(run(cli_env, "dataset", "add", "d", str(tmp_path / "art")), 1, "already exists")
    assert datasets(cli_env)[0]["images"] == 6


def test_bad_split(cli_env, tmp_path):
    assert_one_line_error(run(cli_env, "dataset", "add", "d", str(tmp_path), "--split", "0.5,0.1"), 1)


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO datasets (name, root, format, seed, split, classes, created_at) VALUES ('x','/','f',0,'[]','[]','2020-01-01')",
        "DELETE FROM jobs",
        "DROP TABLE jobs",
        "UPDATE jobs SET status = 'failed'",
        "PRAGMA journal_mode=DELETE",
        "ATTACH DATABASE '/tmp/atelier-evil.db' AS evil",
        "SELECT 1; DELETE FROM jobs",
        "WITH x AS (SELECT 1) DELETE FROM jobs",
        "CREATE TABLE t (a int)",
    ],
)
def test_query_refuses_writes(cli_env, sql):
    assert run(cli_env, "db", "upgrade").exit_code == 0
    r = run(cli_env, "query", sql)
    assert_one_line_error(r, 1)
    ok = run(cli_env, "query", "SELECT count(*) AS n FROM jobs", "--format", "json")
    assert ok.exit_code == 0 and json.loads(ok.stdout) == [{"n": 0}]


def test_query_formats(cli_env):
    assert run(cli_env, "db", "upgrade").exit_code == 0
    r = run(cli_env, "query", "SELECT 1 AS one, 'é' AS two", "--format", "csv")
    assert r.exit_code == 0 and r.stdout.splitlines() == ["one,two", "1,é"]


def synth(env, name="toy"):
    r = run(env, "dataset", "synth", name, "--artists", "3", "--per-artist", "4", "--size", "32")
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize(
    "args,code,fragment",
    [
        (["--arch", "logistic", "--head", "spp"], 1, "'logistic' has none"),
        (["--arch", "resnet18", "--augment", "mixup"], 2, "mixup"),
        (["--arch", "resnet18", "--dense", "128,x"], 1, "--dense"),
        (["--arch", "resnet18", "--mode", "staged"], 1, "--head-epochs"),
        (["--arch", "inception_v3", "--image-size", "64"], 1, "at least 75"),
        (
            ["--arch", "resnet18", "--weights", "/nonexistent/w.safetensors"],
            1,
            "weight file /nonexistent/w.safetensors not found",
        ),
        (["--arch", "resnet18", "--weights", "never-imported"], 1, "no weights 'never-imported' for resnet18"),
        (
            ["--arch", "resnet18"],
            1,
            "`atelier weights import resnet18-f37072fd.pth --arch resnet18`",
        ),  # imagenet by default
        (["--arch", "baseline-cnn", "--weights", "imagenet"], 1, "baseline-cnn has no ImageNet weights"),
    ],
)
def test_bad_training_options_submit_nothing(cli_env, args, code, fragment):
    synth(cli_env)
    r = run(cli_env, "train", "--dataset", "toy", "--epochs", "1", *args)
    assert_clean_exit(r, code)
    assert fragment in r.output, r.output
    jobs = json.loads(run(cli_env, "query", "SELECT count(*) AS n FROM jobs", "--format", "json").stdout)
    assert jobs == [{"n": 0}]


def test_top_zero_is_refused(cli_env, tmp_path):
    for artist in ("a", "b"):
        for i in range(3):
            write_image(tmp_path / "art" / artist / f"{i}.png")
    assert_one_line_error(run(cli_env, "dataset", "add", "d", str(tmp_path / "art"), "--top", "0"), 1, "--top")
    assert datasets(cli_env) == []
