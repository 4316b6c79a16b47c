"""The batched transfer: paint many (content, style) pairs at once, each pair independent of its batch-mates.

Pairs share a batch only to fill the GPU, so a pair's result must not depend on which pairs sit next to it:
every loss and every optimiser quantity is per pair, and the noise start of a pair is drawn from its own
generator (cfg.seed and a per-pair key), not from its position. The kernels still pick their blocking by
batch size, so results are equally good, not bitwise equal, across batchings (see the package docstring).

Precision: on CUDA the VGG convolutions run under bf16 autocast; targets, Grams and losses are always fp32,
and the final losses reported are recomputed in fp32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace

import torch

from core.config import MIN_SIDE, StyleConfig
from core.errors import ConfigError
from worker.ml.dose import balance as dose_balance
from worker.ml.dose import betas_for_doses
from worker.ml.style.losses import CONTENT_LAYER, STYLE_LAYERS, content_loss, gram_matrix, style_loss, tv_loss
from worker.ml.style.optimisers import Stops, adam, batched_lbfgs, lbfgs_one_pass
from worker.ml.style.vgg import VGGFeatures


@dataclass
class StyleResult:
    images: torch.Tensor  # (B, 3, H, W) in [0, 1], CPU
    content_loss: torch.Tensor  # (B,) fp32, final image, unweighted
    style_loss: torch.Tensor  # (B,) fp32, final image, unweighted
    total_loss: torch.Tensor  # (B,) fp32, alpha * content + beta * style + tv_weight * tv
    trace: torch.Tensor | None = None  # (steps + 1, B) objective at each iterate, as the optimiser saw it
    evaluations: int = 0  # forward+backward passes over the batch (L-BFGS backtracks add to steps + 1)
    weighted_content: torch.Tensor | None = None  # (B,) alpha * content loss
    weighted_style: torch.Tensor | None = None  # (B,) beta * style loss
    beta: torch.Tensor | None = None  # (B,) the style weight used: a dose's, or the raw one given
    balance: torch.Tensor | None = None  # (B,) beta * L_style / (alpha * L_content) at the reference noise
    snapshots: dict[int, torch.Tensor] | None = None  # {step: (B, 3, H, W) CPU} the image after that step
    evaluations_at: list[int] | None = None  # (steps + 1) evaluations spent when each iterate of trace was reached
    steps_done: torch.Tensor | None = None  # (B,) int64 iterations each pair ran (< steps: it stopped early)
    stop_reason: list[str] | None = None  # per pair, why it stopped (optimisers.STOP_REASONS)

    @property
    def loss_ratio(self) -> torch.Tensor:
        """(B,) beta * style / (alpha * content) at the final image: what a dose achieved, comparable across
        studies whatever their loss scale; 0 for a zero dose, inf when only the content term is exactly 0."""
        content, style = self.weighted_content, self.weighted_style
        ratio = torch.where(content > 0, style / content.clamp(min=1e-30), torch.full_like(content, torch.inf))
        return torch.where(style > 0, ratio, torch.zeros_like(ratio))


def initial_image(content: torch.Tensor, cfg: StyleConfig, pair_seeds: list[int] | None = None) -> torch.Tensor:
    """The start: per-pair white noise in [0, 1) seeded by (cfg.seed, pair key) (the paper's), or the content image.

    Without ``pair_seeds`` the key is the position in the batch, so noise then depends on batch order.
    """
    if cfg.init == "content":
        return content.clone()
    keys = pair_seeds if pair_seeds is not None else range(content.shape[0])
    noise = [
        torch.rand(content.shape[1:], generator=torch.Generator().manual_seed(cfg.seed * 1_000_003 + k)) for k in keys
    ]
    return torch.stack(noise).to(content.device)  # (B, 3, H, W)


def _autocast(device: torch.device, bf16: bool = True):
    """bf16 convolutions on CUDA (the activations the Grams and the line search see are then bf16)."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if bf16 and device.type == "cuda" else contextlib.nullcontext()


def _per_pair(value: float | torch.Tensor | list, b: int, device: torch.device, what: str) -> torch.Tensor:
    """A weight for every pair, (B,) fp32: a scalar is broadcast, a list or tensor must have B entries."""
    t = torch.as_tensor(value, dtype=torch.float32, device=device).reshape(-1)
    if t.numel() == 1:
        return t.expand(b)
    if t.numel() != b:
        raise ValueError(f"{t.numel()} {what} for {b} pairs")
    return t


def _check_pairs(
    content: torch.Tensor,
    style: torch.Tensor | list[torch.Tensor],
    vgg: VGGFeatures,
    device: str | torch.device | None,
    pair_seeds: list[int] | None,
) -> tuple[torch.device, list[torch.Tensor]]:
    """The device to run on and the style images as a list of (3, H_i, W_i), or ValueError / ConfigError
    naming what does not fit (see ``stylize_batch``)."""
    vgg_device = next(vgg.parameters()).device
    device = torch.device(device) if device is not None else vgg_device
    if device.type != vgg_device.type or device.index not in (None, vgg_device.index):
        raise ValueError(f"vgg is on {vgg_device} but device is {device}: build_vgg(..., device={str(device)!r})")
    styles = list(style) if isinstance(style, (list, tuple)) else list(style.unbind(0)) if style.ndim == 4 else None
    if (
        content.ndim != 4
        or content.shape[1] != 3
        or styles is None
        or any(t.ndim != 3 or t.shape[0] != 3 for t in styles)
    ):
        shapes = [tuple(t.shape) for t in styles] if styles else tuple(getattr(style, "shape", ()))
        raise ValueError(
            f"content must be (B, 3, H, W) and style (B, 3, H, W) or B (3, H, W), got {tuple(content.shape)} and {shapes}"
        )
    b = content.shape[0]
    if b != len(styles):
        raise ValueError(f"{b} content images but {len(styles)} style images")
    if pair_seeds is not None and len(pair_seeds) != b:
        raise ValueError(f"{len(pair_seeds)} pair_seeds for {b} pairs")
    if min(*content.shape[2:], *(side for t in styles for side in t.shape[1:])) < MIN_SIDE:
        raise ConfigError(
            f"images must be at least {MIN_SIDE} px on each side for relu5_1, got content "
            f"{tuple(content.shape[2:])} and style {[tuple(t.shape[1:]) for t in styles]}"
        )
    return device, styles


@torch.no_grad()
def _targets(
    vgg: VGGFeatures,
    content: torch.Tensor,
    styles: list[torch.Tensor],
    device: torch.device,
    keys: list[tuple[Hashable, Hashable]] | None = None,
    cache: dict | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """What each pair's painting is matched against: its content image's relu4_2 activations (B, 512, H/8, W/8)
    and its style image's Grams {layer: (B, C, C)}, in fp32 on every device (bf16 targets would make the
    same pair's objective depend on the card it ran on).

    keys: (content key, style key) per pair, e.g. image ids; with ``cache`` (a dict the caller keeps for one
    network and size, e.g. one chunk) each style image's Grams are computed once and reused by every pair and
    dose that names it. Content targets are not cached: computed in this very batch they are bitwise the
    activations the first evaluation sees at a content init, so a zero dose has exactly zero gradient and its
    image stays the content image (its control) to the bit; computed in another batch (another kernel
    blocking) they differ by rounding, and the first small step, scaled to move a pixel by 0.1 whatever the
    gradient's size, would move it. They cost one forward pass per batch (~1/600 of 300 steps).
    """
    if keys is None or cache is None:
        cache, keys = {}, [(("pair", i), ("pair", i)) for i in range(len(styles))]  # a cache for this call only
    target_content = vgg(content)[CONTENT_LAYER].float()
    style_keys = [("style", sk, tuple(t.shape)) for (_, sk), t in zip(keys, styles)]
    # Style images of one shape go through together; a Gram is (C, C) whatever the image's size.
    by_shape: dict[tuple, dict] = {}
    for i, k in enumerate(style_keys):
        if k not in cache:
            by_shape.setdefault(k[2], {})[k] = i
    for todo in by_shape.values():
        feats = vgg(torch.stack([styles[i] for i in todo.values()]).to(device, torch.float32))
        grams = {n: gram_matrix(feats[n]) for n in STYLE_LAYERS}
        for j, k in enumerate(todo):
            cache[k] = {n: grams[n][j] for n in STYLE_LAYERS}
        del feats
    target_grams = {n: torch.stack([cache[k][n] for k in style_keys]) for n in STYLE_LAYERS}
    return target_content, target_grams


def stylize_batch(
    content: torch.Tensor,
    style: torch.Tensor | list[torch.Tensor],
    cfg: StyleConfig,
    vgg: VGGFeatures,
    device: str | torch.device | None = None,
    pair_seeds: list[int] | None = None,
    style_weights: torch.Tensor | list[float] | None = None,
    content_weights: torch.Tensor | list[float] | None = None,
    on_eval: Callable[[int], None] | None = None,
    precision: str = "bf16",
    doses: torch.Tensor | list[float] | None = None,
    snapshot_steps: tuple[int, ...] = (),
    target_keys: list[tuple[Hashable, Hashable]] | None = None,
    target_cache: dict | None = None,
) -> StyleResult:
    """Paint style[i] onto content[i] for every i; each pair's result is independent of the others.

    content: (B, 3, H, W) floats in [0, 1] (the caller resizes); style: (B, 3, H', W') or a list of B
    (3, H_i, W_i), each style image at its own size and aspect (only its Grams, C x C, are used).
    doses: the scale-free dose per pair, (B,) (``worker.ml.dose``): each pair's beta is set from its own loss
    scales at its reference noise. Or style_weights: raw betas per pair, (B,), the paper's; one of the two
    (default: cfg.style_weight as a raw beta). content_weights: alpha per pair; default cfg.content_weight.
    Pairs with different betas share one optimisation: every loss and every optimiser quantity is per pair.
    device: where to run; defaults to the VGG's device, which it must match.
    pair_seeds: a stable key per pair for the noise init and the dose's reference noise.
    on_eval(n): after the n-th evaluation of the objective (progress; it may raise to stop the job).
    precision: "bf16" (convolutions under bf16 autocast on CUDA, the default) or "fp32"; targets, the dose's
    reference losses and the reported final losses are fp32 either way.
    snapshot_steps: iterations after which the image is kept (``StyleResult.snapshots``).
    target_keys, target_cache: (content key, style key) per pair and a dict kept across calls with the same
    network and size (a chunk): style Grams are computed once per style key (``_targets``).
    """
    if precision not in ("bf16", "fp32"):
        raise ValueError(f"precision must be bf16 or fp32, got {precision!r}")
    if doses is not None and style_weights is not None:
        raise ValueError("give doses or style_weights, not both: a dose sets each pair's beta")
    device, styles = _check_pairs(content, style, vgg, device, pair_seeds)
    b = content.shape[0]
    alpha = _per_pair(cfg.content_weight if content_weights is None else content_weights, b, device, "content weights")
    shape = content.shape
    content = content.to(device, torch.float32)
    target_content, target_grams = _targets(vgg, content, styles, device, target_keys, target_cache)
    loss = _PairLoss(vgg, cfg, device, precision == "bf16", target_content, target_grams, alpha)

    with torch.no_grad():  # the loss scales at each pair's own reference noise, in fp32
        reference = initial_image(content, replace(cfg, init="noise"), pair_seeds)
        content_ref, style_ref = loss.parts(reference, fast=False)
    if doses is not None:
        loss.beta = betas_for_doses(_per_pair(doses, b, device, "doses"), alpha, content_ref, style_ref)
    else:
        loss.beta = _per_pair(cfg.style_weight if style_weights is None else style_weights, b, device, "style weights")

    progress = _Progress(loss, shape, on_eval, snapshot_steps)
    x = (reference if cfg.init == "noise" else initial_image(content, cfg, pair_seeds)).flatten(1)  # (B, 3*H*W)
    x, trace, calls, stops = _optimise(x, cfg, progress)
    balance = dose_balance(loss.beta, alpha, content_ref, style_ref)
    return _result(x.view(shape), loss, (trace, calls, stops), progress, balance)


@dataclass
class _PairLoss:
    """Each pair's objective, alpha * content + beta * style (+ tv), against its own targets, (B,) per call."""

    vgg: VGGFeatures
    cfg: StyleConfig
    device: torch.device
    bf16: bool  # convolutions under bf16 autocast on CUDA for the optimisation's passes
    target_content: torch.Tensor  # (B, 512, H/8, W/8) fp32
    target_grams: dict[str, torch.Tensor]  # {layer: (B, C, C)} fp32
    alpha: torch.Tensor  # (B,)
    beta: torch.Tensor | None = None  # (B,), set once the reference noise's loss scales have fixed it

    def parts(self, img: torch.Tensor, fast: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) -> content and style losses, each (B,). fast: bf16 convolutions on CUDA."""
        with _autocast(self.device, self.bf16) if fast else contextlib.nullcontext():
            feats = self.vgg(img)
        kind = self.cfg.loss
        return content_loss(feats[CONTENT_LAYER], self.target_content, kind), style_loss(feats, self.target_grams, kind)

    def losses(self, img: torch.Tensor, fast: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) -> total, content, style losses, each (B,)."""
        c, s = self.parts(img, fast)
        total = self.alpha * c + self.beta * s
        if self.cfg.tv_weight:
            total = total + self.cfg.tv_weight * tv_loss(img)
        return total, c, s


class _Progress:
    """The objective the optimisers call, counting its evaluations (reported to ``on_eval``, which may stop the
    job) and keeping the snapshots asked for: what the caller sees of an optimisation while it runs."""

    def __init__(
        self,
        loss: _PairLoss,
        shape: torch.Size,
        on_eval: Callable[[int], None] | None,
        snapshot_steps: tuple[int, ...],
    ) -> None:
        self.loss, self.shape, self.on_eval, self.snapshot_steps = loss, shape, on_eval, snapshot_steps
        self.evaluations = 0
        self.snapshots: dict[int, torch.Tensor] = {}
        self.evaluations_at = [1]  # the start costs one evaluation

    def objective(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, D) -> each pair's total loss (B,) and its gradient (B, D)."""
        img = x.view(self.shape).detach().requires_grad_(True)  # (B, 3, H, W)
        total = self.loss.losses(img)[0]
        (grad,) = torch.autograd.grad(total.sum(), img)  # the sum: each pair gets its own loss's gradient
        self.evaluations += 1
        if self.on_eval is not None:
            self.on_eval(self.evaluations)
        return total.detach(), grad.flatten(1)

    def on_step(self, k: int, x: torch.Tensor) -> None:
        self.evaluations_at.append(self.evaluations)  # a host integer: no sync
        if k in self.snapshot_steps:
            self.snapshots[k] = x.detach().view(self.shape).cpu().clone()


def _optimise(x: torch.Tensor, cfg: StyleConfig, progress: _Progress) -> tuple[torch.Tensor, torch.Tensor, int, Stops]:
    """Run cfg.optimizer from ``x`` (B, D): (the answer, the loss trace, the evaluations spent, each pair's stop)."""
    if cfg.optimizer == "lbfgs":
        return batched_lbfgs(x, progress.objective, cfg.steps, cfg.history, on_step=progress.on_step)
    if cfg.optimizer in ("lbfgs-onepass", "lbfgs-unit"):
        guard = cfg.optimizer == "lbfgs-onepass"
        return lbfgs_one_pass(x, progress.objective, cfg.steps, cfg.history, guard=guard, on_step=progress.on_step)
    return adam(x, progress.objective, cfg.steps, cfg.lr, on_step=progress.on_step)


def _result(
    images: torch.Tensor,
    loss: _PairLoss,
    run: tuple[torch.Tensor, int, Stops],
    progress: _Progress,
    balance: torch.Tensor,
) -> StyleResult:
    """The answer with its final losses, recomputed in full fp32 so that they compare across devices; ``run``:
    the optimiser's trace, evaluations and stops."""
    trace, calls, stops = run
    with torch.no_grad():
        total, c, s = loss.losses(images, fast=False)
    return StyleResult(
        images.cpu(),
        c.cpu(),
        s.cpu(),
        total.cpu(),
        trace.float().cpu(),
        calls,
        (loss.alpha * c).cpu(),
        (loss.beta * s).cpu(),
        beta=loss.beta.cpu(),
        balance=balance.cpu(),
        snapshots=progress.snapshots,
        evaluations_at=progress.evaluations_at,
        steps_done=stops.steps_done.cpu(),
        stop_reason=stops.reasons(),
    )
