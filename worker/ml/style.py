"""Gatys style transfer, many pairs at once, each pair independent of its batch-mates.

Content loss at relu4_2, style loss on per-sample Gram matrices at relu1_1 ..
relu5_1 (Gatys, Ecker & Bethge 2016), weights alpha (content) and beta (style),
optional total variation. The image itself is optimised, in pixel space,
clamped to [0, 1] after every step.

Independence: every loss is a per-sample sum, VGG runs in eval mode (no batch
statistics), Adam is elementwise, and L-BFGS is implemented here with one
history, one step length and one line search *per pair* (torch.optim.LBFGS
would couple the pairs through a shared history and line search).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.models as tvm
from PIL import Image

from worker.ml.errors import ConfigError

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYER = "relu4_2"
# Convolution blocks of VGG16 and VGG19: convs per block before each max-pool.
BLOCKS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@dataclass(frozen=True)
class StyleConfig:
    vgg: str = "vgg19"  # vgg19 (Gatys) | vgg16
    content_weight: float = 1.0  # alpha
    style_weight: float = 1e5  # beta
    tv_weight: float = 0.0  # total variation, smooths high-frequency noise
    init: str = "content"  # content | noise: where the optimised image starts
    optimizer: str = "lbfgs"  # lbfgs (per-pair) | adam
    steps: int = 300  # optimiser iterations
    size: int = 256  # long side of the output in pixels (aspect kept)
    lr: float = 0.02  # adam's step size (pixels in [0, 1]); L-BFGS uses its line search
    history: int = 10  # L-BFGS memory
    seed: int = 0

    def __post_init__(self) -> None:
        if self.vgg not in BLOCKS:
            raise ConfigError(f"unknown vgg {self.vgg!r}; choose from vgg19, vgg16")
        if self.optimizer not in ("lbfgs", "adam"):
            raise ConfigError(f"unknown --optimizer {self.optimizer!r}; choose from lbfgs, adam")
        if self.init not in ("content", "noise"):
            raise ConfigError(f"unknown init {self.init!r}; choose from content, noise")
        if self.steps < 1:
            raise ConfigError(f"--steps must be at least 1, got {self.steps}")
        if self.size < 16:
            raise ConfigError(f"--size must be at least 16 px, got {self.size}")
        if min(self.content_weight, self.style_weight, self.tv_weight) < 0:
            raise ConfigError("content, style and TV weights must be non-negative")


def layer_indices(vgg: str) -> dict[str, int]:
    """Paper layer names -> index of that ReLU in torchvision's ``features`` Sequential."""
    names, i = {}, 0
    for block, convs in enumerate(BLOCKS[vgg], start=1):
        for conv in range(1, convs + 1):
            names[f"relu{block}_{conv}"] = i + 1  # conv at i, its ReLU at i + 1
            i += 2
        i += 1  # the max-pool closing the block
    return names


class VGGFeatures(nn.Module):
    """Frozen VGG trunk returning the activations the losses need, cut after relu5_1."""

    def __init__(self, features: nn.Sequential, vgg: str):
        super().__init__()
        index = layer_indices(vgg)
        self.wanted = {index[n]: n for n in (*STYLE_LAYERS, CONTENT_LAYER)}
        self.body = features[: max(self.wanted) + 1].eval()
        for m in self.body:
            if isinstance(m, nn.ReLU):
                m.inplace = False  # the activations are kept, not overwritten
        self.body.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (x - MEAN.to(x.device)) / STD.to(x.device)
        out = {}
        for i, layer in enumerate(self.body):
            x = layer(x)
            if i in self.wanted:
                out[self.wanted[i]] = x
        return out


def build_vgg(name: str = "vgg19", weights: str | None = None, device: torch.device | None = None) -> tuple[VGGFeatures, str]:
    """(feature extractor, what weights it carries: 'random', 'imagenet:<file>' or 'file:<path>')."""
    if name not in BLOCKS:
        raise ConfigError(f"unknown vgg {name!r}; choose from vgg19, vgg16")
    net = getattr(tvm, name)(weights=None)
    used = "random"
    if weights == "imagenet":
        w = tvm.get_model_weights(name).DEFAULT
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(w.url).name
        if not path.is_file():
            raise ConfigError(f"no ImageNet weights cached for {name}: put {path.name} in {path.parent}/")
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        used = f"imagenet:{path.name}"
    elif weights:
        from worker.ml.weights import read_state_dict

        state = read_state_dict(Path(weights))
        net.load_state_dict(state, strict=False)
        used = f"file:{weights}"
    return VGGFeatures(net.features, name).to(device or "cpu"), used


def gram_matrix(f: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, C), one Gram per sample, normalised by C*H*W, in fp32."""
    b, c, h, w = f.shape
    flat = f.float().reshape(b, c, h * w)
    return torch.bmm(flat, flat.transpose(1, 2)) / (c * h * w)


def content_loss(f: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared error, (B,)."""
    return (f.float() - target.float()).pow(2).flatten(1).mean(1)


