"""The study's dose: one number that means the same treatment for every (content, style) pair.

Gatys et al.'s objective is alpha * L_content + beta * L_style. A raw beta is no dose: L_style's size
depends on the style image (840-8,500x across 8 real paintings with a normalised VGG19), on the
weights and on their normalisation, and L_content is a sum over positions, so it grows with the
image's size. One beta is then style-dominated for one pair and content-dominated for the next.

The dose d fixes the balance of the two terms instead, per pair, before the optimisation:

    beta_pair = d * alpha * L_content(x_ref) / L_style(x_ref),

where x_ref is the pair's own white-noise image (the paper's starting point, drawn from the pair's
seed; it is the reference for a content-init run too, whose own start has no content loss). At
x_ref the style term is then exactly d times the content term: d = 1 is "as much style as content"
for every pair, size and weight file. The objective stays the paper's; only beta is chosen.
The balance ``beta * L_style(x_ref) / (alpha * L_content(x_ref))`` is stored with every row: d
for a dose row, and whatever a raw beta happened to give for a ``--style-weight`` row.
d = 0 is the null dose: beta = 0, an optimisation of the content term alone (from noise, a
reconstruction from relu4_2; not the unstylized control, which is its own arm).
"""

from __future__ import annotations

import torch


def betas_for_doses(
    doses: torch.Tensor, alpha: torch.Tensor, content_ref: torch.Tensor, style_ref: torch.Tensor
) -> torch.Tensor:
    """(B,) betas that put each pair's style term at ``doses`` times its content term at the reference image.

    A pair whose reference losses cannot define a balance (no style loss, or no content loss) raises: its
    dose would be a different treatment, so it must not be silently stylized at some other strength."""
    bad = ~((style_ref > 0) & (content_ref > 0) & torch.isfinite(style_ref) & torch.isfinite(content_ref))
    if bool((bad & (doses > 0)).any()):
        k = int(bad.nonzero()[0])
        raise ValueError(
            f"pair {k}: the reference losses (content {float(content_ref[k]):.3g}, style {float(style_ref[k]):.3g}) "
            "define no balance, so a dose cannot be set"
        )
    ratio = torch.where(bad, torch.zeros_like(content_ref), content_ref / style_ref.clamp(min=1e-30))
    return doses * alpha * ratio


def balance(
    beta: torch.Tensor, alpha: torch.Tensor, content_ref: torch.Tensor, style_ref: torch.Tensor
) -> torch.Tensor:
    """(B,) beta * L_style / (alpha * L_content) at the reference image: the dose a beta amounts to (nan if
    the content term is 0)."""
    content = alpha * content_ref
    return torch.where(content > 0, beta * style_ref / content.clamp(min=1e-30), torch.full_like(content, torch.nan))
