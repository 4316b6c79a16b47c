"""The `train` job: load a dataset from the store, train, persist every epoch.

Glue between the store and the pure training code in ``worker.ml.train``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from sqlalchemy import select

from db.models import Dataset, EpochMetric, Image, Run
from db.upsert import upsert
from worker.lifecycle import JobContext
from worker.ml.cache import cached_images
from worker.ml.train import EpochResult, Split, TrainConfig, evaluate, fit, pick_device


@dataclass
class DatasetImages:
    root: Path
    classes: list[str]
    ids: list[int]
    paths: list[str]
    labels: list[int]
    splits: list[str]


def load_dataset_images(session, dataset_id: int) -> DatasetImages:
    dataset = session.get(Dataset, dataset_id)
    rows = session.execute(
        select(Image.id, Image.path, Image.label, Image.split)
        .where(Image.dataset_id == dataset_id, Image.status == "ok")
        .order_by(Image.id)
    ).all()
    index = {c: i for i, c in enumerate(dataset.classes)}
    return DatasetImages(
        root=Path(dataset.root), classes=list(dataset.classes), ids=[r.id for r in rows],
        paths=[r.path for r in rows], labels=[index[r.label] for r in rows], splits=[r.split for r in rows],
    )


def cache_path(artifacts: Path, dataset_id: int, size: int) -> Path:
    return artifacts / "cache" / f"dataset-{dataset_id}" / f"{size}px.safetensors"


def splits_of(data: DatasetImages, images: torch.Tensor) -> dict[str, Split]:
    labels = torch.tensor(data.labels, dtype=torch.long)
    out = {}
    for name in ("train", "val", "test"):
        mask = torch.tensor([s == name for s in data.splits], dtype=torch.bool)
        out[name] = Split(images[mask], labels[mask])
    return out


def save_checkpoint(model: torch.nn.Module, path: Path, metadata: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def run_train(ctx: JobContext) -> None:
    run_id = ctx.params["run_id"]
    cfg = TrainConfig(**{**ctx.params["config"], "dense": tuple(ctx.params["config"]["dense"])})
    with ctx.sessions.begin() as session:
        data = load_dataset_images(session, ctx.params["dataset_id"])
    ctx.progress(0.0, f"caching {len(data.ids)} images at {cfg.image_size}px")
    keys = [f"{i}:{p}" for i, p in zip(data.ids, data.paths)]
    images = cached_images(cache_path(ctx.artifacts, ctx.params["dataset_id"], cfg.image_size), data.root, data.paths, keys, cfg.image_size)
    splits = splits_of(data, images)

    # One file per attempt: a worker that lost its claim cannot overwrite its successor's.
    rel_ckpt = Path("runs") / str(run_id) / f"attempt-{ctx.claim.attempt}" / "best.safetensors"
    meta = {"config": json.dumps(cfg.to_json()), "classes": json.dumps(data.classes, ensure_ascii=False)}

    def on_epoch(result: EpochResult, model: torch.nn.Module) -> None:
        if result.improved:
            save_checkpoint(model, ctx.artifacts / rel_ckpt, {**meta, "epoch": str(result.epoch)})
        with ctx.write() as session:
            upsert(session, EpochMetric, epoch_rows(run_id, result), keys=("run_id", "epoch", "phase"))
            if result.improved:
                run = session.get(Run, run_id)
                run.best_epoch, run.checkpoint_path = result.epoch, rel_ckpt.as_posix()
                run.best_val_top1, run.best_val_top2 = result.val.top1, result.val.top2
                run.best_val_macro_f1 = result.val.macro_f1
        ctx.progress(
            result.epoch / cfg.total_epochs,
            f"epoch {result.epoch}/{cfg.total_epochs} val top1 {result.val.top1:.3f} F1 {result.val.macro_f1:.3f}",
        )

    device = pick_device()
    model, _ = fit(cfg, splits["train"], splits["val"], on_epoch, device=device)

    # Test metrics come from the best checkpoint, not from the last epoch.
    model.load_state_dict(load_file(str(ctx.artifacts / rel_ckpt)))
    model.to(device)
    _, test_scores, _ = evaluate(model, splits["test"], cfg, device) if len(splits["test"]) else (None, None, None)
    with ctx.write() as session:
        run = session.get(Run, run_id)
        if test_scores is not None:
            run.test_top1, run.test_top2, run.test_macro_f1 = test_scores.top1, test_scores.top2, test_scores.macro_f1


def epoch_rows(run_id: int, r: EpochResult) -> list[dict]:
    common = {"run_id": run_id, "epoch": r.epoch, "stage": r.stage, "lr": r.lr, "seconds": r.seconds}
    return [
        {**common, "phase": "train", "loss": r.train_loss, "top1": r.train.top1, "top2": r.train.top2, "macro_f1": r.train.macro_f1},
        {**common, "phase": "val", "loss": r.val_loss, "top1": r.val.top1, "top2": r.val.top2, "macro_f1": r.val.macro_f1},
    ]