def style_loss(feats: dict[str, torch.Tensor], target_grams: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum over the style layers of the per-sample MSE between Gram matrices, (B,)."""
    return sum((gram_matrix(feats[n]) - target_grams[n]).pow(2).flatten(1).mean(1) for n in STYLE_LAYERS)


def tv_loss(img: torch.Tensor) -> torch.Tensor:
    """Per-sample total variation (mean absolute neighbour difference), (B,)."""
    dx = (img[..., :, 1:] - img[..., :, :-1]).abs().flatten(1).mean(1)
    dy = (img[..., 1:, :] - img[..., :-1, :]).abs().flatten(1).mean(1)
    return dx + dy


@dataclass
class StyleResult:
    images: torch.Tensor  # (B, 3, H, W) in [0, 1], CPU
    content_loss: torch.Tensor  # (B,) final, unweighted
    style_loss: torch.Tensor  # (B,)
    total_loss: torch.Tensor  # (B,) weighted objective


def stylize_batch(content: torch.Tensor, style: torch.Tensor, cfg: StyleConfig, vgg: VGGFeatures,
                  pair_seeds: list[int] | None = None, device: torch.device | None = None) -> StyleResult:
    """Paint ``style[i]`` onto ``content[i]`` for every i; results do not depend on batch-mates."""
    device = device or next(vgg.parameters()).device
    content, style = content.to(device).float(), style.to(device).float()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    with torch.no_grad(), autocast:
        target_content = vgg(content)[CONTENT_LAYER].float()
        target_grams = {n: gram_matrix(f) for n, f in vgg(style).items() if n in STYLE_LAYERS}

    def losses(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with autocast:
            feats = vgg(img)
        c = content_loss(feats[CONTENT_LAYER], target_content)
        s = style_loss(feats, target_grams)
        total = cfg.content_weight * c + cfg.style_weight * s + cfg.tv_weight * tv_loss(img.float())
        return total, c, s

    if cfg.init == "content":
        x = content.clone()
    else:
        seeds = pair_seeds if pair_seeds is not None else list(range(content.shape[0]))
        # One generator per pair: the noise a pair starts from does not depend on its batch-mates.
        x = torch.stack([torch.rand(content.shape[1:], generator=torch.Generator().manual_seed(cfg.seed * 1_000_003 + s))
                         for s in seeds]).to(device)
    x = (_adam if cfg.optimizer == "adam" else _lbfgs)(x, losses, cfg)
    with torch.no_grad():
        total, c, s = losses(x)
    return StyleResult(x.detach().cpu(), c.cpu(), s.cpu(), total.float().cpu())


def _adam(x: torch.Tensor, losses, cfg: StyleConfig) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=cfg.lr)
    for _ in range(cfg.steps):
        opt.zero_grad(set_to_none=True)
        losses(x)[0].sum().backward()  # a sum of per-sample losses: each pair gets only its own gradient
        opt.step()
        with torch.no_grad():
            x.clamp_(0, 1)
    return x.detach()


def _value_and_grad(x: torch.Tensor, losses) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().requires_grad_(True)
    total = losses(x)[0].float()
    (grad,) = torch.autograd.grad(total.sum(), x)
    return total.detach(), grad.flatten(1)


def _lbfgs(x: torch.Tensor, losses, cfg: StyleConfig, c1: float = 1e-4, backtracks: int = 6) -> torch.Tensor:
    """L-BFGS vectorised over the batch with a per-sample history, direction and Armijo line search."""
    b = x.shape[0]
    shape = x.shape
    x = x.detach().flatten(1)  # (B, D)
    f, g = _value_and_grad(x.view(shape), losses)
    s_hist, y_hist, rho_hist = [], [], []
    gamma = torch.ones(b, device=x.device)
    for it in range(cfg.steps):
        # Two-loop recursion, every dot product per sample.
        q = g.clone()
        alphas = []
        for s, y, rho in reversed(list(zip(s_hist, y_hist, rho_hist))):
            a = rho * (s * q).sum(1)
            q -= a[:, None] * y
            alphas.append(a)
        r = gamma[:, None] * q
        for (s, y, rho), a in zip(zip(s_hist, y_hist, rho_hist), reversed(alphas)):
            beta = rho * (y * r).sum(1)
            r += s * (a - beta)[:, None]
        d = -r
        slope = (g * d).sum(1)
        bad = slope >= 0  # not a descent direction (can happen after clamping): fall back to the gradient
        d[bad] = -g[bad]
        slope = torch.where(bad, -(g * g).sum(1), slope)
        # First step of a pair scaled like torch's LBFGS: 1 / |g|_1, so the first move is small.
        t = torch.ones(b, device=x.device) if it else (1.0 / g.abs().sum(1)).clamp(max=1.0)
        accepted = torch.zeros(b, dtype=torch.bool, device=x.device)
        x_new, f_new = x.clone(), f.clone()
        for _ in range(backtracks):
            trial = (x + t[:, None] * d).clamp(0, 1)
            with torch.no_grad():
                f_trial = losses(trial.view(shape))[0].float()
            ok = ~accepted & (f_trial <= f + c1 * t * slope)
            x_new[ok], f_new[ok] = trial[ok], f_trial[ok]
            accepted |= ok
            if bool(accepted.all()):
                break
            t = torch.where(accepted, t, t * 0.5)
        # Pairs whose line search failed stay where they are this step (and will use the gradient next).
        f_next, g_next = _value_and_grad(x_new.view(shape), losses)
        s, y = x_new - x, g_next - g
        sy = (s * y).sum(1)
        good = sy > 1e-10
        rho = torch.where(good, 1.0 / sy.clamp(min=1e-10), torch.zeros_like(sy))  # rho 0: the pair skips this entry
        gamma = torch.where(good, sy / (y * y).sum(1).clamp(min=1e-20), gamma)
        s_hist.append(s)
        y_hist.append(y)
        rho_hist.append(rho)
        if len(s_hist) > cfg.history:
            s_hist.pop(0), y_hist.pop(0), rho_hist.pop(0)
        x, f, g = x_new, f_next, g_next
    return x.view(shape)


def resize_long_side(img: Image.Image, size: int) -> Image.Image:
    scale = size / max(img.size)
    return img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.LANCZOS)


def from_pil(img: Image.Image) -> torch.Tensor:
    """PIL RGB -> float (3, H, W) in [0, 1]."""
    import numpy as np

    return torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1).float() / 255


def to_pil(t: torch.Tensor) -> Image.Image:
    return Image.fromarray((t.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy())
