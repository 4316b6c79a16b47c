"""Gatys style transfer for many (content, style) pairs at once, each pair independent of its batch-mates.

The method (Gatys, Ecker & Bethge, "A Neural Algorithm of Artistic Style"): pass
three images through a frozen VGG, match the content image's activations at
relu4_2 and the style image's Gram matrices at relu1_1 .. relu5_1, and optimise
the *image* (not the network), from white noise, to minimise

    alpha * content_loss + beta * style_loss (+ tv_weight * tv_loss).

The paper's choices are the defaults: L_content = 1/2 sum (F - P)^2 at relu4_2,
L_style = sum_l 1/5 * E_l with E_l = 1/(4 N_l^2 M_l^2) sum (G - A)^2 (``loss="gatys"``),
average pooling, noise init, and a VGG normalised so that every filter's mean
activation over images and positions is 1 (``mean_activation_scales``): only then
do alpha/beta mean what the paper's ratios (1e-3, 1e-4) mean. The PyTorch
tutorial's normalisation (MSE, Grams / CHW, equal layer weights) is ``loss="tutorial"``.

Batching without coupling. Pairs share a batch only to fill the GPU; a pair's
result must not depend on which pairs sit next to it. So:
  - every loss is per sample, shape (B,), and gradients come from their sum
    (the VGG has no batch statistics, so d(sum)/d(x_i) = d(loss_i)/d(x_i));
  - Grams use ``bmm`` over (B, C, HW), never a (B*C, HW) view that mixes samples;
  - Adam is elementwise, hence per pair;
  - torch.optim.LBFGS is *not*: one history, one step length, one line search
    for the whole tensor. ``batched_lbfgs`` below keeps a history, a direction,
    a step length and an Armijo line search per pair, vectorised over B;
    ``lbfgs_one_pass`` does the same at one evaluation of the batch per iteration
    (each pair's accept/backtrack decision a mask, or no line search at all);
  - noise init draws each pair's noise from its own generator (cfg.seed and a
    per-pair key), so it does not depend on the pair's position.
The kernels are another matter: float32 convolutions (oneDNN, cuDNN) and batched
matmuls (MKL's, in the Grams' backward pass even with oneDNN off) pick their
blocking by batch size, so a pair's gradients differ with its batch at rounding
level (on CPU ~2e-7 of their largest entry with oneDNN off, ~4e-6 with it on);
like any perturbation of a non-convex optimisation that grows over the steps,
most with Adam, whose steps are normalised pixel by pixel (the tests in
tests/unit/worker/ml/test_style.py measure how much). Results are then equally
good, not bitwise equal.

Parametrisation: pixel space, the image itself in [0, 1], kept there by
projection (clamp after every step). L-BFGS treats it as a box-constrained
problem: pixels at a bound that the search direction pushes further out are
frozen for that step, and the Armijo test uses the projected step.

Precision: on CUDA the VGG convolutions run under bf16 autocast; Grams and
losses are always fp32. The final losses reported are recomputed in fp32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn as nn
import torchvision.models as tvm
import torchvision.transforms.functional as TF
from PIL import Image
from safetensors.torch import load_file

from core.config import MAX_DEVICE_BATCH, MIN_SIDE, VGG_NAMES, StyleConfig
from core.errors import ConfigError
from worker.ml.dose import balance as dose_balance
from worker.ml.dose import betas_for_doses

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYER = "relu4_2"
# ImageNet statistics every torchvision VGG was trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ---------------------------------------------------------------------------- losses (pure, per sample)


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, C): one Gram per sample, normalised by C*H*W, in fp32 even under autocast."""
    b, c, h, w = features.shape
    # Autocast would run bmm in bf16/fp16 whatever the input dtype; fp16 Grams overflow, bf16 ones are coarse.
    with torch.autocast(features.device.type, enabled=False):
        flat = features.float().reshape(b, c, h * w)  # (B, C, HW)
        return torch.bmm(flat, flat.transpose(1, 2)) / (c * h * w)  # (B, C, C)


def content_loss(f: torch.Tensor, target: torch.Tensor, kind: str = "gatys") -> torch.Tensor:
    """Per sample, (B, C, H, W) x2 -> (B,).

    gatys: the paper's L_content = 1/2 sum (F - P)^2 over every entry; tutorial: the mean squared error.
    """
    sq = (f.float() - target.float()).pow(2).flatten(1)
    return 0.5 * sq.sum(1) if kind == "gatys" else sq.mean(1)


