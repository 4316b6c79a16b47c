"""The per-sample losses of Gatys et al. and the layers they read, pure functions of activations.

Every loss returns one value per sample, shape (B,), so pairs sharing a batch never share a loss: the
optimisers take gradients of their sum, which gives each pair its own loss's gradient.
"""

from __future__ import annotations

import torch

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYER = "relu4_2"


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
