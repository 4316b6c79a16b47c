"""Why answers still change over the last half of a stored batch: the optimisation, or a classifier that cannot decide?

For each dose of a finished style batch (an atelier store), from the answers every stylization recorded at half
and all of its steps (``answers``) and its final probabilities:
  - the share of answers that changed over the last half, the share of final answers that are near-ties (top-2
    margin < ``analysis.NEAR_TIE``) and how many of the decisive ones changed;
  - the attribution table's content and style rates (``--condition none``: every cross pair) at half and all
    of the steps: whether the table moves when single answers do;
  - the study's answer, d50 on the probabilities, fitted on the pictures at half and at all of the steps;
  - the continuous outcome, p_style / (p_style + p_content), at half and all of the steps: its median and the
    median change per stylization (the d50 on probabilities reads this, not the named answer).
With ``--classifier RUN`` the batch's final pictures are classified again by another finished run of the
store (say, one trained at another input size): its near-ties, its table and how often it names the same
artist as the batch's classifier, to tell the classifier's resolution from the pictures' ambiguity.

    python -m checks.settle --home HOME --batch 892ce95a [--classifier 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import analysis
from core.settings import Settings


def share(record: list) -> float:
    """p_style / (p_style + p_content) of one recorded answer [step, name, p_content, p_style]."""
    return record[3] / (record[2] + record[3])


def half_and_final(answers, steps: int) -> list | None:
    """The recorded answers [step, name, p_content, p_style] at half and all of ``steps`` (as the worker's
    ``predicted_half`` reads them), or None where either was not recorded."""
    at = {r[0]: r for r in (json.loads(answers) if isinstance(answers, str) else answers or [])}
    half, final = at.get(steps // 2), at.get(steps)
    return [half, final] if half is not None and final is not None else None


def recorded(records):
    """The cross-artist rows that recorded their answers at half and all of the steps, with them as ``half_final``."""
    rows = records[records["arm"] == "cross"].copy()
    rows["half_final"] = [half_and_final(a, int(n)) for a, n in zip(rows["answers"], rows["steps"])]
    return rows[rows["half_final"].notna()].reset_index(drop=True)


def settling(rows) -> dict:
    half_final = list(rows["half_final"])
    ties = [analysis.top2_margin(p) < analysis.NEAR_TIE for p in rows["probs"]]
    changed = [h[1] != f[1] for h, f in half_final]
    decisive = [c for c, t in zip(changed, ties) if not t]
    n = len(rows)

    def rate(step: int, artist: str) -> float:  # the attribution table's row at half (0) or all (1) of the steps
        return sum(hf[step][1] == a for hf, a in zip(half_final, rows[artist])) / n

    return {
        "content": f"{rate(0, 'content_artist'):.2f} -> {rate(1, 'content_artist'):.2f}",
        "style": f"{rate(0, 'style_artist'):.2f} -> {rate(1, 'style_artist'):.2f}",
        "n": len(rows),
        "changed": sum(changed) / len(rows),
        "near_ties": sum(ties) / len(rows),
        "decisive_changed": f"{sum(decisive)} of {len(decisive)}",
        "share": f"{statistics.median(share(h) for h, _ in half_final):.2f} -> "
        f"{statistics.median(share(f) for _, f in half_final):.2f}",
        "median_abs_change": statistics.median(abs(share(f) - share(h)) for h, f in half_final),
    }


def reclassify(settings: Settings, rows, run_id: int) -> dict:
    """The final pictures through another classifier run: {level: its figures}."""
    import torch
    from PIL import Image

    from db.engine import make_engine, make_sessionmaker
    from db.models import Dataset, Run
    from worker.residents import load_classifier

    with make_sessionmaker(make_engine(settings.database_url))() as s:
        run = s.get(Run, run_id)
        classify = load_classifier(
            s, run, list(s.get(Dataset, run.dataset_id).classes), settings.artifacts, torch.device("cpu")
        )
    with torch.no_grad():
        probs = classify.probabilities([Image.open(settings.artifacts / p).convert("RGB") for p in rows["image_path"]])
    named = [classify.classes[int(i)] for i in probs.argmax(1)]
    out = {}
    for level in sorted(rows["level"].unique()):
        at = [i for i, v in enumerate(rows["level"]) if v == level]
        outcome = [
            "content" if named[i] == rows["content_artist"].iloc[i] else
            "style" if named[i] == rows["style_artist"].iloc[i] else "other"
            for i in at
        ]  # fmt: skip
        out[level] = {
            "content": outcome.count("content") / len(at),
            "style": outcome.count("style") / len(at),
            "near_ties": sum((probs[i].topk(2).values.diff().abs() < analysis.NEAR_TIE).item() for i in at) / len(at),
            "same_answer": sum(named[i] == rows["predicted"].iloc[i] for i in at) / len(at),
        }
    return out


def at_half(rows):
    """``rows`` (from ``recorded``) with p_content and p_style as they were at half of the steps. Only those two
    change: the frame is for the fit on probabilities, not for the named outcome."""
    half = rows.copy()
    half["p_content"] = [h[2] for h, _ in half["half_final"]]
    half["p_style"] = [h[3] for h, _ in half["half_final"]]
    return half


def print_d50(rows) -> None:
    """The study's answer, d50 on the probabilities over all doses, fitted to the same stylizations (``rows``, every
    cross pair that recorded its answers: the table above, ``--condition none``) at half and all of the steps."""
    for when, part in (("half", at_half(rows)), ("all", rows)):
        fit = analysis.dose_response(part, by="all", condition="none")
        r = fit[fit["outcome"] == "probs"].iloc[0]
        why = f"; {r['note']}" if isinstance(r["note"], str) and r["note"] else ""
        print(
            f"  d50 on probabilities at {when} of the steps: {r['d50']:.3g} ({r['d50_low']:.3g}-{r['d50_high']:.3g}),"
            f" slope {r['slope']:.3f} ({r['slope_low']:.3f}-{r['slope_high']:.3f}) per log dose, {r['n']} stylizations"
            f"{why}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, required=True, help="ATELIER_HOME of the store")
    ap.add_argument("--batch", required=True, help="style batch id (a prefix is fine)")
    ap.add_argument("--classifier", type=int, default=None, help="another finished run to classify the pictures")
    args = ap.parse_args()
    settings = Settings.from_env({"ATELIER_HOME": str(args.home)})
    records = analysis.load_batch(settings.database_url, args.batch)
    rows = recorded(records)
    if rows.empty:
        sys.exit(f"batch {args.batch}: no cross-artist stylization recorded its answers on the way")
    print(f"{len(rows)} cross-artist stylizations; answers at half and all of the steps")
    print(
        "  dose      n  changed  near-ties  decisive changed  share half -> final  median |change|"
        "  content half -> final  style half -> final"
    )
    for level, part in rows.groupby("level"):
        f = settling(part)
        print(
            f"  {level:<8g}{f['n']:>3}{f['changed']:>9.2f}{f['near_ties']:>11.2f}{f['decisive_changed']:>18}"
            f"{f['share']:>21}{f['median_abs_change']:>17.3f}{f['content']:>23}{f['style']:>21}"
        )
    f = settling(rows)
    print(f"  all     {f['n']:>3}{f['changed']:>9.2f}{f['near_ties']:>11.2f}{f['decisive_changed']:>18}")
    print_d50(rows)
    controls = analysis.load_controls(settings.database_url, args.batch)
    tied = sum(analysis.top2_margin(p) < analysis.NEAR_TIE for p in controls["probs"])
    print(f"  the batch's classifier on its {len(controls)} unstylized controls: {tied} near-ties")
    if args.classifier is not None:
        print(f"the final pictures through classifier run {args.classifier}:")
        print("  dose     content  style  near-ties  same answer as the batch's classifier")
        for level, r in reclassify(settings, rows, args.classifier).items():
            print(
                f"  {level:<8g}{r['content']:>8.2f}{r['style']:>7.2f}{r['near_ties']:>11.2f}{r['same_answer']:>10.2f}"
            )


if __name__ == "__main__":
    main()
