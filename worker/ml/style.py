"""Gatys style transfer for many (content, style) pairs at once, each pair independent of its batch-mates.

The method (Gatys, Ecker & Bethge, "A Neural Algorithm of Artistic Style"): pass
three images through a frozen VGG, match the content image's activations at
relu4_2 and the style image's Gram matrices at relu1_1 .. relu5_1, and optimise
the *image* (not the network) to minimise

    alpha * content_loss + beta * style_loss (+ tv_weight * tv_loss).

Batching without coupling. Pairs share a batch only to fill the GPU; a pair's
result must not depend on which pairs sit next to it. So:
  - every loss is per sample, shape (B,), and gradients come from their sum
    (the VGG has no batch statistics, so d(sum)/d(x_i) = d(loss_i)/d(x_i));
  - Grams use ``bmm`` over (B, C, HW), never a (B*C, HW) view that mixes samples;
  - Adam is elementwise, hence per pair;
  - torch.optim.LBFGS is *not*: one history, one step length, one line search
    for the whole tensor. ``batched_lbfgs`` below keeps a history, a direction,
    a step length and an Armijo line search per pair, vectorised over B;
  - noise init draws each pair's noise from its own generator (cfg.seed and a
    per-pair key), so it does not depend on the pair's position.
With batch-invariant kernels (CPU, oneDNN off) a pair alone and the same pair
in a batch agree bitwise. Fast kernels (oneDNN, cuDNN) pick their blocking by
batch size, so a pair's gradients differ at rounding level (~1e-7 relative)
with its batch; like any perturbation of a non-convex optimisation that grows
over the steps (~1e-6 after 5 L-BFGS steps, ~1e-2 in places after 30 on CPU).
Results are then equally good, not bitwise equal.

Parametrisation: pixel space, the image itself in [0, 1], kept there by
projection (clamp after every step). L-BFGS treats it as a box-constrained
problem: pixels at a bound that the search direction pushes further out are
frozen for that step, and the Armijo test uses the projected step.

Precision: on CUDA the VGG convolutions run under bf16 autocast; Grams and
losses are always fp32. The final losses reported are recomputed in fp32.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torchvision.models as tvm
import torchvision.transforms.functional as TF
from PIL import Image
from safetensors.torch import load_file

from worker.ml.config import MIN_SIDE, VGG_NAMES, StyleConfig
from worker.ml.errors import ConfigError

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


def content_loss(f: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per sample: (B, C, H, W) x2 -> (B,)."""
    return (f.float() - target.float()).pow(2).flatten(1).mean(1)


