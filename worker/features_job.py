"""The `features` job: run a frozen backbone over a dataset once, for all grid cells."""

from __future__ import annotations

import json

import torch

from core.config import ModelConfig, check_feature_views
from core.weights import WeightsRecord
from worker.lifecycle import JobContext
from worker.ml.cache import cached_images
from worker.ml.checkpoint import atomic_save
from worker.ml.features import extract
from worker.ml.models import build_model
from worker.ml.train import pick_device
from worker.residents import cache_path, load_dataset_images
from worker.weights_store import local_file

SPLITS = ("train", "val", "test")


def run_features(ctx: JobContext) -> None:
    p = ctx.params
    check_feature_views(p["augment"], p["views"])  # a row written by hand or by an older client
    with ctx.sessions.begin() as session:
        data = load_dataset_images(session, p["dataset_id"])
    ctx.progress(0.0, f"caching {len(data.ids)} images at {p['image_size']}px")
    keys = [f"{i}:{path}" for i, path in zip(data.ids, data.paths)]
    images = cached_images(
        cache_path(ctx.artifacts, p["dataset_id"], p["image_size"]), data.root, data.paths, keys, p["image_size"]
    )
    weights = WeightsRecord.from_json(p.get("weights"))
    cfg = ModelConfig(arch=p["arch"], num_classes=len(data.classes), image_size=p["image_size"], weights=weights.name)
    # Seeded: a random-init backbone is then rebuilt identically wherever a cell is used as a classifier.
    torch.manual_seed(p.get("seed", 0))
    backbone = build_model(cfg, local_file(ctx.artifacts, weights)).backbone  # sha256 checked against the record
    device = pick_device()
    tensors, total, done = {}, len(data.ids), 0
    for split in SPLITS:
        mask = torch.tensor([s == split for s in data.splits], dtype=torch.bool)
        views = p["views"] if split == "train" else 1  # evaluation always sees the plain image

        def report(n: int, base: int = done, split: str = split, count: int = int(mask.sum())) -> None:
            ctx.progress(0.95 * (base + n) / total, f"{split}: {n}/{count} images")

        tensors[f"{split}_features"] = extract(
            backbone, images[mask], p["image_size"], p["augment"], views, device, seed=p.get("seed", 0), progress=report
        )
        tensors[f"{split}_labels"] = torch.tensor(data.labels)[mask]
        tensors[f"{split}_ids"] = torch.tensor(data.ids)[mask]
        done += int(mask.sum())
    atomic_save(tensors, ctx.artifact(p["output"]), {"classes": json.dumps(data.classes, ensure_ascii=False)})
