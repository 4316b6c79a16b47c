"""The `train` job: load a dataset from the store, train, persist every epoch.

Glue between the store and the pure training code in ``worker.ml.train``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from core.config import TrainConfig
from core.errors import ConfigError
from core.weights import job_record
from db.models import EpochMetric, Prediction, Run
from db.upsert import upsert
from worker import child
from worker.child import file_key
from worker.lifecycle import JobContext, job_run_id, require_row
from worker.ml.checkpoint import SavedState, save_model, save_state
from worker.ml.features import plain_view, random_view
from worker.ml.metrics import confusion, per_class_f1
from worker.ml.models import build_head, build_model
from worker.ml.train import EpochResult, Split, evaluate, fit, pick_device
from worker.ml.training_state import Trainer
from worker.oom import halve_batch
from worker.residents import DatasetImages, load_dataset_images, resident_images
from worker.weights_store import local_file


def splits_of(data: DatasetImages, images: torch.Tensor) -> dict[str, Split]:
    labels = torch.tensor(data.labels, dtype=torch.long)
    out = {}
    for name in ("train", "val", "test"):
        mask = torch.tensor([s == name for s in data.splits], dtype=torch.bool)
        out[name] = Split(images[mask], labels[mask])
    return out


@dataclass
class Inputs:
    """What a run trains on: images through a classifier, or cached features through a head."""

    classes: list[str]
    splits: dict[str, Split]
    test_ids: list[int]
    model: torch.nn.Module | None = None  # None: the classifier built from the config
    train_transform: object = None
    eval_transform: object = None
    weights_file: Path | None = None  # the backbone's starting weights for that classifier (None: random init)


def image_inputs(ctx: JobContext, cfg: TrainConfig) -> Inputs:
    with ctx.sessions() as session:
        data = load_dataset_images(session, ctx.params["dataset_id"])
    ctx.progress(0.0, f"caching {len(data.ids)} images at {cfg.image_size}px")
    images = resident_images(ctx, ctx.params["dataset_id"], data, cfg.image_size)
    model = None
    weights_file = local_file(ctx.artifacts, job_record(ctx.params))  # sha256 checked against the job's record
    if "init_head" in ctx.params:  # a sweep's fine-tune follow-up starts from the cell's trained head
        torch.manual_seed(cfg.seed)  # fit seeds the models it builds; this one is built here
        model = build_model(cfg.model_config(), weights_file)
        model.head.load_state_dict(load_file(str(ctx.artifact(ctx.params["init_head"]))))
    return Inputs(
        data.classes,
        splits_of(data, images),
        [i for i, s in zip(data.ids, data.splits) if s == "test"],
        model,
        weights_file=weights_file,
    )


def feature_inputs(ctx: JobContext, cfg: TrainConfig) -> Inputs:
    """A grid cell in feature-extract mode: the backbone already ran once in its features job."""
    t, classes = child.resident().get("features", file_key(ctx.artifact(ctx.params["features"])), _read_features(ctx))
    stored = t["train_features"].shape[1]  # (N, V, C, H, W)
    if "views" in ctx.params["config"] and stored != cfg.views:  # rows from before views were recorded lack it
        raise ConfigError(f"the cell's config says {cfg.views} feature views, its features file holds {stored}")
    splits = {s: Split(t[f"{s}_features"], t[f"{s}_labels"]) for s in ("train", "val", "test")}
    torch.manual_seed(cfg.seed)  # the head's initial weights follow the cell's seed, not the worker's history
    head = build_head(cfg.model_config(), tuple(t["train_features"].shape[2:]))
    return Inputs(classes, splits, t["test_ids"].tolist(), head, random_view, plain_view)


def _read_features(ctx: JobContext):
    def read() -> tuple[dict[str, torch.Tensor], list[str]]:
        with safe_open(str(ctx.artifact(ctx.params["features"])), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, json.loads(f.metadata()["classes"])

    return read


def run_train(ctx: JobContext) -> None:
    run_id = job_run_id(ctx)
    cfg = TrainConfig.from_json(ctx.params["config"])
    with ctx.sessions() as session:
        run = require_row(session, Run, run_id, "run")
        resume_from = run.state_path if run.last_epoch else None
    inputs = feature_inputs(ctx, cfg) if "features" in ctx.params else image_inputs(ctx, cfg)

    # One folder per attempt: a worker that lost its claim cannot overwrite its successor's files.
    folder = Path("runs") / str(run_id) / f"attempt-{ctx.claim.attempt}"
    meta = {"config": json.dumps(cfg.to_json()), "classes": json.dumps(inputs.classes, ensure_ascii=False)}
    written: dict[str, Path] = {}  # this attempt's files the run row points to

    def on_epoch(result: EpochResult, trainer: Trainer) -> None:
        # Files are named by epoch and written before the row that points to them: a worker frozen
        # between the two leaves the row naming the previous epoch's files, which are still there.
        files = save_epoch_files(ctx, folder, meta, result, trainer)
        record_epoch(ctx, run_id, result, files)
        drop_superseded(ctx, written, files)
        report_epoch(ctx, cfg, result)

    resume = SavedState.load(ctx.artifact(resume_from)) if resume_from else None
    if resume:
        ctx.progress(resume.progress.epoch / cfg.total_epochs, f"resuming after epoch {resume.progress.epoch}")
    device = pick_device()
    try:
        model, _ = fit(
            cfg,
            inputs.splits["train"],
            inputs.splits["val"],
            on_epoch,
            device=device,
            resume=resume,
            model=inputs.model,
            train_transform=inputs.train_transform,
            eval_transform=inputs.eval_transform,
            weights_file=inputs.weights_file,
            on_batch=batch_ticker(ctx, cfg),
            compile_mode=ctx.settings.compile,
        )
    except torch.OutOfMemoryError as err:
        again = halve_batch(ctx.params, ("config", "batch_size"), err)
        if again is None:
            raise
        with ctx.write() as session:  # the run reports the batch it really trains with
            session.get(Run, run_id).config = again.params["config"]
        raise again from err
    with ctx.sessions() as session:
        best = session.get(Run, run_id).checkpoint_path
    record_test_results(ctx, run_id, model, cfg, inputs, ctx.artifact(best), device)


def save_epoch_files(
    ctx: JobContext, folder: Path, meta: dict[str, str], result: EpochResult, trainer: Trainer
) -> dict[str, Path]:
    """Write the epoch's training state, and its model when it is the best so far: their paths under the
    artifacts root by kind ("state", "best"), named by epoch so no file of an earlier epoch is overwritten."""
    files = {"state": folder / f"state-epoch-{result.epoch}.safetensors"}
    if result.improved:
        files["best"] = folder / f"best-epoch-{result.epoch}.safetensors"
        save_model(trainer.model, ctx.artifact(files["best"]), {**meta, "epoch": str(result.epoch)})
    save_state(trainer, ctx.artifact(files["state"]), meta)
    return files


def record_epoch(ctx: JobContext, run_id: int, result: EpochResult, files: dict[str, Path]) -> None:
    """The epoch's metrics and the run row's pointers to its ``files``, in one transaction that commits only
    while this worker holds the claim (JobStopped otherwise)."""
    with ctx.write() as session:
        upsert(session, EpochMetric, epoch_rows(run_id, result), keys=("run_id", "epoch", "phase"))
        run = session.get(Run, run_id)
        run.last_epoch, run.state_path = result.epoch, files["state"].as_posix()
        if result.improved:
            run.best_epoch, run.checkpoint_path = result.epoch, files["best"].as_posix()
            run.best_val_top1, run.best_val_top2 = result.val.top1, result.val.top2
            run.best_val_macro_f1 = result.val.macro_f1


def drop_superseded(ctx: JobContext, written: dict[str, Path], files: dict[str, Path]) -> None:
    """Delete the files of ``written`` that ``files`` replace (the row names the new ones now); remember ``files``."""
    for key, path in files.items():
        if key in written:
            ctx.artifact(written[key]).unlink(missing_ok=True)
        written[key] = path


def batch_ticker(ctx: JobContext, cfg: TrainConfig):
    """Progress inside an epoch, and a cancel noticed between batches (not at the end of a long epoch)."""

    def on_batch(epoch: int, done: int, total: int) -> None:
        ctx.tick((epoch - 1 + done / total) / cfg.total_epochs, f"epoch {epoch}/{cfg.total_epochs}: {done}/{total}")

    return on_batch


def report_epoch(ctx: JobContext, cfg: TrainConfig, result: EpochResult) -> None:
    """The epoch's progress, to the row and to Flower; raises JobStopped if the job was cancelled or taken over."""
    ctx.progress(
        result.epoch / cfg.total_epochs,
        f"epoch {result.epoch}/{cfg.total_epochs} val top1 {result.val.top1:.3f} F1 {result.val.macro_f1:.3f}",
    )


