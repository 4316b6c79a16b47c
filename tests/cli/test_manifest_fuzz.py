"""Any csv manifest, however malformed, is either registered (with every image inside
the dataset folder) or refused in one line with nothing written."""

import csv
import io
import itertools
import json

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.cli.test_errors import datasets, run
from tests.cli_run import assert_clean_exit

REAL = ["a.png", "sub/b.png", "sub/c.png"]
PATHS = (
    st.sampled_from(REAL)
    | st.sampled_from(
        [
            "../a.png",
            "../../etc/passwd",
            "/etc/passwd",
            "sub/../a.png",
            "sub/../../a.png",
            "",
            " a.png",
            "A.PNG",
            "sub\\b.png",
            "missing.png",
            "sub",
            "a.png\x00.jpg",
            "\u202ea.png",
            "a" * 5000,
        ]
    )
    | st.text(max_size=30)
)
LABELS = st.sampled_from(
    ["Monet", "Monet ", "monet", "Mon\u0301et", "Mon\u00e9t", "\u202e", "", "\U0001f3a8", "x" * 10_000]
) | st.text(max_size=20)
HEADERS = st.sampled_from(
    [
        ["path", "label"],
        ["label", "path", "year"],
        ["path"],
        ["file", "artist"],
        ["path", "label", "path"],
        [],
        ["path", "label", "\ufeffnote"],
    ]
)
names = (f"fuzz{i}" for i in itertools.count())


def write_folder(root):
    for i, rel in enumerate(REAL):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 16), (40 * i, 90, 200 - 40 * i)).save(root / rel)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=HEADERS, rows=st.lists(st.tuples(PATHS, LABELS, st.integers(-(10**30), 10**30)), max_size=8))
# Found by CI: a record separator in a label quoted into the error split it in two lines.
@example(header=["label", "path", "year"], rows=[("a.png", "0\x1e0", 0)])
def test_any_manifest_registers_cleanly_or_fails_in_one_line(cli_env, tmp_path_factory, header, rows):
    root = tmp_path_factory.mktemp("manifest")
    write_folder(root)
    text = io.StringIO()
    try:
        writer = csv.writer(text)
        writer.writerow(header)
        writer.writerows([[path, label, str(n)][: max(len(header), 1)] for path, label, n in rows])
    except csv.Error:
        assume(False)  # not writable as csv at all: nothing to feed the reader
    (root / "manifest.csv").write_text(text.getvalue(), encoding="utf-8")
    name = next(names)

    result = run(cli_env, "dataset", "add", name, str(root), "--format", "csv")

    assert_clean_exit(result, 1 if result.exit_code == 1 else 0)  # registered, or refused in one line
    registered = {d["name"] for d in datasets(cli_env)}
    if result.exit_code == 1:
        assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1, result.output
        assert name not in registered  # nothing half-written
        return
    assert name in registered
    paths = run(
        cli_env,
        "query",
        "SELECT i.path FROM images i JOIN datasets d ON d.id = i.dataset_id "
        f"WHERE d.name = '{name}' AND i.status = 'ok'",
        "--format",
        "json",
    )
    for row in json.loads(paths.stdout):
        assert (root / row["path"]).resolve().is_relative_to(root.resolve()), row  # nothing outside the folder
        assert (root / row["path"]).is_file()


def test_a_manifest_that_is_not_text_is_refused(cli_env, tmp_path):
    write_folder(tmp_path)
    (tmp_path / "manifest.csv").write_bytes(b"path,label\n\xff\xfe\x00garbage\n")
    result = run(cli_env, "dataset", "add", "binary", str(tmp_path), "--format", "csv")
    assert result.exit_code == 1 and "not UTF-8" in result.output
    assert "binary" not in {d["name"] for d in datasets(cli_env)}
