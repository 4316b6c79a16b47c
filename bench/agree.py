"""Do two optimisers give the study the same answers? The disagreement table of two bench/converge.py runs.

The runs must share stylizations (same store, run, --pairs, doses, size and seed; only --optimizer or
--first differs); the stylizations both hold are compared. For one step of each (by default the last one
each kept) it prints the share of them whose classifier answer is the same, with its exact 95 % interval, then the table of
outcomes (content artist, style artist, other) of the first run against the second, and the share per dose.

    python bench/agree.py lbfgs.json lbfgs-unit.json --steps 400,400
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
from statsmodels.stats.proportion import proportion_confint


def outcomes(path: Path, step: int | None) -> tuple[pd.DataFrame, int, str]:
    run = json.loads(path.read_text())
    rows = pd.DataFrame(run["stylizations"])
    kept = sorted(int(k) for k in rows["answers"].iloc[0])
    k = step or kept[-1]
    if k not in kept:
        raise SystemExit(f"{path}: no answers at step {k} (kept: {', '.join(map(str, kept))})")
    answer = rows["answers"].map(lambda a: a[str(k)])
    rows["outcome"] = "other"
    rows.loc[answer == rows["content_artist"], "outcome"] = "content"
    rows.loc[answer == rows["style_artist"], "outcome"] = "style"
    rows["answer"] = answer
    return rows.set_index(["content", "style", "dose"]), k, run["args"]["optimizer"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("first", type=Path, help="bench/converge.py --json of today's optimiser")
    ap.add_argument("second", type=Path, help="the same stylizations by the other optimiser")
    ap.add_argument("--steps", default="", help="K1,K2: the step of each run to compare (default: each run's last)")
    args = ap.parse_args()
    k1, k2 = ([int(k) for k in args.steps.split(",")] + [0, 0])[:2] if args.steps else (0, 0)
    a, k1, name1 = outcomes(args.first, k1)
    b, k2, name2 = outcomes(args.second, k2)
    common = a.index.intersection(b.index)  # one run may be a --first N of the other's pairs
    if common.empty:
        raise SystemExit("the two runs share no stylization: same store, run, pairs, doses and seed are needed")
    a, b = a.loc[common], b.loc[common]
    same = a["answer"] == b["answer"]
    lo, hi = proportion_confint(int(same.sum()), len(same), alpha=0.05, method="beta")
    print(f"{name1} at step {k1} against {name2} at step {k2}: {len(same)} stylizations")
    print(f"same classifier answer: {same.mean():.3f} (95% CI {lo:.3f}-{hi:.3f}), {int((~same).sum())} differ")
    table = pd.crosstab(a["outcome"].rename(name1), b["outcome"].rename(name2), margins=True)
    print(table.to_string())
    print(same.groupby(level="dose").mean().rename("same answer, per dose").to_string())


if __name__ == "__main__":
    main()
