"""Load: a large style batch and a large grid submitted at once to real workers.

On a private ATELIER_HOME (embedded Redis, SQLite unless ATELIER_DATABASE_URL is
set) with N `atelier worker` processes: paints a synthetic dataset, trains a tiny
classifier, then submits a style batch of --pairs pairs in --jobs chunk jobs and
a --cells-cell grid, both at once, and measures

  - submission: wall time of the two submissions (in this process, after import;
    the CLI's own start-up is timed separately), pairs/s and cells/s;
  - end to end: from submission to the last job's end, jobs/s and pairs/s;
  - queue overhead per job: (end-to-end wall x workers - the jobs' own run time) / jobs;
  - the baseline, measured in the same run: the jobs' summed run time divided by
    the workers, i.e. a perfect schedule with no queue at all; ratio = end to end / baseline.

and checks exactly-once: one stylizations row per pair, one run with metrics
per cell, no job claimed twice. Exits 1 if a check fails.

    python -m bench.load                                 # 20,000 pairs in 500 jobs + 1,000 cells
    python -m bench.load --submit-only                   # the submission figures only, then cancel
    python -m bench.load --pairs 200 --jobs 20 --cells 40   # what the test runs
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from click.testing import CliRunner

from orchestrator.cli import cli

ROOT = Path(__file__).resolve().parents[1]  # the workers run from the checkout, as `python -m bench.load` does

FINISHED = ("succeeded", "failed", "cancelled")


class Lab:
    """The CLI in this process, on one private environment."""

    def __init__(self, env: dict[str, str]):
        self.env = env

    def run(self, *args: str) -> str:
        result = CliRunner().invoke(cli, list(args), env=self.env, catch_exceptions=False)
        if result.exit_code != 0:
            raise SystemExit(f"atelier {' '.join(args[:2])} failed: {result.output.strip()}")
        return result.stdout

    def json(self, *args: str):
        return json.loads(self.run(*args, "--json"))

    def query(self, sql: str) -> list[dict]:
        return json.loads(self.run("query", sql, "--format", "json"))


def start_workers(env: dict[str, str], n: int, logs: Path) -> list[subprocess.Popen]:
    procs = []
    threads = str(max(1, (os.cpu_count() or 1) // n))  # the cores shared out, as docs/usage.md advises
    for i in range(n):
        out = (logs / f"worker-{i}.log").open("wb")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "orchestrator", "worker", "--name", f"w{i}@load", "--threads", threads],
                env={**os.environ, **env},
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    deadline = time.monotonic() + 120
    while not all(b"ready." in (logs / f"worker-{i}.log").read_bytes() for i in range(n)):
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            raise SystemExit(f"workers did not start; see {logs}")
        time.sleep(0.2)
    return procs


def stop_workers(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def write_pairs(lab: Lab, dataset: str, n: int, path: Path) -> None:
    """n distinct cross-artist (content, style) pairs, by image path."""
    images = lab.query(
        f"SELECT i.path, i.label FROM images i JOIN datasets d ON d.id = i.dataset_id "
        f"WHERE d.name = '{dataset}' AND i.status = 'ok' ORDER BY i.id"
    )
    pairs = ((c["path"], s["path"]) for c in images for s in images if c["label"] != s["label"])
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["content", "style"])
        written = 0
        for pair in pairs:
            if written == n:
                break
            w.writerow(pair)
            written += 1
    if written < n:
        raise SystemExit(f"the dataset has only {written} cross-artist pairs; raise --per-artist")


def wait_groups(lab: Lab, groups: list[str], total: int) -> None:
    ids = ", ".join(f"'{g}'" for g in groups)
    last = None
    while True:
        (row,) = lab.query(
            f"SELECT sum(CASE WHEN status IN ('succeeded','failed','cancelled') THEN 1 ELSE 0 END) "
            f"AS ended FROM jobs WHERE group_id IN ({ids})"
        )
        ended = row["ended"] or 0
        if ended != last:
            print(f"  {ended}/{total} jobs ended", file=sys.stderr, flush=True)
            last = ended
        if ended >= total:
            return
        time.sleep(1)


def cli_startup(env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "orchestrator", "--help"],
        env={**os.environ, **env},
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=20_000)
    ap.add_argument("--jobs", type=int, default=500, help="style chunk jobs the pairs are split into")
    ap.add_argument("--cells", type=int, default=1_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--per-artist", type=int, default=0, help="images per artist (default: enough for --pairs)")
    ap.add_argument("--submit-only", action="store_true", help="measure submission, then cancel everything")
    ap.add_argument("--home", type=Path, default=None, help="ATELIER_HOME to use (default: a temporary folder)")
    # The defaults measure the queue (tiny work per pair); a GPU run gives real work: --size 256 --steps 300.
    ap.add_argument("--size", type=int, default=16, help="long side of the stylized works in px")
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--optimizer", default="adam", choices=("adam", "lbfgs", "lbfgs-onepass", "lbfgs-unit"))
    ap.add_argument("--device-batch", type=int, default=64, help="0: the worker picks it from free GPU memory")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = ap.parse_args()

    home = args.home or Path(tempfile.mkdtemp(prefix="atelier-load-"))
    print(f"lab in {home} (kept afterwards: its store and worker logs)", file=sys.stderr, flush=True)
    env = {"ATELIER_HOME": str(home), "ATELIER_LEASE_SECONDS": os.environ.get("ATELIER_LEASE_SECONDS", "30")}
    if os.environ.get("ATELIER_DATABASE_URL"):
        env["ATELIER_DATABASE_URL"] = os.environ["ATELIER_DATABASE_URL"]
    lab = Lab(env)
    artists = 4
    per_artist = args.per_artist or max(8, int((args.pairs / (artists * (artists - 1))) ** 0.5) + 2)
    synth_size = str(max(32, args.size))
    lab.run("dataset", "synth", "art", "--artists", str(artists), "--per-artist", str(per_artist), "--size", synth_size)
    write_pairs(lab, "art", args.pairs, home / "pairs.csv")

    procs = start_workers(env, args.workers, home)
    try:
        clf = lab.json(
            "train",
            "--dataset",
            "art",
            "--arch",
            "baseline-cnn",
            "--weights",
            "random",
            "--epochs",
            "1",
            "--image-size",
            "32",
            "--batch-size",
            "32",
            "--augment",
            "none",
        )
        wait_job(lab, clf["job"])

        chunk = -(-args.pairs // args.jobs)
        t0, submitted_at = time.perf_counter(), time.time()
        batch = lab.json(
            "stylize",
            "--dataset",
            "art",
            "--classifier",
            str(clf["run"]),
            "--pairs",
            str(home / "pairs.csv"),
            "--style-weight",
            "1e3",
            "--steps",
            str(args.steps),
            "--size",
            str(args.size),
            "--optimizer",
            args.optimizer,
            "--chunk",
            str(chunk),
            *(["--device-batch", str(args.device_batch)] if args.device_batch else []),
            "--vgg-weights",
            "random",
        )
        t1 = time.perf_counter()
        sweep = lab.json(
            "grid",
            "--dataset",
            "art",
            "--arch",
            "baseline-cnn",
            "--weights",
            "random",
            "--mode",
            "feature-extract",
            "--image-size",
            "32",
            "--dense1",
            f"1:1:{args.cells}",
            "--epochs",
            "1",
            "--batch-size",
            "32",
        )
        t2 = time.perf_counter()
        submit = t2 - t0
        figures = {
            "pairs": batch["pairs"],
            "style_jobs": batch["jobs"],
            "cells": sweep["cells"],
            "workers": args.workers,
            "submit_s": round(submit, 3),
            "submit_style_s": round(t1 - t0, 3),
            "submit_grid_s": round(t2 - t1, 3),
            "submit_pairs_per_s": round(batch["pairs"] / (t1 - t0)),
            "submit_cells_per_s": round(sweep["cells"] / (t2 - t1)),
            "cli_startup_s": round(cli_startup(env), 2),
        }
        groups = [batch["batch"], sweep["sweep"]]
        ids = ", ".join(f"'{g}'" for g in groups)
        (n_jobs,) = lab.query(f"SELECT count(*) AS n FROM jobs WHERE group_id IN ({ids})")
        if args.submit_only:
            for g in groups:
                lab.run("cancel", g)
            print(json.dumps(figures))
            return 0

        wait_groups(lab, groups, n_jobs["n"])
        # From the submission to the last job's end as the store records it: the waiting loop's polling
        # interval must not count as queue overhead.
        (last,) = lab.query(f"SELECT max(finished_at) AS t FROM jobs WHERE group_id IN ({ids})")
        end_to_end = _seconds(last["t"]) - submitted_at
        jobs = lab.query(f"SELECT status, attempts, started_at, finished_at FROM jobs WHERE group_id IN ({ids})")
        ran = sum(_seconds(j["finished_at"]) - _seconds(j["started_at"]) for j in jobs if j["started_at"])
        baseline = ran / args.workers
        figures.update(
            {
                "jobs": len(jobs),
                "end_to_end_s": round(end_to_end, 1),
                "jobs_per_s": round(len(jobs) / end_to_end, 2),
                "pairs_per_s": round(batch["pairs"] / end_to_end, 1),
                "jobs_run_s": round(ran, 1),
                "baseline_s": round(baseline, 1),
                "ratio_end_to_end_over_baseline": round(end_to_end / baseline, 2),
                "queue_overhead_per_job_s": round((end_to_end * args.workers - ran) / len(jobs), 3),
            }
        )
        failures = check_exactly_once(lab, batch, sweep, jobs)
        figures["exactly_once"] = not failures
        figures["style_pairs_per_hour"] = round(batch["pairs"] / end_to_end * 3600)
        print(json.dumps(figures))
        if args.json:
            args.json.write_text(json.dumps(figures, indent=1))
        for f in failures:
            print(f"CHECK FAILED: {f}", file=sys.stderr)
        return 1 if failures else 0
    finally:
        stop_workers(procs)
        lab.run("broker", "stop")


def wait_job(lab: Lab, job_id: str) -> None:
    wait_jobs(lab, f"id = '{job_id}'")


def wait_jobs(lab: Lab, where: str) -> None:
    """Until every job the SQL condition ``where`` selects has ended; exit with the first failure's error."""
    while True:
        jobs = lab.query(f"SELECT id, kind, status, error FROM jobs WHERE {where}")
        if jobs and all(j["status"] in FINISHED for j in jobs):
            if bad := [j for j in jobs if j["status"] != "succeeded"]:
                raise SystemExit(f"{bad[0]['kind']} job {bad[0]['id']} {bad[0]['status']}: {bad[0]['error']}")
            return
        time.sleep(0.5)


