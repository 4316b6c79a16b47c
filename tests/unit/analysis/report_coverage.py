"""Prints the coverage figures that docs/methods.md quotes, from the same simulations as test_coverage.py (which
asserts their bands): python -m tests.unit.analysis.report_coverage (about 3 minutes on 2 cores)."""

import numpy as np

import analysis
from tests.unit.analysis import study
from tests.unit.analysis import test_coverage as tc


def main() -> None:
    for images, per_style, shared in tc.DESIGNS:
        rates, diffs = [], []
        for seed in range(250):
            r, d = tc._rates_and_contrasts(study.batch(seed, images=images, per_style=per_style, shared=shared))
            rates += r
            diffs += d
        print(
            f"design images={images} per_style={per_style} shared={shared}: rates {np.mean(rates):.3f} ({len(rates)}), contrasts {np.mean(diffs):.3f} ({len(diffs)})",
            flush=True,
        )
    for images, per_style in ((2, 2), (3, 7)):
        hits = {"named": [], "probs": []}
        bounded = {"named": 0, "probs": 0}
        for seed in range(150):
            fits = analysis.dose_response(study.batch(seed, images=images, per_style=per_style), "all", "none")
            for f in fits.itertuples():
                if np.isfinite(f.d50_low):
                    bounded[f.outcome] += 1
                    hits[f.outcome].append(f.d50_low <= 10 <= f.d50_high)
                else:
                    hits[f.outcome].append(True)
        print(
            f"d50 images={images} per_style={per_style}: "
            + ", ".join(f"{o} {np.mean(h):.3f} (bounded {bounded[o]} of 150)" for o, h in hits.items()),
            flush=True,
        )
    hits, full, n = [], 0, 0
    T = study.truth()
    for seed in range(120):
        part = study.batch(seed, images=2, per_style=7)
        t = analysis.attribution_table(part[part["level"] == 10.0], by="style-artist", condition="none")
        for row in t[t["treatment"] == "dose"].itertuples():
            if row.style_images < 2:
                continue
            hits.append(row.style_low <= T[10.0]["style"] <= row.style_high)
            full += (row.style_low, row.style_high) == (0.0, 1.0)
            n += 1
    print(f"per style artist (2 images, 7 pairs): coverage {np.mean(hits):.3f} over {n}, [0,1] {full}")


if __name__ == "__main__":
    main()
