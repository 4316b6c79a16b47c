"""The attribution study on real paintings with real weights, end to end through the CLI.

What a researcher runs on their own paintings and weights, as one script:

  1. import ImageNet weights (VGG16 for the classifier, VGG19 for Gatys) with `atelier weights import`;
  2. register the paintings (`atelier dataset add`, near-duplicates kept in one split);
  3. a VGG16 feature-extract grid (`atelier grid`), whose best cell is the classifier;
  4. a cross-artist style batch over several doses, classified by that cell (`atelier stylize`);
  5. the attribution table, its plots and the grid's leaderboard (`atelier results ...`).

It checks what the method must do: at the lowest non-zero dose the content artist is named more often
than the style artist, at the highest the style artist more often (the flip), from the rows of the
view attribution_pairs (every cross-artist pair, no conditioning); and how many answers changed over
the last half of the optimisation (the answer at half the steps against the final one).
This is a check of the method on a CPU-sized study, not a test (it takes tens of minutes on 2 cores).

usage:
  python -m checks.attribution_real --weights DIR --paintings DIR [--artists 4] [--size 96] [--steps 300]

DIR for --weights holds torchvision-named ImageNet files: vgg16-*.safetensors|.pth and vgg19-*.
On this offline machine `python ../shared/tools/real_weights.py DIR` builds them; a user with a
network needs nothing: `--weights imagenet` downloads torchvision's files.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def atelier(env: dict, *args: str, quiet: bool = False) -> str:
    if not quiet:
        print("$ atelier " + " ".join(args), flush=True)
    out = subprocess.run([sys.executable, "-m", "orchestrator", *args], env=env, text=True, capture_output=True)
    if out.returncode != 0:
        raise SystemExit(f"atelier {' '.join(args)} failed:\n{out.stdout}{out.stderr}")
    if not quiet:
        print(out.stdout, end="", flush=True)
    return out.stdout


def wait_group(env: dict, group: str) -> None:
    """Poll the store until every job of a sweep or batch has ended; fail if one did not succeed."""
    while True:
        jobs = json.loads(
            atelier(
                env,
                "query",
                f"SELECT status, count(*) AS n FROM jobs WHERE group_id = '{group}' GROUP BY status",
                "--format",
                "json",
                quiet=True,
            )
        )
        counts = {j["status"]: j["n"] for j in jobs}
        if not counts.get("queued") and not counts.get("running"):
            break
        time.sleep(10)
    if set(counts) != {"succeeded"}:
        raise SystemExit(f"{group}: jobs ended {counts}; see the worker log")


def weight_file(folder: Path, arch: str) -> Path:
    found = sorted(folder.glob(f"{arch}-*.safetensors")) + sorted(folder.glob(f"{arch}-*.pth"))
    if not found:
        raise SystemExit(f"no {arch} weights in {folder} (expected {arch}-*.safetensors or .pth)")
    return found[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, required=True, help="folder with vgg16-* and vgg19-* ImageNet files")
    p.add_argument("--paintings", type=Path, required=True, help="an ImageFolder: one folder per artist")
    p.add_argument("--artists", type=int, default=4, help="the first N artists (alphabetical); 0 for all")
    p.add_argument("--home", type=Path, default=None, help="ATELIER_HOME (default: a new temporary folder)")
    p.add_argument("--out", type=Path, default=Path("attribution-real"), help="where tables and PNGs go")
    p.add_argument("--size", type=int, default=96, help="long side of the stylized works in px")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="classifier input side (default: --size, so the unstylized controls are recognisable at the "
        "resolution the stylized works have)",
    )
    p.add_argument("--doses", default=None, help="scale-free doses (default: atelier stylize's)")
    p.add_argument("--per-cell", type=int, default=1, help="pairs per (style artist, content artist)")
    p.add_argument(
        "--pairs-per-style",
        type=int,
        default=0,
        help="instead of --per-cell: this many random test-split pairs per style artist (a CPU-sized study)",
    )
    p.add_argument("--init", default="noise", choices=("noise", "content"))
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = p.parse_args()

    home = args.home or Path(tempfile.mkdtemp(prefix="atelier-real-"))
    env = {**os.environ, "ATELIER_HOME": str(home), "ATELIER_OFFLINE": "1"}
    args.out.mkdir(parents=True, exist_ok=True)
    artists = sorted(d.name for d in args.paintings.iterdir() if d.is_dir())
    if args.artists:
        artists = artists[: args.artists]
    subset = home / "paintings"
    subset.mkdir(parents=True, exist_ok=True)
    for a in artists:  # an ImageFolder of the chosen artists, as links: nothing is copied
        if not (subset / a).exists():
            (subset / a).symlink_to((args.paintings / a).resolve())
    t0 = time.perf_counter()
    worker = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "worker", "--threads", str(args.threads)],
        env=env,
        stdout=open(home / "worker.log", "ab"),
        stderr=subprocess.STDOUT,
    )
    try:
        for arch in ("vgg16", "vgg19"):
            atelier(env, "weights", "import", str(weight_file(args.weights, arch)), "--arch", arch)
        atelier(env, "weights", "list")
        atelier(env, "dataset", "add", "real", str(subset), "--seed", "0")
        atelier(env, "dataset", "show", "real")
        sweep = json.loads(
            atelier(
                env,
                "grid",
                "--dataset",
                "real",
                "--arch",
                "vgg16",
                "--mode",
                "feature-extract",
                "--image-size",
                str(args.image_size or args.size),
                "--head",
                "gap",
                "--dense1",
                "128,256",
                "--lr",
                "1e-3,1e-4",
                "--epochs",
                "30",
                "--batch-size",
                "16",
                "--augment",
                "none",
                "--json",
            )
        )["sweep"]
        wait_group(env, sweep)
        board = atelier(env, "results", "grid", sweep)
        (args.out / "grid.txt").write_text(board)
        best = json.loads(
            atelier(
                env,
                "query",
                f"SELECT run_id FROM grid_leaderboard WHERE sweep_id = '{sweep}' "
                "AND stage = 'grid' AND rank = 1 ORDER BY cell_index",
                "--format",
                "json",
            )
        )
        run = str(best[0]["run_id"])
        (args.out / "classifier.txt").write_text(atelier(env, "results", "run", run))
        pairs = ["--per-cell", str(args.per_cell)]
        if args.pairs_per_style:
            pairs = ["--pairs", str(sample_pairs_csv(env, home / "pairs.csv", args.pairs_per_style))]
        doses = ["--dose", args.doses] if args.doses else []
        batch = json.loads(
            atelier(
                env,
                "stylize",
                "--dataset",
                "real",
                "--classifier",
                run,
                "--split",
                "test",
                *pairs,
                *doses,
                "--size",
                str(args.size),
                "--steps",
                str(args.steps),
                "--init",
                args.init,
                "--chunk",
                "16",
                "--device-batch",
                "16",
                "--json",
            )
        )["batch"]
        wait_group(env, batch)
        rows = json.loads(atelier(env, "query", FLIP_SQL.format(batch=batch), "--format", "json"))
        for name, args_ in (
            ("attribution.txt", ("results", "attribution", batch, "--condition", "none", "--plot", str(args.out))),
            ("dose-response.txt", ("results", "dose-response", batch, "--by", "style-artist", "--plot", str(args.out))),
        ):
            try:
                (args.out / name).write_text(atelier(env, *args_))
            except SystemExit as e:  # the flip below is read from the store; a table that fails is reported
                print(e)
    finally:
        worker.terminate()
        worker.wait(timeout=120)
        subprocess.run([sys.executable, "-m", "orchestrator", "broker", "stop"], env=env, capture_output=True)
    print(
        f"\n{len(artists)} artists; batch {batch}; {time.perf_counter() - t0:.0f} s; home {home}; outputs in {args.out}"
    )
    print(f'$ atelier query "{FLIP_SQL.format(batch=batch)}"')
    print("dose  stylizations  content  style  other  changed over the last half")
    for r in rows:
        print(
            f"{r['level']:<6g}{r['n']:>13}{r['content']:>9.2f}{r['style']:>7.2f}{r['other']:>7.2f}{r['changed']:>10.2f}"
        )
    doses = [r for r in rows if r["level"] > 0]
    flips = doses[0]["content"] > doses[0]["style"] and doses[-1]["style"] > doses[-1]["content"]
    print(
        "the doses span the flip: content named at the lowest, style at the highest"
        if flips
        else "NO FLIP: the doses do not take the answer from the content to the style artist; look before reporting"
    )
    sys.exit(0 if flips else 1)


# Every cross-artist stylization of the batch, no conditioning: the shares per dose and how many answers
# changed between half the steps and the end.
FLIP_SQL = (
    "SELECT level, count(*) AS n, avg(CASE WHEN outcome = 'content' THEN 1.0 ELSE 0.0 END) AS content, "
    "avg(CASE WHEN outcome = 'style' THEN 1.0 ELSE 0.0 END) AS style, "
    "avg(CASE WHEN outcome = 'other' THEN 1.0 ELSE 0.0 END) AS other, "
    "avg(CASE WHEN predicted_half IS NOT NULL AND predicted_half <> predicted THEN 1.0 ELSE 0.0 END) AS changed "
    "FROM attribution_pairs WHERE batch_id = '{batch}' AND outcome <> 'same' GROUP BY level ORDER BY level"
)


def sample_pairs_csv(env: dict, path: Path, per_style: int) -> Path:
    """``per_style`` random (content, style) pairs of test-split images per style artist, content by another
    artist, as a pairs CSV for `atelier stylize --pairs`."""
    import csv
    import random

    images = json.loads(
        atelier(
            env,
            "query",
            "SELECT path, label FROM images i JOIN datasets d ON d.id = i.dataset_id "
            "WHERE d.name = 'real' AND i.split = 'test' AND i.status = 'ok' ORDER BY path",
            "--format",
            "json",
            quiet=True,
        )
    )
    rng = random.Random(0)
    by_artist: dict[str, list[str]] = {}
    for im in images:
        by_artist.setdefault(im["label"], []).append(im["path"])
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["content", "style"])
        for artist, styles in sorted(by_artist.items()):
            others = [p for a, ps in sorted(by_artist.items()) if a != artist for p in ps]
            for content in rng.sample(others, min(per_style, len(others))):
                out.writerow([content, rng.choice(styles)])
    return path


if __name__ == "__main__":
    main()
