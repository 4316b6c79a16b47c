"""Duplicates at registration: near-duplicates share a split, the same bytes under two labels are skipped."""

import json
import shutil

import numpy as np
from PIL import Image

from tests.cli.test_errors import datasets, run


def painting(path, seed, size=(160, 120)):
    """A picture with structure (smooth random blobs), so that its perceptual hash means something."""
    rng = np.random.default_rng(seed)
    im = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(size, Image.Resampling.BICUBIC)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return im


def resized_jpeg(im, path, scale=0.5, quality=60):
    im.resize((int(im.width * scale), int(im.height * scale)), Image.Resampling.BICUBIC).save(
        path, "JPEG", quality=quality
    )


def splits(env, name):
    r = run(
        env,
        "query",
        "SELECT i.path, i.split FROM images i JOIN datasets d ON d.id = i.dataset_id "
        f"WHERE d.name = '{name}' AND i.status = 'ok'",
        "--format",
        "json",
    )
    return {row["path"]: row["split"] for row in json.loads(r.stdout)}


def test_a_resized_re_encoded_copy_lands_in_the_split_of_its_original(cli_env, tmp_path):
    root = tmp_path / "art"
    originals = {}
    for label, seeds in (("Anna", range(0, 10)), ("Bert", range(10, 20))):
        for s in seeds:
            originals[s] = painting(root / label / f"{s}.png", s)
    copies = {
        1: "Anna/1-small.jpg",
        4: "Anna/4-small.jpg",
        12: "Bert/12-small.jpg",
        15: "Anna/15-from-bert.jpg",
    }  # the last one mixes labels
    for s, copy in copies.items():
        resized_jpeg(originals[s], root / copy, scale=0.4, quality=50)
    pairs = [(f"{'Anna' if s < 10 else 'Bert'}/{s}.png", copy) for s, copy in copies.items()]

    apart = 0
    for seed in range(6):
        r = run(cli_env, "dataset", "add", f"s{seed}", str(root), "--seed", str(seed))
        assert r.exit_code == 0, r.output
        assert "24 images, 2 labels" in r.output and "skipped" not in r.output
        assert "near-duplicates: 4 groups, 8 images, each group kept in one split" in r.output
        assert "1 with mixed labels:" in r.output
        where = splits(cli_env, f"s{seed}")
        assert all(where[a] == where[b] for a, b in pairs), (seed, where)
        assert "Anna/15-from-bert.jpg (Anna), Bert/15.png (Bert)" in r.output  # the mixed group is reported

        r = run(cli_env, "dataset", "add", f"off{seed}", str(root), "--seed", str(seed), "--near-dup-bits", "0")
        assert r.exit_code == 0 and "near-duplicates: not grouped" in r.output, r.output
        where = splits(cli_env, f"off{seed}")
        apart += sum(where[a] != where[b] for a, b in pairs)
    assert apart > 0  # without the groups the copies do land in other splits: the test above has teeth

    show = run(cli_env, "dataset", "show", "s0")
    assert show.exit_code == 0, show.output
    assert "4 near-duplicate groups, 8 images, each in one split; 1 with mixed labels" in show.output
    assert "Anna/1-small.jpg, Anna/1.png" in show.output and "Anna, Bert" in show.output
    short = run(cli_env, "dataset", "show", "s0", "--groups", "1").output
    assert "1 shown (--groups)" in short and "Bert/15.png" in short and "Anna/1.png" not in short  # mixed first
    attrs = json.loads(
        run(
            cli_env, "query", "SELECT attrs FROM images WHERE path = 'Anna/1-small.jpg' LIMIT 1", "--format", "json"
        ).stdout
    )[0]["attrs"]
    attrs = json.loads(attrs) if isinstance(attrs, str) else attrs
    assert len(attrs["phash"]) == 16 and attrs["near_dup_group"] >= 1


def test_the_same_bytes_under_two_labels_are_skipped_and_reported(cli_env, tmp_path):
    root = tmp_path / "art"
    for label, seeds in (("Anna", range(0, 4)), ("Bert", range(4, 8))):
        for s in seeds:
            painting(root / label / f"{s}.png", s)
    shutil.copy(root / "Anna" / "0.png", root / "Bert" / "which-artist.png")  # one file, two labels
    shutil.copy(root / "Bert" / "5.png", root / "Bert" / "5-again.png")  # one file twice under one label

    r = run(cli_env, "dataset", "add", "d", str(root))
    assert r.exit_code == 0, r.output
    assert (
        "dataset 'd': 7 images, 2 labels, 3 skipped (2 ambiguous (the same bytes under two labels: every copy "
        "skipped), 1 duplicate (the same bytes again under one label: one copy kept))"
    ) in r.stdout
    assert (
        "  skipped Anna/0.png: ambiguous: same bytes as Bert/which-artist.png under label 'Bert'; every copy skipped"
        in r.stderr.splitlines()
    )
    assert (
        "  skipped Bert/which-artist.png: ambiguous: same bytes as Anna/0.png under label 'Anna'; every copy skipped"
        in r.stderr.splitlines()
    )
    assert "  skipped Bert/5.png: duplicate of Bert/5-again.png" in r.stderr.splitlines()
    assert set(splits(cli_env, "d")) == {
        "Anna/1.png",
        "Anna/2.png",
        "Anna/3.png",
        "Bert/4.png",
        "Bert/5-again.png",
        "Bert/6.png",
        "Bert/7.png",
    }
    (row,) = datasets(cli_env)
    assert (row["images"], row["skipped"]) == (7, 3)
    show = run(cli_env, "dataset", "show", "d").output
    assert "3 skipped files (2 ambiguous, 1 duplicate)" in show
    assert "Bert/which-artist.png" in show and "under label 'Anna'" in show