def record_test_results(
    ctx: JobContext, run_id: int, model, cfg: TrainConfig, inputs: Inputs, best: Path, device
) -> None:
    """Evaluate the best checkpoint (not the last epoch) on the test split and store every prediction."""
    test, classes = inputs.splits["test"], inputs.classes
    if len(test) == 0:
        return
    model.load_state_dict(load_file(str(best)))
    model.to(device)
    _loss, scores, logits = evaluate(model, test, cfg, device, transform=inputs.eval_transform)
    probs = logits.softmax(dim=1)
    top_p, top_i = probs.topk(min(3, probs.shape[1]), dim=1)
    rows = []
    for image_id, label, p, idx in zip(inputs.test_ids, test.labels.tolist(), top_p.tolist(), top_i.tolist()):
        rows.append(
            {
                "run_id": run_id,
                "image_id": image_id,
                "label": classes[label],
                "predicted": classes[idx[0]],
                "correct": idx[0] == label,
                "top3": [[classes[i], round(q, 6)] for i, q in zip(idx, p)],
            }
        )
    with ctx.write() as session:
        upsert(session, Prediction, rows, keys=("run_id", "image_id"))
        run = session.get(Run, run_id)
        run.test_top1, run.test_top2, run.test_macro_f1 = scores.top1, scores.top2, scores.macro_f1
        run.test_per_class_f1 = per_class_f1(logits, test.labels)
        run.test_confusion = confusion(logits, test.labels)


def epoch_rows(run_id: int, r: EpochResult) -> list[dict]:
    common = {"run_id": run_id, "epoch": r.epoch, "stage": r.stage, "lr": r.lr, "seconds": r.seconds}
    return [
        {
            **common,
            "phase": "train",
            "loss": r.train_loss,
            "top1": r.train.top1,
            "top2": r.train.top2,
            "macro_f1": r.train.macro_f1,
        },
        {
            **common,
            "phase": "val",
            "loss": r.val_loss,
            "top1": r.val.top1,
            "top2": r.val.top2,
            "macro_f1": r.val.macro_f1,
        },
    ]
