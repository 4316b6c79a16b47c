"""Grid search: atelier's shared frozen-backbone features against the naive way.

The ResNet50 study's head grid (GAP and SPP heads, dense1 128:64:512 x dense2
32:32:256 = 112 cells), a few epochs per cell, on the same images, run twice in
one process:
  - naive: every cell is its own feature-extract training run, so the frozen
    backbone is recomputed for every batch of every epoch of every cell;
  - atelier: the backbone runs once (worker.ml.features.extract), every cell
    trains only its head on the stored maps (what `atelier grid` does).
Prints wall time of each, the ratio, and how well the two leaderboards agree.

    python -m bench.grid                                   # on a GPU box: 2000 images, 112 cells
    python -m bench.grid --images 60 --size 32 --arch resnet18 --dense1 128:64:192 --dense2 32:32:64 --epochs 1  # smoke
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from core.config import ModelConfig, TrainConfig
from corpus.synth import make_artists, paint
from orchestrator.jobs.gridspec import expand, parse_values
from worker.ml.features import extract, plain_view, random_view
from worker.ml.models import build_head, build_model
from worker.ml.train import Split, fit


def synthetic_split(n: int, artists: int, size: int, seed: int) -> Split:
    """Paintings decoded straight to the uint8 cache format (decoding is not what this bench measures)."""
    import numpy as np

    painters = make_artists(artists, 0)
    rng = np.random.default_rng(seed)
    images = torch.empty((n, 3, size, size), dtype=torch.uint8)
    for i in range(n):
        im = paint(painters[i % artists], rng, size).resize((size, size))
        images[i] = torch.from_numpy(np.array(im)).permute(2, 0, 1)
    return Split(images, torch.arange(n) % artists)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def cell_config(args, cell) -> TrainConfig:
    return TrainConfig(
        arch=args.arch,
        num_classes=args.artists,
        epochs=args.epochs,
        batch_size=args.batch,
        lr=1e-3,
        image_size=args.size,
        mode="feature-extract",
        head=cell["head"],
        dense=(cell["dense1"], cell["dense2"]),
        augment="none",
        early_stop_patience=10**6,
    )


def naive(args, cells, train, val, device) -> list[float]:
    scores = []
    for cell in cells:
        _, result = fit(cell_config(args, cell), train, val, device=device)
        scores.append(result.best_val.macro_f1)
    return scores


def shared(args, cells, train, val, device) -> list[float]:
    torch.manual_seed(0)
    backbone = build_model(ModelConfig(args.arch, args.artists, image_size=args.size)).backbone
    feats = {
        name: extract(backbone, s.images, args.size, "none", 1, device, batch_size=args.batch)
        for name, s in (("train", train), ("val", val))
    }
    ftrain, fval = Split(feats["train"], train.labels), Split(feats["val"], val.labels)
    scores = []
    for cell in cells:
        cfg = cell_config(args, cell)
        head = build_head(cfg.model_config(), tuple(feats["train"].shape[2:]))
        _, result = fit(
            cfg, ftrain, fval, device=device, model=head, train_transform=random_view, eval_transform=plain_view
        )
        scores.append(result.best_val.macro_f1)
    return scores


def rank_agreement(a: list[float], b: list[float]) -> float:
    """Kendall's tau between two leaderboards (1 = same order)."""
    n, s = len(a), 0
    for i in range(n):
        for j in range(i + 1, n):
            s += 1 if (a[i] - a[j]) * (b[i] - b[j]) > 0 else -1 if (a[i] - a[j]) * (b[i] - b[j]) < 0 else 0
    return s / max(1, n * (n - 1) / 2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--images", type=int, default=2000, help="training images (validation gets a quarter)")
    p.add_argument("--artists", type=int, default=10)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--heads", default="gap,spp")
    p.add_argument("--dense1", default="128:64:512")
    p.add_argument("--dense2", default="32:32:256")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cells = expand(
        {
            "head": parse_values("heads", args.heads),
            "dense1": parse_values("dense1", args.dense1, int),
            "dense2": parse_values("dense2", args.dense2, int),
        }
    )
    train = synthetic_split(args.images, args.artists, args.size, 0)
    val = synthetic_split(max(args.artists, args.images // 4), args.artists, args.size, 1)
    print(
        f"device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}; {args.arch}, {len(cells)} cells, "
        f"{args.epochs} epochs each, {len(train)} train / {len(val)} val images at {args.size}px"
    )

    timings, results = {}, {}
    for name, fn in (("atelier (shared features)", shared), ("naive (backbone per cell)", naive)):
        sync(device)
        t0 = time.perf_counter()
        results[name] = fn(args, cells, train, val, device)
        sync(device)
        timings[name] = time.perf_counter() - t0
        print(f"  {name:28s} {timings[name]:9.1f} s")
    ours, theirs = results["atelier (shared features)"], results["naive (backbone per cell)"]
    print(f"  speed-up: {timings['naive (backbone per cell)'] / timings['atelier (shared features)']:.1f}x")
    print(
        f"  leaderboard agreement (Kendall tau): {rank_agreement(ours, theirs):.2f}; "
        f"best cell {cells[max(range(len(cells)), key=ours.__getitem__)]} vs "
        f"{cells[max(range(len(cells)), key=theirs.__getitem__)]}"
    )
    if args.json:
        atelier_s, naive_s = timings["atelier (shared features)"], timings["naive (backbone per cell)"]
        args.json.write_text(
            json.dumps(
                {"arch": args.arch, "cells": len(cells), "atelier_s": atelier_s, "naive_s": naive_s,
                 "speedup": naive_s / atelier_s, "kendall_tau": rank_agreement(ours, theirs)},
                indent=1,
            )
        )  # fmt: skip


if __name__ == "__main__":
    main()