def style_loss(
    feats: dict[str, torch.Tensor], target_grams: dict[str, torch.Tensor], kind: str = "gatys"
) -> torch.Tensor:
    """Gram mismatch over relu1_1 .. relu5_1 -> (B,).

    gatys: the paper's L_style = sum_l w_l E_l, w_l = 1/5, E_l = 1/(4 N_l^2 M_l^2) sum_ij (G_ij - A_ij)^2 with the
    raw Grams G = F F^T. With gram_matrix's G / (N_l M_l) that is exactly 1/4 sum_ij (G^ - A^)^2, computed that way
    so no raw Gram (up to ~1e9 at relu1_1) is formed; it also keeps E_l defined when the style image has another
    size than the image being painted (each Gram is a mean over its own positions).
    tutorial: the PyTorch tutorial's sum over layers of the mean over the C^2 entries (= N_l^2 / 4 times E_l).
    """
    per_layer = [(gram_matrix(feats[n]) - target_grams[n].float()).pow(2).flatten(1) for n in STYLE_LAYERS]
    if kind == "gatys":
        return torch.stack([0.25 * d.sum(1) for d in per_layer]).sum(0) / len(STYLE_LAYERS)  # (5, B) -> (B,)
    return torch.stack([d.mean(1) for d in per_layer]).sum(0)