def check_exactly_once(lab: Lab, batch: dict, sweep: dict, jobs: list[dict]) -> list[str]:
    failures = []
    if bad := [j for j in jobs if j["status"] != "succeeded"]:
        failures.append(f"{len(bad)} job(s) did not succeed")
    if twice := [j for j in jobs if j["attempts"] != 1]:
        failures.append(f"{len(twice)} job(s) were claimed more than once")
    (s,) = lab.query(
        f"SELECT count(*) AS n, count(DISTINCT pair_hash) AS d FROM stylizations WHERE batch_id = '{batch['batch']}'"
    )
    if not s["n"] == s["d"] == batch["pairs"]:
        failures.append(f"{s['n']} stylization rows ({s['d']} distinct) for {batch['pairs']} pairs")
    (c,) = lab.query(
        "SELECT count(*) AS cells, count(DISTINCT c.run_id) AS runs, "
        "sum(CASE WHEN r.last_epoch = 1 THEN 1 ELSE 0 END) AS trained FROM sweep_cells c "
        f"JOIN runs r ON r.id = c.run_id WHERE c.sweep_id = '{sweep['sweep']}'"
    )
    (m,) = lab.query(
        "SELECT count(*) AS n FROM epoch_metrics m JOIN sweep_cells c ON c.run_id = m.run_id "
        f"WHERE c.sweep_id = '{sweep['sweep']}'"
    )
    if not (c["cells"] == c["runs"] == c["trained"] == sweep["cells"] and m["n"] == 2 * sweep["cells"]):
        failures.append(
            f"{c['cells']} cells, {c['runs']} runs, {c['trained']} trained, {m['n']} metric rows "
            f"for {sweep['cells']} cells"
        )
    return failures


def _seconds(stamp: str) -> float:
    """A stored timestamp (UTC, naive on SQLite) as seconds since the epoch."""
    from datetime import UTC, datetime

    when = datetime.fromisoformat(str(stamp))
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


if __name__ == "__main__":
    sys.exit(main())
