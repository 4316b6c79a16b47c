"""Training and evaluation of a classifier on an in-memory uint8 image cache.

Pure PyTorch: no Celery, no ORM. The caller hands in decoded images
(``uint8 (N, 3, S, S)``), labels and a ``TrainConfig``, and receives a callback
per epoch to persist metrics and checkpoints. Batches are sliced from the cache
(on the GPU when it fits) and augmented on the device, so no DataLoader and no
per-image decoding sits between the GPU and its work.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from core.config import TrainConfig
from worker.ml.augment import make_augment
from worker.ml.checkpoint import SavedState
from worker.ml.compiled import compile_in_place
from worker.ml.metrics import Scores, score
from worker.ml.models import (
    AUX_LOSS_WEIGHT,
    Classifier,
    build_model,
    build_optimizer,
    set_mode,
    trainable_parameters,
)
from worker.ml.training_state import Progress, Trainer


@dataclass
class Split:
    images: torch.Tensor  # uint8 (N, 3, S, S), CPU or device
    labels: torch.Tensor  # int64 (N,)

    def __len__(self) -> int:
        return self.labels.shape[0]


@dataclass(frozen=True)
class EpochResult:
    epoch: int  # 1-based across phases
    stage: str
    lr: float
    train_loss: float
    train: Scores
    val_loss: float
    val: Scores
    seconds: float
    improved: bool  # the validation metric is the best so far


@dataclass
class FitResult:
    best_epoch: int
    best_val: Scores | None  # None when a resumed run did not improve after resuming
    epochs_run: int  # the last epoch actually trained
    stopped_early: bool
    history: list[EpochResult] = field(default_factory=list)


def pick_device(requested: str | None = None) -> torch.device:
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def place_cache(images: torch.Tensor, device: torch.device, budget: float = 0.5) -> torch.Tensor:
    """Move the uint8 cache onto the GPU when it takes under ``budget`` of free memory."""
    if device.type != "cuda":
        return images
    free, _total = torch.cuda.mem_get_info(device)
    nbytes = images.numel() * images.element_size()
    return images.to(device, non_blocking=True) if nbytes < budget * free else images.pin_memory()


def _forward_loss(model, x, y):
    out = model(x)
    if isinstance(out, tuple):  # Inception V3 in training mode: (logits, aux_logits)
        logits, aux = out
        return logits, F.cross_entropy(logits, y) + AUX_LOSS_WEIGHT * F.cross_entropy(aux, y)
    return out, F.cross_entropy(out, y)


def _autocast(device: torch.device):
    # bf16 needs no loss scaling; CPU autocast is slower than fp32 on small nets, so GPU only.
    enabled = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def train_one_epoch(
    model, optimizer, split: Split, augment, cfg: TrainConfig, device, generator, on_batch=None
) -> tuple[float, Scores]:
    """One pass over ``split``; ``on_batch(done, total)`` after every step (it may raise to stop the job)."""
    model.train()
    order = torch.randperm(len(split), generator=generator)
    total_loss, all_logits, all_labels = 0.0, [], []
    for start in range(0, len(split), cfg.batch_size):
        idx = order[start : start + cfg.batch_size]
        if len(idx) < 2 and len(split) >= 2:
            continue  # BatchNorm cannot train on a batch of one
        x = augment(split.images[idx.to(split.images.device)].to(device, non_blocking=True), generator)
        if x.ndim == 4:  # flat features (a logistic backbone's) have no channels to reorder
            x = x.contiguous(memory_format=torch.channels_last)
        y = split.labels[idx].to(device, non_blocking=True)
        with _autocast(device):
            logits, loss = _forward_loss(model, x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += loss.detach() * len(idx)
        all_logits.append(logits.detach().float())
        all_labels.append(y)
        if on_batch is not None:
            on_batch(min(start + cfg.batch_size, len(split)), len(split))
    seen = sum(len(t) for t in all_labels)
    logits, labels = torch.cat(all_logits), torch.cat(all_labels)
    return float(total_loss) / max(seen, 1), score(logits, labels)


@torch.no_grad()
def predict(
    model, split: Split, cfg: TrainConfig, device, batch_size: int | None = None, transform=None
) -> torch.Tensor:
    """Logits (N, K) in fp32 on the CPU, in the order of ``split``."""
    model.eval()
    augment = transform or make_augment("none", cfg.image_size, train=False)
    out = []
    bs = batch_size or max(cfg.batch_size, 64)
    for start in range(0, len(split), bs):
        x = augment(split.images[start : start + bs].to(device, non_blocking=True), None)
        if x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(device):
            out.append(model(x).float().cpu())
    return torch.cat(out)


def evaluate(model, split: Split, cfg: TrainConfig, device, transform=None) -> tuple[float, Scores, torch.Tensor]:
    logits = predict(model, split, cfg, device, transform=transform)
    labels = split.labels.cpu()
    return F.cross_entropy(logits, labels).item(), score(logits, labels), logits


def _phase_of(cfg: TrainConfig, epoch: int) -> int:
    """Index of the phase that runs ``epoch`` (1-based)."""
    end = 0
    for i, (_, _, n, _) in enumerate(cfg.phases()):
        end += n
        if epoch <= end:
            return i
    return len(cfg.phases())


def _start_phase(cfg: TrainConfig, model, index: int):
    _stage, mode, _n, lr = cfg.phases()[index]
    if isinstance(model, Classifier):  # a bare head (grid cells on cached features) has no backbone to freeze
        set_mode(model, mode)
    optimizer = build_optimizer(cfg.optimizer, trainable_parameters(model), lr, weight_decay=cfg.weight_decay)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=cfg.plateau_factor, patience=cfg.plateau_patience
    )
    return optimizer, plateau


def fit(
    cfg: TrainConfig,
    train: Split,
    val: Split,
    on_epoch: Callable[[EpochResult, Trainer], None] | None = None,
    *,
    device: torch.device | None = None,
    resume: SavedState | None = None,
    model: torch.nn.Module | None = None,
    train_transform=None,
    eval_transform=None,
    weights_file: str | Path | None = None,
    on_batch: Callable[[int, int, int], None] | None = None,
    compile_mode: str = "off",
) -> tuple[torch.nn.Module, FitResult]:
    """Train through every phase of ``cfg``; ``on_epoch`` persists each epoch.

    With ``resume`` (a state saved by the caller after some epoch) training
    continues after that epoch with the same model, optimizer, scheduler and
    random streams (the trainer's generator, torch's global CPU stream and, on a
    GPU, the device's stream that dropout draws from), so a retried job ends as
    an uninterrupted one would. The
    callback may raise to stop training (cancellation, a lost claim).

    ``model`` and the transforms replace the image classifier and its
    augmentation, e.g. to train a head on cached backbone features. ``weights_file``: the backbone's
    starting weights for the classifier built here (``cfg.weights`` only names them). ``on_batch(epoch,
    done, total)`` runs after every training step: progress inside a long epoch, and a cancel within seconds.
    ``compile_mode``: ATELIER_COMPILE (worker.ml.compiled); the model is compiled in place, checkpoints unchanged.
    """
    device = device or pick_device()
    torch.manual_seed(cfg.seed)  # initial weights; a resume then restores the streams as they were saved
    model = (model or build_model(cfg.model_config(), weights_file)).to(device).to(memory_format=torch.channels_last)
    compile_in_place(model, compile_mode, device)
    train = Split(place_cache(train.images, device), train.labels)
    augment = train_transform or make_augment(cfg.augment, cfg.image_size, train=True)
    t, current = _make_trainer(cfg, model, resume)
    resumed_after, history, stopped_early = t.progress.epoch, [], False
    while t.progress.epoch < cfg.total_epochs:
        index = _phase_of(cfg, t.progress.epoch + 1)
        if t.progress.stopped_phase == index:  # early stopping ended this phase: skip to the next
            _skip_phase(cfg, t.progress, index)
            stopped_early = True
            continue
        if index != current:
            current = _enter_phase(cfg, t, index)
        result = _train_epoch(cfg, t, index, train, val, augment, eval_transform, device, on_batch)
        history.append(result)
        if on_epoch:
            on_epoch(result, t)
    return model, _fit_result(t.progress, history, resumed_after, stopped_early)


def _make_trainer(cfg: TrainConfig, model: torch.nn.Module, resume: SavedState | None) -> tuple[Trainer, int]:
    """A trainer at the start, or where ``resume`` left off; and the index of the phase whose optimizer is live."""
    progress = resume.progress if resume else Progress(epoch=0, best_epoch=0, best_value=-math.inf, since_best=0)
    current = _phase_of(cfg, max(progress.epoch, 1))
    optimizer, plateau = _start_phase(cfg, model, current)
    t = Trainer(model, optimizer, plateau, torch.Generator().manual_seed(cfg.seed), progress)
    if resume:
        resume.load_into(t)
    return t, current


def _skip_phase(cfg: TrainConfig, progress: Progress, index: int) -> None:
    """Early stopping ended phase ``index``: jump to its last epoch, so the next phase starts."""
    progress.epoch = sum(p[2] for p in cfg.phases()[: index + 1])
    progress.stopped_phase = None


def _enter_phase(cfg: TrainConfig, t: Trainer, index: int) -> int:
    """A new phase: its mode, a fresh optimizer and schedule at its lr, and its own patience."""
    t.optimizer, t.plateau = _start_phase(cfg, t.model, index)
    t.progress.since_best = 0
    return index


def _train_epoch(
    cfg: TrainConfig,
    t: Trainer,
    index: int,
    train: Split,
    val: Split,
    augment,
    eval_transform,
    device: torch.device,
    on_batch: Callable[[int, int, int], None] | None = None,
) -> EpochResult:
    """Train and validate the next epoch (of phase ``index``), then step the schedule and early stopping."""
    epoch = t.progress.epoch + 1
    t0 = time.perf_counter()
    current_lr = t.optimizer.param_groups[0]["lr"]
    step = (lambda done, total: on_batch(epoch, done, total)) if on_batch else None
    train_loss, train_scores = train_one_epoch(t.model, t.optimizer, train, augment, cfg, device, t.generator, step)
    val_loss, val_scores, _ = evaluate(t.model, val, cfg, device, transform=eval_transform)
    improved = _record_progress(cfg, t, epoch, index, getattr(val_scores, cfg.metric))
    return EpochResult(
        epoch=epoch,
        stage=cfg.phases()[index][0],
        lr=current_lr,
        train_loss=train_loss,
        train=train_scores,
        val_loss=val_loss,
        val=val_scores,
        seconds=time.perf_counter() - t0,
        improved=improved,
    )


def _record_progress(cfg: TrainConfig, t: Trainer, epoch: int, index: int, value: float) -> bool:
    """Epoch ``epoch`` ended with validation metric ``value``: update the best, the plateau and the
    patience; True when it is the best so far."""
    p = t.progress
    improved = value > p.best_value
    if improved:
        p.best_epoch, p.best_value, p.since_best = epoch, value, 0
    else:
        p.since_best += 1
    t.plateau.step(value)
    p.epoch = epoch
    if p.since_best >= cfg.early_stop_patience:
        p.stopped_phase = index  # a staged run goes on with its next phase
    return improved


def _fit_result(progress: Progress, history: list[EpochResult], resumed_after: int, stopped_early: bool) -> FitResult:
    best = [r.val for r in history if r.improved]  # none when a resumed run did not improve after resuming
    return FitResult(
        best_epoch=progress.best_epoch,
        best_val=best[-1] if best else None,
        epochs_run=history[-1].epoch if history else resumed_after,
        stopped_early=stopped_early or progress.stopped_phase is not None,
        history=history,
    )
