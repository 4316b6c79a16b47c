"""Every GPU figure in one run, written to one JSON file, with the targets each must meet.

Runs, each as its own process on the same device, each comparing against its baseline
in the same run, style transfer first (the figures the last H200 lease was short of):
bench/stylize.py (today's batched L-BFGS, the one-evaluation-per-step L-BFGS variants
and the tutorial's loop side by side, on one device batch sized from the card's free
memory, 256 px, 300 steps; mixed doses against one optimisation per dose),
bench/answers.py (bf16 against fp32 by the answers a classifier gives on real paintings,
beside fp32 against itself from another start; it needs the folder that `python -m
bench.answers pack` writes, carried as out/answers), bench/bf16_style.py (bf16 against
fp32 by loss), bench/train_throughput.py, bench/load.py with real work through real workers (256 pairs at 256 px, 300 steps, the device batch
picked from free memory; Adam, the optimiser cost aside, until `atelier stylize`
accepts the new ones) and bench/grid.py (cut to 1,000 images and 2 epochs: the full
one did not fit). Then checks that every figure is there and, on CUDA, whether each
target holds. Sized for 8 minutes of device time (--budget 420 s for the pieces, the
rest for the lease's start and the JSON); a piece past the budget is recorded as missing.

    python -m bench.gpu                   # on the GPU box: bench/results/gpu-<time>.json
    python -m bench.gpu --smoke           # CPU, CI-sized shapes, < 3 minutes: every figure produced
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name -> (script, full-size arguments, smoke arguments), in the order they run by default.
RUNS = {
    "stylize": ("stylize.py", ["--sizes", "256", "--steps", "300", "--pairs", "128", "--tutorial-pairs", "4"],
                ["--pairs", "2", "--sizes", "32", "--steps", "3", "--batch", "2", "--tutorial-pairs", "1",
                 "--peak-seconds", "0.2"]),
    # bf16 against fp32 by the classifier's answers on real paintings: the folder `python -m bench.answers pack`
    # wrote (carried to the device as out/answers); the smoke packs random weights and synthetic art, and runs its
    # "bf16" (fp32 on a CPU) with the reference optimiser, so that its answers must equal fp32's.
    "answers": ("answers.py", ["--pack", "out/answers", "--pairs", "16", "--doses", "1,10", "--size", "256",
                "--steps", "300"], ["--synthetic", "--pairs", "2", "--size", "32", "--steps", "3", "--optimizer", "lbfgs"]),
    "bf16": ("bf16_style.py", [], ["--pairs", "2", "--size", "32", "--steps", "4"]),
    "train": ("train_throughput.py", [], ["--images", "24", "--size", "32", "--long-side", "48", "--arches",
              "resnet18", "--workers", "1", "--batch", "8", "--epochs", "1"]),
    "load": ("load.py", ["--pairs", "256", "--jobs", "2", "--cells", "40", "--workers", "1", "--size", "256",
             "--steps", "300", "--optimizer", "adam", "--device-batch", "0"],
             ["--pairs", "24", "--jobs", "4", "--cells", "4", "--workers", "1"]),
    "grid": ("grid.py", ["--images", "1000", "--epochs", "2"], ["--images", "24", "--artists", "3", "--size", "32",
             "--arch", "resnet18", "--heads", "gap", "--dense1", "32:32:32", "--dense2", "16:16:16", "--epochs", "1",
             "--batch", "8"]),
}  # fmt: skip

# (name, path into the figures, comparison, target): the targets, each a ratio from the same run.
TARGETS = [
    ("training epoch / model-only ceiling", ("train", 0, "of_ceiling"), ">=", 0.70),
    ("training / best ImageFolder+DataLoader", ("train", 0, "over_best_dataloader"), ">=", 6.0),
    ("112-cell grid / backbone per cell", ("grid", "speedup"), ">=", 30.0),
    ("style transfer pairs/hour at 256 px", ("stylize", "sizes", 0, "atelier_pairs_per_hour"), ">=", 40_000),
    ("evaluations per pair per step", ("stylize", "sizes", 0, "atelier_evals_per_pair_per_step"), "<=", 1.15),
    # bench/peak.py refuses a fraction above 1 (the run stops); on a GPU the peak is the data sheet's bf16 figure.
    ("fraction of the device's bf16 peak", ("stylize", "sizes", 0, "atelier_floor_fraction"), "<=", 1.0),
    ("style transfer / tutorial", ("stylize", "sizes", 0, "speedup_over_tutorial"), ">=", 10.0),
    ("final loss atelier / tutorial", ("stylize", "sizes", 0, "loss_ratio_atelier_over_tutorial"), "<=", 1.0),
    ("evals to tutorial loss new / lbfgs", ("stylize", "sizes", 0, "evals_to_tutorial_loss_new_over_lbfgs"), "<=", 1.0),
    ("mixed doses / split by dose", ("stylize", "mixed_doses", 0, "speedup"), ">=", 1.0),
    ("through the queue / one process", ("load", "ratio_end_to_end_over_baseline"), "<=", 1 / 0.9),
    ("bf16 / fp32 final loss", ("bf16", "loss_ratio_bf16_over_fp32"), "<=", 1.05),
]


def lookup(figures: dict, path: tuple):
    value = figures
    for key in path:
        value = value[key]
    return value


def run_all(smoke: bool, workdir: Path, names: list[str], deadline: float) -> dict:
    """Each piece in turn, its JSON kept in workdir as soon as it is written.

    A GPU lease is short: a piece that fails or runs past the deadline is recorded as an error and
    the next one still runs, so one bad piece does not cost the figures of the others.
    """
    figures = {}
    for name in names:
        script, full, small = RUNS[name]
        out = workdir / f"{name}.json"
        module = f"bench.{Path(script).stem}"  # run from ROOT, as every benchmark is
        cmd = [sys.executable, "-m", module, *(small if smoke else full), "--json", str(out)]
        t0 = time.perf_counter()
        if time.monotonic() >= deadline:  # not started at all: its figures are missing, not half-made
            figures[name] = {"error": "not started: past the deadline (--budget)"}
            print(f"{name}: not started, past the deadline", flush=True)
            continue
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        try:
            done = subprocess.run(cmd, cwd=ROOT, text=True, capture_output=True, timeout=deadline - time.monotonic())
        except subprocess.TimeoutExpired:
            figures[name] = {"error": "past the deadline (--budget)"}
            print(f"{name}: stopped at the deadline", flush=True)
            continue
        print(done.stdout[-1500:], flush=True)
        if done.returncode != 0 or not out.exists():
            figures[name] = {"error": f"exit {done.returncode}: {done.stderr[-3000:]}"}
            print(f"{name} FAILED (exit {done.returncode}):\n{done.stderr[-3000:]}", flush=True)
            continue
        figures[name] = json.loads(out.read_text())
        figures[name + "_wall_s"] = round(time.perf_counter() - t0, 1)
    return figures


def check(figures: dict, on_gpu: bool) -> list[dict]:
    """Every target's value (a missing figure is an error), and whether it holds (judged on a GPU only)."""
    results = []
    for label, path, op, target in TARGETS:
        if path[0] not in figures:  # a piece left out with --only
            continue
        try:
            value = lookup(figures, path)
        except (KeyError, IndexError, TypeError):
            value = None
        if not isinstance(value, (int, float)):
            results.append({"target": label, "value": None, "op": op, "wanted": target, "holds": False})
            continue
        holds = value >= target if op == ">=" else value <= target
        results.append(
            {"target": label, "value": value, "op": op, "wanted": target, "holds": holds if on_gpu else None}
        )
    return results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="CI-sized shapes on any device; checks the figures exist")
    p.add_argument("--out", type=Path, default=None, help="the JSON file [bench/results/gpu-<time>.json]")
    p.add_argument("--workdir", type=Path, default=None, help="keep each piece's JSON here as it finishes")
    p.add_argument("--only", default=",".join(RUNS), help=f"comma-separated pieces, in this order [{','.join(RUNS)}]")
    p.add_argument("--budget", type=float, default=420, help="seconds for all pieces; later ones are cut [420]")
    args = p.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    if unknown := set(names) - set(RUNS):
        p.error(f"unknown pieces {sorted(unknown)}; known: {', '.join(RUNS)}")
    import torch

    on_gpu = torch.cuda.is_available()
    device = torch.cuda.get_device_name() if on_gpu else "cpu"
    t0 = time.perf_counter()
    deadline = time.monotonic() + args.budget
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        figures = run_all(args.smoke, args.workdir, names, deadline)
    else:
        with tempfile.TemporaryDirectory(prefix="atelier-gpu-bench-") as tmp:
            figures = run_all(args.smoke, Path(tmp), names, deadline)
    results = check(figures, on_gpu)
    report = {"device": device, "smoke": args.smoke, "wall_s": round(time.perf_counter() - t0, 1),
              "targets": results, "figures": figures}  # fmt: skip
    out = args.out or ROOT / "bench" / "results" / f"gpu-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"\n{device}{' (smoke)' if args.smoke else ''}: {report['wall_s']} s; figures in {out}")
    for r in results:
        if r["value"] is None:
            print(f"  {r['target']:40s} {'no figure':>12s}  wanted {r['op']} {r['wanted']:<8g} MISSING")
            continue
        verdict = {True: "holds", False: "MISSED", None: "not judged off a GPU"}[r["holds"]]
        print(f"  {r['target']:40s} {r['value']:12.4g}  wanted {r['op']} {r['wanted']:<8g} {verdict}")
    missing = any(r["value"] is None for r in results)
    return 2 if missing else 1 if any(r["holds"] is False for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
