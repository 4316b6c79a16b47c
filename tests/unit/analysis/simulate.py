"""Simulated batches with crossed random image effects: the truth is known, so intervals can be checked."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit


def record(cid, content_artist, sid, style_artist, dose, outcome, predicted, share) -> dict:
    """One stylization's row as ``analysis.load_batch`` gives it, both controls named correctly; ``share`` is
    p_style / (p_style + p_content)."""
    return {
        "content_image_id": cid,
        "content_artist": content_artist,
        "style_image_id": sid,
        "style_artist": style_artist,
        "treatment": "dose",
        "level": float(dose),
        "dose": float(dose),
        "outcome": outcome,
        "predicted": predicted,
        "predicted_half": predicted,
        "p_style": 0.8 * share,
        "p_content": 0.8 * (1 - share),
        "checkpoint_sha256": "c" * 64,
        "content_correct": True,
        "style_correct": True,
        "content_control_predicted": content_artist,
        "style_control_predicted": style_artist,
        "loss_ratio": dose,
        "balance": dose,
    }


def batch(
    seed: int,
    artists: int = 8,
    images: int = 6,
    per_cell: int = 5,
    doses=(0.0, 0.3, 1.0, 3.0, 10.0),
    d50: float = 1.0,
    slope: float = 1.5,
    sd_content: float = 1.0,
    sd_style: float = 1.5,
    p_other: float = 0.2,
    same: bool = False,
) -> pd.DataFrame:
    """Records shaped as ``analysis.load_batch`` returns them: ``per_cell`` pairs per (style artist, content artist)
    cell, each pair at every dose. Among stylizations naming one of the two artists, the style artist's log-odds
    are slope·log(dose/d50) + u_content + v_style (dose 0: −4 + u + v), so d50 is where the style artist is named
    as often as the content artist, marginally too (the image effects are symmetric). A share ``p_other`` names a
    third artist. ``p_style``/(``p_style``+``p_content``) follows the same curve with its own noise."""
    rng = np.random.default_rng(seed)
    names = [f"A{i}" for i in range(artists)]
    u = rng.normal(0, sd_content, (artists, images))
    v = rng.normal(0, sd_style, (artists, images))
    rows = []
    for a in range(artists):  # style artist
        for b in range(artists):  # content artist
            if a == b and not same:
                continue
            for _ in range(per_cell):
                ci, si = rng.integers(images), rng.integers(images)
                cid, sid = b * images + ci, a * images + si
                for d in doses:
                    eta = (slope * np.log(d / d50) if d > 0 else -4.0) + u[b, ci] + v[a, si]
                    share = expit(eta + rng.normal(0, 0.5))
                    if a == b:
                        outcome = "same"
                        predicted = names[b] if rng.random() < 0.8 else names[(b + 1) % artists]
                    elif rng.random() < p_other:
                        outcome, predicted = "other", next(n for n in names if n not in (names[a], names[b]))
                    else:
                        outcome = "style" if rng.random() < expit(eta) else "content"
                        predicted = names[a] if outcome == "style" else names[b]
                    rows.append(
                        record(cid, names[b], sid, names[a], d, outcome, predicted, share)
                        | {"pair_hash": f"{cid}-{sid}-{d:g}-{len(rows)}"}
                    )
    frame = pd.DataFrame(rows)
    # one pair, one key across doses (a real batch: one (content image, style image) per pair and seed)
    frame["pair"] = [
        f"{c}:{s}:{i // len(doses)}" for i, (c, s) in enumerate(zip(frame["content_image_id"], frame["style_image_id"]))
    ]
    frame["arm"] = ["same" if o == "same" else "cross" for o in frame["outcome"]]
    return frame
