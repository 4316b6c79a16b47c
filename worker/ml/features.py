"""Frozen-backbone features, computed once and shared by every grid cell that needs them.

The backbone's spatial maps (before pooling, so both GAP and SPP heads can use
them) are stored in bf16 as ``(N, V, C, H, W)``: view 0 is the plain image,
views 1..V-1 are augmented copies, so head training still sees augmentation
without running the backbone again.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from worker.ml.augment import make_augment


@torch.no_grad()
def extract(
    backbone: torch.nn.Module,
    images: torch.Tensor,
    image_size: int,
    augment: str,
    views: int,
    device: torch.device,
    batch_size: int = 64,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """uint8 images (N, 3, S, S) -> bf16 features (N, V, C, H, W) on the CPU."""
    backbone = backbone.to(device).eval().to(memory_format=torch.channels_last)
    plain = make_augment("none", image_size, train=False)
    warp = make_augment(augment, image_size, train=True)
    g = torch.Generator().manual_seed(seed)
    out = None
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size].to(device, non_blocking=True)
        per_view = []
        for v in range(views):
            xv = plain(x, None) if v == 0 else warp(x, g)
            with autocast:
                per_view.append(backbone(xv.contiguous(memory_format=torch.channels_last)).to(torch.bfloat16).cpu())
        feats = torch.stack(per_view, dim=1)  # (B, V, C, H, W)
        if out is None:
            out = torch.empty((images.shape[0], *feats.shape[1:]), dtype=torch.bfloat16)
        out[start : start + feats.shape[0]] = feats
        if progress:
            progress(start + feats.shape[0])
    return out


def random_view(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    """Training transform for cached features: one random stored view per sample."""
    pick = torch.randint(x.shape[1], (x.shape[0],), generator=g).to(x.device)
    return x[torch.arange(x.shape[0], device=x.device), pick].float()  # (B, C, H, W)


def plain_view(x: torch.Tensor, _g: torch.Generator | None = None) -> torch.Tensor:
    return x[:, 0].float()