def style_loss(feats: dict[str, torch.Tensor], target_grams: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum over relu1_1 .. relu5_1 (equal weights) of the per-sample MSE between Grams -> (B,)."""
    per_layer = [(gram_matrix(feats[n]) - target_grams[n].float()).pow(2).flatten(1).mean(1) for n in STYLE_LAYERS]
    return torch.stack(per_layer).sum(0)  # (5, B) -> (B,)


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

    def __init__(self, features: nn.Sequential, name: str, pool: str = "max"):
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


def imagenet_path(name: str) -> Path:
    """Where torchvision's weights API caches ``name``'s ImageNet weights: the only place they are looked for."""
    weights = tvm.get_model_weights(name)["IMAGENET1K_V1"]
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


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
        raise ConfigError(f"cannot read tensors from {path} ({type(e).__name__}); "
                          "give a .safetensors file or a .pth holding only a state dict") from None
    if not isinstance(state, dict):
        raise ConfigError(f"{path} holds a {type(state).__name__}, not a state dict")
    first = [k for k in state if k.endswith("features.0.weight")]
    if not first:
        raise ConfigError(f"{path} holds no VGG features (no key ending in 'features.0.weight')")
    prefix = first[0][: -len("0.weight")]
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def build_vgg(name: str = "vgg19", weights: str | None = None, device: str | torch.device | None = None,
              pool: str = "max") -> tuple[VGGFeatures, str]:
    """The frozen feature extractor and a record of its weights: 'random', 'imagenet:<file>' or 'file:<path>'.

    weights: None -> torchvision's random init (seed torch first for reproducibility);
    "imagenet" -> torchvision's IMAGENET1K_V1 file, only if already in the torch hub cache;
    anything else -> a .safetensors / .pth file path.
    """
    index = layer_indices(name)
    features = _vgg_features(name)[: max(index[n] for n in (*STYLE_LAYERS, CONTENT_LAYER)) + 1]  # up to relu5_1
    if weights is None:
        for m in features.modules():
            if isinstance(m, nn.Conv2d):  # torchvision's VGG init
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        used = "random"
    else:
        if weights == "imagenet":
            path = imagenet_path(name)
            if not path.is_file():
                raise ConfigError(f"no ImageNet weights for {name} in the torch cache: place the file at {path}")
            used = f"imagenet:{path.name}"
        else:
            path = Path(weights)
            used = f"file:{weights}"
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
    return VGGFeatures(features, name, pool).to(device or "cpu"), used


# ---------------------------------------------------------------------------- optimisers

Objective = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]  # (B, D) -> loss (B,), grad (B, D)


def _frozen(x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Pixels at a bound of [0, 1] that ``d`` pushes further out: moving them is undone by the clamp."""
    return ((x <= 0) & (d < 0)) | ((x >= 1) & (d > 0))


def _two_loop(g: torch.Tensor, hist: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
              gamma: torch.Tensor) -> torch.Tensor:
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


def batched_lbfgs(x: torch.Tensor, objective: Objective, steps: int, history: int = 10, c1: float = 1e-4,
                  max_backtracks: int = 10) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Minimise B independent problems in the box [0, 1]^D at once; row b of x only ever sees row b's numbers.

    x: (B, D) start; objective: (B, D) -> (loss (B,), grad (B, D)), each row depending on its own row only.
    Per pair: (s, y, rho) history, direction, step length, projected Armijo backtracking.
    A pair whose line search fails stays put, forgets its history and restarts
    from a small steepest-descent step (as it started); if even that
    fails it is done (converged to rounding) and stops moving, so it cannot make
    every later step of its batch pay for backtracking.
    Returns (x, trace (steps + 1, B) of the loss at each iterate, number of objective calls).
    """
    f, g = objective(x)  # (B,), (B, D)
    calls = 1
    hist: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # newest last; each (s, y, rho), rho 0 = skip
    gamma = torch.ones_like(f)  # (B,) initial inverse Hessian scale
    fresh = torch.ones_like(f, dtype=torch.bool)  # (B,) no usable history: take a small steepest-descent step
    done = torch.zeros_like(fresh)  # (B,) converged: stays where it is
    trace = [f]
    for _ in range(steps):
        d = -_two_loop(g, hist, gamma)
        d = d.masked_fill(_frozen(x, d), 0)
        # Projection can spoil a quasi-Newton direction; fall back to the projected gradient for those pairs.
        uphill = (g * d).sum(1) >= 0
        steepest = (-g).masked_fill(_frozen(x, -g), 0)
        d = torch.where(uphill[:, None], steepest, d).masked_fill(done[:, None], 0)
        small = fresh | uphill
        # Unit steps once curvature is known. Before, a step that moves no pixel by more than 0.1: torch's
        # LBFGS takes 1/|g|_1, which moves each of D pixels by ~1/D, so its first curvature pair (s, y) is a
        # difference of two nearly equal gradients, all rounding noise (and then slower, and batch-sensitive).
        t = torch.where(small, 0.1 / g.abs().amax(1).clamp(min=1e-30), torch.ones_like(f))

        x_new, f_new, g_new = x, f, g
        pending = ~done
        for _ in range(max_backtracks):
            trial = (x + t[:, None] * d).clamp(0, 1)
            f_t, g_t = objective(trial)
            calls += 1
            # Armijo on the projected step: the decrease promised by the move actually made.
            ok = pending & (f_t <= f + c1 * (g * (trial - x)).sum(1))
            x_new = torch.where(ok[:, None], trial, x_new)
            g_new = torch.where(ok[:, None], g_t, g_new)
            f_new = torch.where(ok, f_t, f_new)
            pending &= ~ok
            if not bool(pending.any()):  # only pairs still pending are affected by further trials
                break
            t = t * 0.5
        failed = pending  # these did not move

        s, y = x_new - x, g_new - g  # (B, D); zero rows for pairs that did not move
        sy = (s * y).sum(1)
        # Keep the pair only with clearly positive curvature (keeps H positive definite); scale-free test,
        # since losses range from 1e-4 (random VGG) to 1e6 (ImageNet VGG, large beta).
        usable = sy > 1e-8 * s.norm(dim=1) * y.norm(dim=1)
        rho = torch.where(usable, 1.0 / torch.where(usable, sy, 1.0), 0.0)
        gamma = torch.where(usable, sy / torch.where(usable, (y * y).sum(1), 1.0), gamma)
        hist = [(hs, hy, hr.masked_fill(failed, 0)) for hs, hy, hr in hist]  # failed pairs forget their history
        hist = (hist + [(s, y, rho)])[-history:]
        gamma = gamma.masked_fill(failed, 1.0)
        done |= failed & small
        fresh = (fresh & ~usable) | failed
        x, f, g = x_new, f_new, g_new
        trace.append(f)
        if bool(done.all()):
            break
    trace += [f] * (steps + 1 - len(trace))  # converged early: the loss stays
    return x, torch.stack(trace), calls


def adam(x: torch.Tensor, objective: Objective, steps: int, lr: float) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Projected Adam on (B, D); elementwise, so pairs are independent. Same returns as ``batched_lbfgs``."""
    x = x.clone()
    opt = torch.optim.Adam([x], lr=lr)
    trace = []
    for _ in range(steps):
        f, g = objective(x)
        trace.append(f)
        x.grad = g
        opt.step()
        x.clamp_(0, 1)
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


def initial_image(content: torch.Tensor, cfg: StyleConfig, pair_seeds: list[int] | None = None) -> torch.Tensor:
    """The start: the content image, or per-pair white noise in [0, 1) seeded by (cfg.seed, pair key).

    Without ``pair_seeds`` the key is the position in the batch, so noise then depends on batch order.
    """
    if cfg.init == "content":
        return content.clone()
    keys = pair_seeds if pair_seeds is not None else range(content.shape[0])
    noise = [torch.rand(content.shape[1:], generator=torch.Generator().manual_seed(cfg.seed * 1_000_003 + k))
             for k in keys]
    return torch.stack(noise).to(content.device)  # (B, 3, H, W)


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


def stylize_batch(content: torch.Tensor, style: torch.Tensor, cfg: StyleConfig, vgg: VGGFeatures,
                  device: str | torch.device | None = None, pair_seeds: list[int] | None = None) -> StyleResult:
    """Paint style[i] onto content[i] for every i; each pair's result is independent of the others.

    content: (B, 3, H, W), style: (B, 3, H', W'), floats in [0, 1] (the caller resizes).
    device: where to run; defaults to the VGG's device, which it must match.
    pair_seeds: a stable key per pair for the noise init (ignored for init="content").
    """
    vgg_device = next(vgg.parameters()).device
    device = torch.device(device) if device is not None else vgg_device
    if device.type != vgg_device.type or device.index not in (None, vgg_device.index):
        raise ValueError(f"vgg is on {vgg_device} but device is {device}: build_vgg(..., device={str(device)!r})")
    if content.ndim != 4 or style.ndim != 4 or content.shape[1] != 3 or style.shape[1] != 3:
        raise ValueError(f"content and style must be (B, 3, H, W), got {tuple(content.shape)} and {tuple(style.shape)}")
    if content.shape[0] != style.shape[0]:
        raise ValueError(f"{content.shape[0]} content images but {style.shape[0]} style images")
    if pair_seeds is not None and len(pair_seeds) != content.shape[0]:
        raise ValueError(f"{len(pair_seeds)} pair_seeds for {content.shape[0]} pairs")
    if min(*content.shape[2:], *style.shape[2:]) < MIN_SIDE:
        raise ConfigError(f"images must be at least {MIN_SIDE} px on each side for relu5_1, got content "
                          f"{tuple(content.shape[2:])} and style {tuple(style.shape[2:])}")
    shape = content.shape
    content, style = content.to(device, torch.float32), style.to(device, torch.float32)

    with torch.no_grad(), _autocast(device):
        target_content = vgg(content)[CONTENT_LAYER].float()  # (B, 512, H/8, W/8)
        style_feats = vgg(style)
    target_grams = {n: gram_matrix(style_feats[n]) for n in STYLE_LAYERS}  # (B, C, C) each
    del style_feats

    def losses(img: torch.Tensor, fast: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) -> total, content, style losses, each (B,). fast: bf16 convolutions on CUDA."""
        with _autocast(device) if fast else contextlib.nullcontext():
            feats = vgg(img)
        c = content_loss(feats[CONTENT_LAYER], target_content)
        s = style_loss(feats, target_grams)
        total = cfg.content_weight * c + cfg.style_weight * s
        if cfg.tv_weight:
            total = total + cfg.tv_weight * tv_loss(img)
        return total, c, s

    def objective(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        img = x.view(shape).detach().requires_grad_(True)  # (B, 3, H, W)
        total = losses(img)[0]
        (grad,) = torch.autograd.grad(total.sum(), img)  # the sum: each pair gets its own loss's gradient
        return total.detach(), grad.flatten(1)

    x = initial_image(content, cfg, pair_seeds).flatten(1)  # (B, 3*H*W)
    if cfg.optimizer == "lbfgs":
        x, trace, calls = batched_lbfgs(x, objective, cfg.steps, cfg.history)
    else:
        x, trace, calls = adam(x, objective, cfg.steps, cfg.lr)

    images = x.view(shape)
    with torch.no_grad():
        total, c, s = losses(images, fast=False)  # reported in full fp32, comparable across devices
    return StyleResult(images.cpu(), c.cpu(), s.cpu(), total.cpu(), trace.float().cpu(), calls)


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
