"""Do two optimisers give the study the same answers? The disagreement table of two checks/converge.py runs.

The runs must share stylizations (same store, run, --pairs, doses, size and seed; only --optimizer,
--noise-seed or --first differs); the stylizations both hold are compared. For one step of each (by default
the last one each kept) it prints the share of them whose classifier answer is the same, with its exact 95 %
interval, then the table of outcomes (content artist, style artist, other) of the first run against the
second, and the share per dose.

Two things bound what "the same answer" can reach, and the script prints both when it can:
  - the decisive answers: the agreement among the stylizations whose answer is no near-tie (top-2 margin >=
    analysis.NEAR_TIE) in either run (in the one run that kept margins, if only one did); a near-tie flips
    with any change of the picture;
  - ``--floor``: a run of the *first* optimiser on the same pairs from another white-noise start
    (``converge.py --noise-seed 1``): how often one optimiser agrees with itself when only its start moves.
    An optimiser that disagrees with today's no more than today's disagrees with itself has not changed the
    study's answer; it has drawn another start.

    python -m checks.agree lbfgs.json lbfgs-unit.json [more parts of that run] --steps 400,400 [--floor lbfgs-seed1.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
from statsmodels.stats.proportion import proportion_confint

from analysis import NEAR_TIE  # the study's own threshold, as its tables print it


def outcomes(paths: Path | list[Path], step: int | None) -> tuple[pd.DataFrame, int, str]:
    """The outcome of every stylization of one run at ``step``; a run may come in parts (``converge.py --skip``)."""
    paths = paths if isinstance(paths, list) else [paths]
    parts = [json.loads(p.read_text()) for p in paths]
    run, path = parts[0], paths[0]
    # The parts of one run differ only in which pairs they took.
    same_run = {k: v for k, v in run["args"].items() if k not in ("first", "skip", "json")}
    for p, part in zip(paths[1:], parts[1:]):
        if {k: v for k, v in part["args"].items() if k not in ("first", "skip", "json")} != same_run:
            raise SystemExit(f"{p} is not a part of the run in {path}: its settings differ")
    rows = pd.DataFrame([s for part in parts for s in part["stylizations"]])
    kept = sorted(int(k) for k in rows["answers"].iloc[0])
    k = step or kept[-1]
    if k not in kept:
        raise SystemExit(f"{path}: no answers at step {k} (kept: {', '.join(map(str, kept))})")
    answer = rows["answers"].map(lambda a: a[str(k)])
    rows["outcome"] = "other"
    rows.loc[answer == rows["content_artist"], "outcome"] = "content"
    rows.loc[answer == rows["style_artist"], "outcome"] = "style"
    rows["answer"] = answer
    # Runs older than the margins (converge.py before they were kept) cannot be split into decisive answers.
    rows["margin"] = (
        rows["margin"].map(lambda m: m[str(k)] if isinstance(m, dict) else float("nan"))
        if "margin" in rows
        else float("nan")
    )
    rows = rows.set_index(["content", "style", "dose"])
    if not rows.index.is_unique:
        raise SystemExit(f"{', '.join(map(str, paths))}: a stylization appears twice (overlapping parts?)")
    return rows, k, run["args"]["optimizer"]


def same_share(a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.Series, str]:
    """Per common stylization, whether a and b name the same artist; and that share, its interval, as text."""
    common = a.index.intersection(b.index)  # one run may be a --first N of the other's pairs
    if common.empty:
        raise SystemExit("the two runs share no stylization: same store, run, pairs, doses and seed are needed")
    same = a.loc[common, "answer"] == b.loc[common, "answer"]
    lo, hi = proportion_confint(int(same.sum()), len(same), alpha=0.05, method="beta")
    return same, f"{same.mean():.3f} (95% CI {lo:.3f}-{hi:.3f}), {int(same.sum())} of {len(same)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("first", type=Path, help="checks/converge.py --json of today's optimiser")
    ap.add_argument("second", type=Path, nargs="+", help="the same stylizations by the other optimiser (its parts)")
    ap.add_argument("--steps", default="", help="K1,K2: the step of each run to compare (default: each run's last)")
    ap.add_argument("--floor", type=Path, default=None, help="the first optimiser's run from another noise seed")
    args = ap.parse_args()
    k1, k2 = ([int(k) for k in args.steps.split(",")] + [0, 0])[:2] if args.steps else (0, 0)
    a, k1, name1 = outcomes(args.first, k1)
    b, k2, name2 = outcomes(args.second, k2)
    same, text = same_share(a, b)
    a, b = a.loc[same.index], b.loc[same.index]
    print(f"{name1} at step {k1} against {name2} at step {k2}: {len(same)} stylizations")
    print(f"same classifier answer: {text}")
    # A run without margins (older converge.py) leaves the split to the other run's answers.
    kept = [name for name, r in (("the first run", a), ("the second run", b)) if r["margin"].notna().all()]
    if kept:
        decisive = ~(a["margin"] < NEAR_TIE) & ~(b["margin"] < NEAR_TIE)
        where = "both runs" if len(kept) == 2 else kept[0]
        _, text = same_share(a[decisive], b[decisive]) if decisive.any() else (None, "none")
        print(f"  among answers decisive (top-2 margin >= {NEAR_TIE}) in {where}: {text}")
    if args.floor:
        f, _, _ = outcomes(args.floor, k1)
        floor, text = same_share(a, f)
        print(f"{name1} against itself from another start, step {k1} (the floor): {text}")
        print(f"  on the same {len(floor)} stylizations: the optimisers agree on {same.loc[floor.index].mean():.3f}")
    table = pd.crosstab(a["outcome"].rename(name1), b["outcome"].rename(name2), margins=True)
    print(table.to_string())
    print(same.groupby(level="dose").mean().rename("same answer, per dose").to_string())


if __name__ == "__main__":
    main()