def tv_loss(img: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation per sample: mean |horizontal step| + mean |vertical step| -> (B,)."""
    img = img.float()
    dx = (img[..., :, 1:] - img[..., :, :-1]).abs().flatten(1).mean(1)
    dy = (img[..., 1:, :] - img[..., :-1, :]).abs().flatten(1).mean(1)
    return dx + dy


# ---------------------------------------------------------------------------- VGG features


def _vgg_features(name: str, device: str | torch.device = "cpu") -> nn.Sequential:
    """torchvision's ``features`` of ``name`` with *empty* weights (the caller initialises or loads them).

    The model is built on the meta device: its classifier (~120M parameters, never
    used here) would otherwise take seconds to random-initialise and then be dropped.
    """
    if name not in VGG_NAMES:
        raise ConfigError(f"unknown vgg {name!r}; choose from {', '.join(VGG_NAMES)}")
    with torch.device("meta"):
        features = getattr(tvm, name)(weights=None).features
    return features if torch.device(device).type == "meta" else features.to_empty(device=device)


def layer_indices(name: str) -> dict[str, int]:
    """Paper layer names -> index of that ReLU in torchvision's ``vgg*.features``, read off its layer list.

    reluB_K is the ReLU after the K-th conv of block B, blocks being separated by
    max-pools. (The PyTorch tutorial counts convs across blocks: its conv_4 is conv2_2.)
    """
    names, block, conv = {}, 1, 0
    for i, layer in enumerate(_vgg_features(name, "meta")):
        if isinstance(layer, nn.Conv2d):
            conv += 1
        elif isinstance(layer, nn.ReLU):
            names[f"relu{block}_{conv}"] = i
        elif isinstance(layer, nn.MaxPool2d):
            block, conv = block + 1, 0
    return names


class VGGFeatures(nn.Module):
    """Frozen VGG trunk, cut after the last layer the losses need; returns {layer name: activation}."""

    def __init__(self, features: nn.Sequential, name: str, pool: str = "avg"):
        super().__init__()
        if pool not in ("max", "avg"):
            raise ConfigError(f"unknown pool {pool!r}; choose from max, avg")
        index = layer_indices(name)
        self.name, self.pool = name, pool
        self.wanted = {index[n]: n for n in (*STYLE_LAYERS, CONTENT_LAYER)}
        layers = list(features[: max(self.wanted) + 1])  # relu5_1 is the last: nothing after it is computed
        for i, layer in enumerate(layers):
            if isinstance(layer, nn.ReLU):
                layers[i] = nn.ReLU(inplace=False)  # the activations returned must not be overwritten later
            elif isinstance(layer, nn.MaxPool2d) and pool == "avg":
                layers[i] = nn.AvgPool2d(2, 2)  # Gatys' variant: smoother gradients, slightly better images
        self.body = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    @torch.no_grad()
    def rescale(self, scales: dict[str, torch.Tensor]) -> VGGFeatures:
        """Gatys et al.'s normalisation, applied so that it changes each layer's scale and nothing else.

        Conv l's output channels are multiplied by its factors f_l and its input channels divided by the
        factors f_{l-1} of the conv before it (W_l <- W_l f_l[out] / f_{l-1}[in], b_l <- b_l f_l). ReLU and
        both poolings commute with a positive per-channel scale, so every activation of the rescaled
        network is the original activation times its channel's factor: the same network, other units.
        (Scaling the outputs alone, as this method once did, feeds conv l+1 rescaled inputs through its
        unchanged weights: another network.)
        """
        convs = {str(i): m for i, m in enumerate(self.body) if isinstance(m, nn.Conv2d)}
        if set(scales) != set(convs):
            raise ConfigError(
                f"VGG normalisation has factors for {len(scales)} convs, the {self.name} trunk has {len(convs)}"
            )
        before = None  # the factors of the previous conv's outputs: this conv's inputs
        for i, conv in convs.items():
            f = scales[i].to(conv.weight.device, torch.float64)
            w = conv.weight.double() * f.view(-1, 1, 1, 1)
            if before is not None:
                w = w / before.view(1, -1, 1, 1)
            conv.weight.copy_(w.to(conv.weight.dtype))
            conv.bias.copy_((conv.bias.double() * f).to(conv.bias.dtype))
            before = f
        return self

    def forward(self, img: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 3, H, W) in [0, 1] -> {name: (B, C, h, w)} at relu1_1 .. relu5_1 and relu4_2."""
        x = (img - self.mean) / self.std
        if x.is_cuda:
            x = x.contiguous(memory_format=torch.channels_last)  # cuDNN's fast bf16 convolutions are NHWC
        out = {}
        for i, layer in enumerate(self.body):
            x = layer(x)
            if i in self.wanted:
                out[self.wanted[i]] = x
        return out


def _read_features_state(path: Path) -> dict[str, torch.Tensor]:
    """The ``features.*`` tensors of a VGG state dict file: torchvision's, or under a prefix (``backbone.``)."""
    if not path.is_file():
        raise ConfigError(f"VGG weight file not found: {path}")
    if path.suffix not in (".safetensors", ".pth", ".pt"):
        raise ConfigError(f"VGG weights must be .safetensors, .pth or .pt, got {path.name}")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)  # tensors only: no code runs on load
    except Exception as e:  # a truncated download, a pickle with objects in it, not a state dict at all...
        raise ConfigError(
            f"cannot read tensors from {path} ({type(e).__name__}); "
            "give a .safetensors file or a .pth holding only a state dict"
        ) from None
    if not isinstance(state, dict):
        raise ConfigError(f"{path} holds a {type(state).__name__}, not a state dict")
    first = [k for k in state if k.endswith("features.0.weight")]
    if not first:
        raise ConfigError(f"{path} holds no VGG features (no key ending in 'features.0.weight')")
    prefix = first[0][: -len("0.weight")]
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def build_vgg(
    name: str = "vgg19", weights: str | Path | None = None, device: str | torch.device | None = None, pool: str = "avg"
) -> VGGFeatures:
    """The frozen feature extractor, up to relu5_1.

    weights: None -> torchvision's random init (seed torch first for reproducibility); otherwise a
    .safetensors / .pth file with torchvision's ``features.*`` names (resolving "imagenet" to a file is the
    job's business: see worker.weights_store). Every conv up to relu5_1 must be in the file, with its shape.
    """
    index = layer_indices(name)
    features = _vgg_features(name)[: max(index[n] for n in (*STYLE_LAYERS, CONTENT_LAYER)) + 1]  # up to relu5_1
    if weights is None:
        for m in features.modules():
            if isinstance(m, nn.Conv2d):  # torchvision's VGG init
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
    else:
        path = Path(weights)
        needed = features.state_dict()
        state = {k: v for k, v in _read_features_state(path).items() if k in needed}  # convs after relu5_1 unused
        # A vgg16 file on a vgg19 net (or the reverse) misses a conv or has one of the wrong shape: say which.
        missing = [k for k in needed if k not in state]
        wrong = [k for k in state if state[k].shape != needed[k].shape]
        if missing or wrong:
            k = (missing or wrong)[0]
            problem = "lacks" if missing else f"has shape {tuple(state[k].shape)}, not {tuple(needed[k].shape)}, for"
            raise ConfigError(f"{path} does not fit torchvision's {name}: it {problem} features.{k}")
        features.load_state_dict(state, strict=True)
    return VGGFeatures(features, name, pool).to(device or "cpu")


