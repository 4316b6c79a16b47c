"""The report of a 20,000-pair style batch: how long `atelier report BATCH` takes, and on what.

On a private ATELIER_HOME with one real `atelier worker`: paints a synthetic dataset, trains a tiny
classifier, stylizes a real batch of --seed-pairs pairs over three doses, then grows the batch to
--pairs stylizations by copying its rows under new pair hashes (each copy a new PNG file, so
thumbnails are really made). Then builds the report twice in this process:

  - cold: nothing cached, the thumbnails are made into the artifacts and the inspect job (t-SNE
    and activation maps) runs on the worker;
  - warm, the baseline in the same run: the same report again, thumbnails and the inspect job's
    files found; ratio = cold / warm.

Each build is profiled; the functions that dominate are printed. Exits 1 if the cold build takes
a minute or more.

    python -m bench.report                       # 20,000 pairs
    python -m bench.report --pairs 2000          # quicker
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.load import Lab, start_workers, stop_workers, wait_jobs

DOSES = "1e2,1e3,1e4"


def real_batch(lab: Lab, seed_pairs: int) -> tuple[int, str]:
    """A classifier and a real style batch of ``seed_pairs`` pairs at each dose, through the worker."""
    lab.run("dataset", "synth", "art", "--artists", "6", "--per-artist", "16", "--size", "40")
    clf = lab.json("train", "--dataset", "art", "--arch", "baseline-cnn", "--weights", "random", "--epochs", "2",
                   "--image-size", "32", "--batch-size", "16", "--augment", "none")  # fmt: skip
    wait_jobs(lab, f"id = '{clf['job']}'")
    per_cell = max(1, -(-seed_pairs // 30))  # 6 artists: 30 ordered cross-artist cells
    batch = lab.json("stylize", "--dataset", "art", "--classifier", str(clf["run"]), "--per-cell", str(per_cell),
                     "--style-weight", DOSES, "--steps", "2", "--size", "32", "--optimizer", "adam",
                     "--chunk", "60", "--device-batch", "30", "--vgg-weights", "random",
                     "--norm-images", "4")  # fmt: skip
    wait_jobs(lab, f"group_id = '{batch['batch']}'")
    return clf["run"], batch["batch"]


def grow(home: Path, batch: str, total: int) -> int:
    """Copy the batch's stylizations (rows and PNG files) under new pair hashes until it holds ``total``."""
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{home / 'atelier.db'}")
    artifacts = home / "artifacts"
    with engine.begin() as db:
        rows = [
            dict(r) for r in db.execute(text("SELECT * FROM stylizations WHERE batch_id = :b"), {"b": batch}).mappings()
        ]
        have, copy = len(rows), 0
        columns = [c for c in rows[0] if c != "id"]
        insert = text(f"INSERT INTO stylizations ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})")
        pair = text("INSERT INTO style_batch_pairs (batch_id, pair_hash, job_id) VALUES (:b, :h, NULL)")
        while have < total:
            copy += 1
            new, pairs = [], []
            for r in rows[: total - have]:
                path = Path(r["image_path"])
                relative = (path.parent / f"copy{copy}" / path.name).as_posix()
                (artifacts / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(artifacts / path, artifacts / relative)
                h = f"{r['pair_hash'][:56]}{copy:08d}"
                new.append({**{c: r[c] for c in columns}, "pair_hash": h, "image_path": relative, "seed": copy})
                pairs.append({"b": batch, "h": h})
            db.execute(insert, new)
            db.execute(pair, pairs)
            have += len(new)
    return have


def build(lab: Lab, batch: str, out: Path) -> tuple[float, str]:
    profile = cProfile.Profile()
    t0 = time.perf_counter()
    profile.enable()
    lab.run("report", batch, "--out", str(out))
    profile.disable()
    seconds = time.perf_counter() - t0
    text_out = io.StringIO()
    pstats.Stats(profile, stream=text_out).sort_stats("cumulative").print_stats(r"atelier|orchestrator|corpus", 14)
    return seconds, text_out.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=20_000)
    ap.add_argument("--seed-pairs", type=int, default=120, help="pairs per dose stylized for real")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="atelier-report-bench-"))
    env = {"ATELIER_HOME": str(home)}
    lab = Lab(env)
    procs = start_workers(env, 1, home)
    try:
        t0 = time.perf_counter()
        _run, batch = real_batch(lab, args.seed_pairs)
        real = len(lab.query(f"SELECT id FROM stylizations WHERE batch_id = '{batch}'"))
        total = grow(home, batch, args.pairs)
        print(f"batch {batch[:8]}: {real} stylized for real, grown to {total} in {time.perf_counter() - t0:.0f} s")
        cold, cold_profile = build(lab, batch, home / "report-cold")
        warm, warm_profile = build(lab, batch, home / "report-warm")
    finally:
        stop_workers(procs)
        lab.run("broker", "stop")  # the embedded Redis the first command started; the lab's files stay
    print(f"\ncold build {cold:.1f} s (thumbnails made, inspect job run); warm build {warm:.1f} s; "
          f"cold / warm {cold / warm:.2f}x")  # fmt: skip
    print("\nwhat the cold build spent its time on (cumulative, atelier's functions):\n" + cold_profile)
    print("what the warm build spent its time on:\n" + warm_profile)
    figures = {"pairs": total, "cold_s": cold, "warm_s": warm, "ratio_cold_over_warm": cold / warm}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    print(f"lab kept in {home}")
    return 0 if cold < 60 else 1


if __name__ == "__main__":
    sys.exit(main())