# A filter's factor is at most this many times its layer's median factor. Filters that barely fire on the
# measured images would otherwise get gains of hundreds (139-421x the median on 32 real paintings with the
# ImageNet VGG19), and the Gram loss, quartic in the activations, would then be dominated by a few rare filters.
MAX_GAIN = 10.0


@torch.no_grad()
def mean_activation_scales(
    vgg: VGGFeatures, images: list[torch.Tensor], max_gain: float = MAX_GAIN
) -> dict[str, torch.Tensor]:
    """Gatys et al.'s normalisation: per conv filter, the factor that makes its mean activation 1.

    "We normalized the network by scaling the weights such that the mean activation of each convolutional
    filter over images and positions is equal to one." ``rescale`` applies the factors so that each
    normalised activation is the original one times its factor, hence the factor of a filter is 1 / its
    mean ReLU activation in the original network, all measured in one pass per image. Measured on the
    network as trained (max pooling, whatever ``vgg.pool`` is), like the paper, so the same factors serve
    both poolings. A factor is capped at ``max_gain`` times its layer's median (``MAX_GAIN``: the one
    departure from the paper, for filters that rarely fire); a filter that never fires gets the median.
    Style loss is quartic and content loss quadratic in the activations, so the factors decide how the
    filters and layers weigh in the losses; the dose (``worker.ml.dose``) makes the overall scale irrelevant.

    images: (3, H, W) floats in [0, 1], any sizes. Returns {"<body index>": (C,) factors} for every conv.
    """
    device = next(vgg.parameters()).device
    layers = [nn.MaxPool2d(2, 2) if isinstance(m, nn.AvgPool2d) else m for m in vgg.body]
    convs = [i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d)]
    totals = {i: torch.zeros(layers[i].out_channels, dtype=torch.float64, device=device) for i in convs}
    positions = {i: 0 for i in convs}
    for img in images:
        x = (img[None].to(device, torch.float32) - vgg.mean) / vgg.std
        for i, layer in enumerate(layers):
            x = layer(x)
            if i in totals:
                totals[i] += torch.relu(x).sum((0, 2, 3)).double()
                positions[i] += x.shape[2] * x.shape[3]
    scales: dict[str, torch.Tensor] = {}
    for i in convs:
        mean = totals[i] / max(positions[i], 1)
        fires = mean > 0
        factor = 1.0 / mean.clamp(min=1e-30)
        median = factor[fires].median() if bool(fires.any()) else torch.tensor(1.0, dtype=torch.float64)
        factor = torch.where(fires, factor.clamp(max=float(max_gain * median)), median)
        scales[str(i)] = factor.float().cpu()
    return scales


# ---------------------------------------------------------------------------- optimisers

Objective = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]  # (B, D) -> loss (B,), grad (B, D)


def _frozen(x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Pixels at a bound of [0, 1] that ``d`` pushes further out: moving them is undone by the clamp."""
    return ((x <= 0) & (d < 0)) | ((x >= 1) & (d > 0))


def _two_loop(
    g: torch.Tensor, hist: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], gamma: torch.Tensor
) -> torch.Tensor:
    """L-BFGS two-loop recursion, every dot product per sample: H g, (B, D). An entry with rho 0 is skipped."""
    q = g.clone()
    alphas = []
    for s, y, rho in reversed(hist):
        a = rho * (s * q).sum(1)  # (B,)
        q -= a[:, None] * y
        alphas.append(a)
    q *= gamma[:, None]  # initial Hessian: gamma I, gamma = s'y / y'y of the newest usable pair
    for (s, y, rho), a in zip(hist, reversed(alphas)):
        beta = rho * (y * q).sum(1)
        q += (a - beta)[:, None] * s
    return q


@dataclass
class _PairMemory:
    """What L-BFGS remembers of each pair between iterations, vectorised over the batch."""

    history: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # newest last; each (s, y, rho), rho 0 = skip
    gamma: torch.Tensor  # (B,) initial inverse Hessian scale
    fresh: torch.Tensor  # (B,) no usable history: take a small steepest-descent step
    done: torch.Tensor  # (B,) converged: stays where it is

    @classmethod
    def empty(cls, f: torch.Tensor) -> _PairMemory:
        fresh = torch.ones_like(f, dtype=torch.bool)
        return cls([], torch.ones_like(f), fresh, torch.zeros_like(fresh))

    def update(self, s: torch.Tensor, y: torch.Tensor, failed: torch.Tensor, small: torch.Tensor, keep: int) -> None:
        """Remember the step ``s`` and gradient change ``y`` (B, D) of every pair; ``failed`` pairs (their line
        search found no decrease) forget their history, and are done if even a small step failed."""
        sy = (s * y).sum(1)
        # Keep the pair only with clearly positive curvature (keeps H positive definite); scale-free test,
        # since losses range from 1e-4 (random VGG) to 1e6 (ImageNet VGG, large beta).
        usable = sy > 1e-8 * s.norm(dim=1) * y.norm(dim=1)
        rho = torch.where(usable, 1.0 / torch.where(usable, sy, 1.0), 0.0)
        gamma = torch.where(usable, sy / torch.where(usable, (y * y).sum(1), 1.0), self.gamma)
        history = [(hs, hy, hr.masked_fill(failed, 0)) for hs, hy, hr in self.history]
        self.history = (history + [(s, y, rho)])[-keep:]
        self.gamma = gamma.masked_fill(failed, 1.0)
        self.done = self.done | (failed & small)
        self.fresh = (self.fresh & ~usable) | failed


def _search_direction(
    x: torch.Tensor, f: torch.Tensor, g: torch.Tensor, memory: _PairMemory
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each pair's projected descent direction (B, D), first trial step length (B,), and whether that is a small
    steepest-descent step (B,)."""
    d = -_two_loop(g, memory.history, memory.gamma)
    d = d.masked_fill(_frozen(x, d), 0)
    # Projection can spoil a quasi-Newton direction; fall back to the projected gradient for those pairs.
    uphill = (g * d).sum(1) >= 0
    steepest = (-g).masked_fill(_frozen(x, -g), 0)
    d = torch.where(uphill[:, None], steepest, d).masked_fill(memory.done[:, None], 0)
    small = memory.fresh | uphill
    # Unit steps once curvature is known. Before, a step that moves no pixel by more than 0.1: torch's
    # LBFGS takes 1/|g|_1, which moves each of D pixels by ~1/D, so its first curvature pair (s, y) is a
    # difference of two nearly equal gradients, all rounding noise (and then slower, and batch-sensitive).
    t = torch.where(small, 0.1 / g.abs().amax(1).clamp(min=1e-30), torch.ones_like(f))
    return d, t, small


def _line_search(
    objective: Objective,
    x: torch.Tensor,
    f: torch.Tensor,
    g: torch.Tensor,
    d: torch.Tensor,
    t: torch.Tensor,
    pending: torch.Tensor,
    c1: float,
    max_backtracks: int,
):
    """Projected Armijo backtracking, per pair, for the ``pending`` pairs: halve each pair's step until its
    loss decreases enough. Returns the new (x, f, g), the pairs that found no decrease (they did not
    move) and the number of objective calls."""
    x_new, f_new, g_new = x, f, g
    calls = 0
    for _ in range(max_backtracks):
        trial = (x + t[:, None] * d).clamp(0, 1)
        f_t, g_t = objective(trial)
        calls += 1
        # Armijo on the projected step: the decrease promised by the move actually made.
        ok = pending & (f_t <= f + c1 * (g * (trial - x)).sum(1))
        x_new = torch.where(ok[:, None], trial, x_new)
        g_new = torch.where(ok[:, None], g_t, g_new)
        f_new = torch.where(ok, f_t, f_new)
        pending = pending & ~ok
        if not bool(pending.any()):  # only pairs still pending are affected by further trials
            break
        t = t * 0.5
    return x_new, f_new, g_new, pending, calls


def batched_lbfgs(
    x: torch.Tensor,
    objective: Objective,
    steps: int,
    history: int = 10,
    c1: float = 1e-4,
    max_backtracks: int = 10,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Minimise B independent problems in the box [0, 1]^D at once; row b of x only ever sees row b's numbers.

    x: (B, D) start; objective: (B, D) -> (loss (B,), grad (B, D)), each row depending on its own row only.
    Per pair: (s, y, rho) history, direction, step length, projected Armijo backtracking.
    A pair whose line search fails stays put, forgets its history and restarts
    from a small steepest-descent step (as it started); if even that
    fails it is done (converged to rounding) and stops moving, so it cannot make
    every later step of its batch pay for backtracking.
    on_step(k, x): after iteration k (1-based), with the iterate (snapshots of the answer on the way).
    Returns (x, trace (steps + 1, B) of the loss at each iterate, number of objective calls).
    """
    f, g = objective(x)  # (B,), (B, D)
    calls = 1
    memory = _PairMemory.empty(f)
    trace = [f]
    for k in range(1, steps + 1):
        d, t, small = _search_direction(x, f, g, memory)
        x_new, f_new, g_new, failed, tries = _line_search(objective, x, f, g, d, t, ~memory.done, c1, max_backtracks)
        calls += tries
        memory.update(x_new - x, g_new - g, failed, small, history)  # zero rows for pairs that did not move
        x, f, g = x_new, f_new, g_new
        trace.append(f)
        if on_step is not None:
            on_step(k, x)
        if bool(memory.done.all()):
            break
    if on_step is not None:
        for later in range(len(trace), steps + 1):  # converged early: the iterate stays
            on_step(later, x)
    trace += [f] * (steps + 1 - len(trace))  # converged early: the loss stays
    return x, torch.stack(trace), calls


def lbfgs_one_pass(
    x: torch.Tensor,
    objective: Objective,
    steps: int,
    history: int = 10,
    c1: float = 1e-4,
    max_backtracks: int = 10,
    guard: bool = True,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
    check_every: int = 50,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per-pair L-BFGS at exactly one evaluation of the batch per iteration, with no host sync in the loop.

    ``batched_lbfgs`` re-evaluates the whole batch until every pair has accepted its step, so the batch pays
    the worst pair's backtracking at every iteration. Here each iteration evaluates every pair once, at its own
    trial point, and each pair decides alone, by a mask:
      - guard=True: the trial passes the projected Armijo test -> the pair moves there and takes a new
        direction at unit step; it fails -> the pair stays, and its next iteration tries half the step along
        the same direction. So a pair's sequence of trials is ``batched_lbfgs``'s own (same direction, same
        halvings, same restarts and "done" rule after ``max_backtracks`` failures), but its backtracks are spread
        over iterations instead of stalling its batch-mates;
      - guard=False: every trial is accepted, a fixed unit step and no line search, as in the public Gatys
        implementations (torch.optim.LBFGS with lr=1, neural-style, pystiche): the loss may rise on a step.
    The history is kept as (history, B, D) tensors in which a pair's newest usable curvature pair is shifted in
    only when that pair moved, so a pair that backtracks keeps its memory (a shared list would get a zero
    entry per iteration and lose it). Every branch is a ``torch.where``: nothing reads a tensor on the host,
    so the step can later be captured by CUDA graphs; ``check_every`` iterations apart (and only with the
    guard) the loop looks whether every pair is done.
    Same arguments and returns as ``batched_lbfgs``; the number of calls is steps + 1 unless every pair is done.
    """
    f, g = objective(x)
    calls = 1
    b, dim = x.shape
    s_hist = x.new_zeros(history, b, dim)  # oldest first; a slot with rho 0 is skipped by the two-loop
    y_hist = x.new_zeros(history, b, dim)
    rho_hist = f.new_zeros(history, b)
    memory = _PairMemory.empty(f)
    tries = torch.zeros_like(f, dtype=torch.int32)  # halvings so far along the current direction
    memory.history = list(zip(s_hist, y_hist, rho_hist))  # views of the slots, updated in place below
    d, t, small = _search_direction(x, f, g, memory)
    trace = [f]
    for k in range(1, steps + 1):
        trial = (x + t[:, None] * d).clamp(0, 1)
        f_t, g_t = objective(trial)
        calls += 1
        step = trial - x
        if guard:
            ok = ~memory.done & (f_t <= f + c1 * (g * step).sum(1))
        else:
            ok = ~memory.done & torch.isfinite(f_t)
        failed = ~memory.done & ~ok & (tries + 1 >= max_backtracks)
        s = step * ok[:, None]
        y = (g_t - g) * ok[:, None]
        sy = (s * y).sum(1)
        usable = ok & (sy > 1e-8 * s.norm(dim=1) * y.norm(dim=1))  # as _PairMemory.update: H stays positive
        # Shift the usable pairs' memories by one slot, slot by slot in place (oldest first, so each slot reads
        # its successor before that is overwritten): one (B, D) temporary, not a copy of the whole history.
        rho_new = torch.where(usable, 1.0 / torch.where(usable, sy, 1.0), 0.0)
        for j in range(history):
            newer = (s_hist[j + 1], y_hist[j + 1], rho_hist[j + 1]) if j + 1 < history else (s, y, rho_new)
            s_hist[j] = torch.where(usable[:, None], newer[0], s_hist[j])
            y_hist[j] = torch.where(usable[:, None], newer[1], y_hist[j])
            rho_hist[j] = torch.where(usable, newer[2], rho_hist[j])
        rho_hist.masked_fill_(failed[None], 0)  # a failed search forgets its history, as batched_lbfgs
        gamma = torch.where(usable, sy / torch.where(usable, (y * y).sum(1), 1.0), memory.gamma)
        memory.gamma = gamma.masked_fill(failed, 1.0)
        memory.done = memory.done | (failed & small)
        memory.fresh = (memory.fresh & ~usable) | failed
        x = torch.where(ok[:, None], trial, x)
        f = torch.where(ok, f_t, f)
        g = torch.where(ok[:, None], g_t, g)
        trace.append(f)
        # A pair that moved or gave up takes a new direction; one still backtracking halves its step.
        renew = ok | failed | memory.done
        d_new, t_new, small_new = _search_direction(x, f, g, memory)
        d = torch.where(renew[:, None], d_new, d)
        t = torch.where(renew, t_new, t * 0.5)
        small = torch.where(renew, small_new, small)
        tries = torch.where(renew, 0, tries + 1)
        if on_step is not None:
            on_step(k, x)
        if guard and k % check_every == 0 and bool(memory.done.all()):  # one sync per check_every iterations
            break
    if on_step is not None:
        for later in range(len(trace), steps + 1):  # converged early: the iterate stays
            on_step(later, x)
    trace += [f] * (steps + 1 - len(trace))
    return x, torch.stack(trace), calls


def adam(
    x: torch.Tensor,
    objective: Objective,
    steps: int,
    lr: float,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Projected Adam on (B, D); elementwise, so pairs are independent. Same arguments and returns as
    ``batched_lbfgs``."""
    x = x.clone()
    opt = torch.optim.Adam([x], lr=lr)
    trace = []
    for k in range(1, steps + 1):
        f, g = objective(x)
        trace.append(f)
        x.grad = g
        opt.step()
        x.clamp_(0, 1)
        if on_step is not None:
            on_step(k, x.detach())
    f, _ = objective(x)
    return x, torch.stack(trace + [f]), steps + 1


# ---------------------------------------------------------------------------- stylize


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


# VGG's conv outputs up to relu5_1 as channels per input pixel: (convs, channels, stride) per block.
_VGG_BLOCKS = {"vgg19": ((2, 64, 1), (2, 128, 2), (4, 256, 4), (4, 512, 8), (1, 512, 16)),
               "vgg16": ((2, 64, 1), (2, 128, 2), (3, 256, 4), (3, 512, 8), (1, 512, 16))}  # fmt: skip


def device_batch_for(free_bytes: int, height: int, width: int, vgg: str = "vgg19", history: int = 10,
                     cap: int = MAX_DEVICE_BATCH) -> int:  # fmt: skip
    """Pairs per optimisation that fit in ``free_bytes``: an estimate, with CUDA OOM halving as the net.

    Per pair: every conv output up to relu5_1 kept for the backward pass, its ReLU output and its gradient
    (3 fp32 copies; bf16 autocast needs less), plus L-BFGS' 2 x ``history`` vectors and ~6 image-sized
    buffers. 70 % of the free memory is planned for: the allocator's fragmentation and the Grams need slack.
    """
    per_pixel = sum(n * c / (s * s) for n, c, s in _VGG_BLOCKS[vgg])
    activations = 3 * 4 * per_pixel * height * width
    optimiser = (2 * history + 6) * 4 * 3 * height * width
    return max(1, min(cap, int(0.7 * free_bytes // (activations + optimiser))))


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
    bf16 = precision == "bf16"
    device, styles = _check_pairs(content, style, vgg, device, pair_seeds)
    b = content.shape[0]
    alpha = _per_pair(cfg.content_weight if content_weights is None else content_weights, b, device, "content weights")
    shape = content.shape
    content = content.to(device, torch.float32)
    target_content, target_grams = _targets(vgg, content, styles, device, target_keys, target_cache)

    def parts(img: torch.Tensor, fast: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) -> content and style losses, each (B,). fast: bf16 convolutions on CUDA."""
        with _autocast(device, bf16) if fast else contextlib.nullcontext():
            feats = vgg(img)
        return content_loss(feats[CONTENT_LAYER], target_content, cfg.loss), style_loss(feats, target_grams, cfg.loss)

    with torch.no_grad():  # the loss scales at each pair's own reference noise, in fp32
        reference = initial_image(content, replace(cfg, init="noise"), pair_seeds)
        content_ref, style_ref = parts(reference, fast=False)
    if doses is not None:
        beta = betas_for_doses(_per_pair(doses, b, device, "doses"), alpha, content_ref, style_ref)
    else:
        beta = _per_pair(cfg.style_weight if style_weights is None else style_weights, b, device, "style weights")

    def losses(img: torch.Tensor, fast: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) -> total, content, style losses, each (B,)."""
        c, s = parts(img, fast)
        total = alpha * c + beta * s
        if cfg.tv_weight:
            total = total + cfg.tv_weight * tv_loss(img)
        return total, c, s

    evaluations = 0

    def objective(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal evaluations
        img = x.view(shape).detach().requires_grad_(True)  # (B, 3, H, W)
        total = losses(img)[0]
        (grad,) = torch.autograd.grad(total.sum(), img)  # the sum: each pair gets its own loss's gradient
        evaluations += 1
        if on_eval is not None:
            on_eval(evaluations)
        return total.detach(), grad.flatten(1)

    snapshots: dict[int, torch.Tensor] = {}
    evaluations_at = [1]  # the start costs one evaluation

    def on_step(k: int, x: torch.Tensor) -> None:
        evaluations_at.append(evaluations)  # a host integer: no sync
        if k in snapshot_steps:
            snapshots[k] = x.detach().view(shape).cpu().clone()

    x = (reference if cfg.init == "noise" else initial_image(content, cfg, pair_seeds)).flatten(1)  # (B, 3*H*W)
    if cfg.optimizer == "lbfgs":
        x, trace, calls = batched_lbfgs(x, objective, cfg.steps, cfg.history, on_step=on_step)
    elif cfg.optimizer in ("lbfgs-onepass", "lbfgs-unit"):
        guard = cfg.optimizer == "lbfgs-onepass"
        x, trace, calls = lbfgs_one_pass(x, objective, cfg.steps, cfg.history, guard=guard, on_step=on_step)
    else:
        x, trace, calls = adam(x, objective, cfg.steps, cfg.lr, on_step=on_step)

    images = x.view(shape)
    with torch.no_grad():
        total, c, s = losses(images, fast=False)  # reported in full fp32, comparable across devices
    return StyleResult(
        images.cpu(),
        c.cpu(),
        s.cpu(),
        total.cpu(),
        trace.float().cpu(),
        calls,
        (alpha * c).cpu(),
        (beta * s).cpu(),
        beta=beta.cpu(),
        balance=dose_balance(beta, alpha, content_ref, style_ref).cpu(),
        snapshots=snapshots,
        evaluations_at=evaluations_at,
    )


def vgg_channels(layer: str) -> int:
    """Filters at a paper layer name (relu<block>_<k>): 64, 128, 256, 512, 512 by block."""
    return {"1": 64, "2": 128, "3": 256, "4": 512, "5": 512}[layer[4]]


# ---------------------------------------------------------------------------- images in and out


def resize_long_side(img: Image.Image, size: int) -> Image.Image:
    """Resize so the long side is ``size`` px, aspect kept (Lanczos).

    The short side is never below 16 px, the least relu5_1 needs: only tiny sizes of
    elongated pictures (24 px long, 15 px short) are stretched a little by it.
    """
    scale = size / max(img.size)
    w, h = (max(MIN_SIDE, round(side * scale)) for side in img.size)
    return img.resize((w, h), Image.Resampling.LANCZOS)


def from_pil(img: Image.Image) -> torch.Tensor:
    """PIL image -> float (3, H, W) in [0, 1]."""
    return TF.pil_to_tensor(img.convert("RGB")).float() / 255


def to_pil(t: torch.Tensor) -> Image.Image:
    """(3, H, W) in [0, 1] -> 8-bit RGB PIL image (save with ``.save(path)``; PNG keeps it lossless)."""
    return TF.to_pil_image((t.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu())
