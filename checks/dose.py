"""What a dose means: the normalisation's invariant and the balance of the two losses, on real paintings.

With real weights (``python ../shared/tools/real_weights.py DIR``) and real paintings (one folder per
artist), in one run:
  1. the normalisation (worker.ml.style.mean_activation_scales + VGGFeatures.rescale) measured over
     ``--norm-images`` paintings drawn across every artist: the relative residual between the normalised
     features divided by their factors and VGG19's own, at every style and content layer (it must be
     rounding), and the factors' spread (the largest gain against its layer's median);
  2. for one content painting per artist and one style painting per artist (every cross-artist pair), the
     pre-optimisation balance beta * L_style / (alpha * L_content) at each pair's reference noise, raw
     beta against the scale-free dose, on the raw and the normalised network: the spread across pairs
     (max / min) is the "one beta is another treatment for every pair" figure; a dose must keep it
     within 10x;
  3. what a dose does not hold fixed: at dose 1, the ratio of the two terms' *gradients* at the reference
     noise, ||grad beta*L_style|| / ||grad alpha*L_content||, per pair, at each of ``--sizes`` on the same
     pairs. The dose fixes the ratio of the losses there, not of their pulls on the pixels, and the content
     loss is a sum over positions while the style loss is a mean of Grams, so the pull moves with the size:
     compare doses only at one image size.

    python -m checks.dose --weights DIR --paintings ../shared/realdata/paintings [--size 128] [--norm-images 64]
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import torch

from core.config import StyleConfig
from corpus.imageio import open_rgb
from worker.ml.dose import betas_for_doses
from worker.ml.style import (
    CONTENT_LAYER,
    STYLE_LAYERS,
    build_vgg,
    content_loss,
    from_pil,
    gram_matrix,
    initial_image,
    layer_indices,
    mean_activation_scales,
    resize_long_side,
    style_loss,
    stylize_batch,
)

SUFFIXES = {".jpg", ".jpeg", ".png"}
MAX_SPREAD = 10.0  # the bound on one dose's balance across the pairs of a batch


def paintings(root: Path) -> dict[str, list[Path]]:
    by_artist = {d.name: sorted(p for p in d.iterdir() if p.suffix.lower() in SUFFIXES) for d in root.iterdir()}
    return {a: ps for a, ps in sorted(by_artist.items()) if ps}


def across_artists(by_artist: dict[str, list[Path]], n: int, seed: int) -> list[Path]:
    rng = random.Random(seed)
    queues = [rng.sample(ps, len(ps)) for ps in by_artist.values()]
    out: list[Path] = []
    while len(out) < n and any(queues):
        out += [q.pop() for q in queues if q][: n - len(out)]
    return out


def residuals(raw, normalised, scales, images) -> dict[str, float]:
    index = layer_indices(raw.name)
    worst = {}
    with torch.no_grad():
        for img in images:
            a, b = raw(img[None]), normalised(img[None])
            for name in (*STYLE_LAYERS, CONTENT_LAYER):
                back = b[name] / scales[str(index[name] - 1)].view(1, -1, 1, 1)
                worst[name] = max(worst.get(name, 0.0), float((back - a[name]).norm() / a[name].norm()))
    return worst


def balances(vgg, contents, styles, size: int, **how) -> torch.Tensor:
    """(pairs,) balance at each pair's reference noise, every cross-artist pair (content i, style j), i != j."""
    cfg = StyleConfig(size=size, steps=1)
    out = []
    for i, c in enumerate(contents):
        others = [s for j, s in enumerate(styles) if j != i]
        r = stylize_batch(
            c[None].expand(len(others), -1, -1, -1), others, cfg, vgg, pair_seeds=list(range(len(others))), **how
        )
        out.append(r.balance)
    return torch.cat(out)


def gradient_ratios(vgg, contents, styles, size: int) -> torch.Tensor:
    """(pairs,) ||grad(beta*L_style)|| / ||grad(alpha*L_content)|| at each pair's reference noise, dose 1."""
    cfg = StyleConfig(size=size, steps=1)
    out = []
    for i, c in enumerate(contents):
        others = [s for j, s in enumerate(styles) if j != i]
        x = initial_image(c[None].expand(len(others), -1, -1, -1), cfg, list(range(len(others)))).requires_grad_()
        with torch.no_grad():
            target = vgg(c[None])[CONTENT_LAYER].expand(len(others), -1, -1, -1)
            grams = [{n: gram_matrix(f) for n, f in vgg(s[None]).items() if n in STYLE_LAYERS} for s in others]
            grams = {n: torch.cat([g[n] for g in grams]) for n in STYLE_LAYERS}
        feats = vgg(x)
        lc, ls = content_loss(feats[CONTENT_LAYER], target), style_loss(feats, grams)
        alpha = torch.full_like(lc, cfg.content_weight)
        beta = betas_for_doses(torch.ones_like(lc), alpha, lc.detach(), ls.detach())
        (gc,) = torch.autograd.grad((alpha * lc).sum(), x, retain_graph=True)
        (gs,) = torch.autograd.grad((beta * ls).sum(), x)
        out.append(gs.flatten(1).norm(dim=1) / gc.flatten(1).norm(dim=1))
    return torch.cat(out)


def spread(x: torch.Tensor) -> str:
    return f"{float(x.min()):.3g} .. {float(x.max()):.3g} ({float(x.max() / x.min()):,.1f}x)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, required=True, help="folder with vgg19-imagenet-features.safetensors")
    ap.add_argument("--paintings", type=Path, required=True)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--norm-images", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sizes", default="64,128", help="sizes for the gradient ratio at dose 1 (same pairs)")
    args = ap.parse_args()
    torch.set_grad_enabled(True)
    by_artist = paintings(args.paintings)
    weights = next(args.weights.glob("vgg19*.safetensors"))
    # The study's network: average pooling (the paper's choice for synthesis), which changes every
    # activation after the first pool, so the balances are measured on it. (The factors are measured on
    # the network as trained, max pooling, whatever this says: see mean_activation_scales.)
    raw = build_vgg("vgg19", weights, pool="avg")
    norm_set = [
        from_pil(resize_long_side(open_rgb(p), args.size)) for p in across_artists(by_artist, args.norm_images, 1)
    ]
    scales = mean_activation_scales(raw, norm_set)
    normalised = build_vgg("vgg19", weights, pool="avg").rescale(scales)
    print(f"normalisation over {len(norm_set)} paintings of {len(by_artist)} artists at {args.size} px")
    print("  worst relative residual, normalised / factor vs VGG19:")
    for name, r in residuals(raw, normalised, scales, norm_set[:8]).items():
        print(f"    {name}: {r:.2e}")
    gains = {k: float(v.max() / v.median()) for k, v in scales.items()}
    print(f"  largest gain / layer median: {max(gains.values()):.1f} (cap 10)")
    rng = random.Random(args.seed)
    contents = [from_pil(resize_long_side(open_rgb(rng.choice(ps)), args.size)) for ps in by_artist.values()]
    styles = [from_pil(resize_long_side(open_rgb(rng.choice(ps)), args.size)) for ps in by_artist.values()]
    n = len(contents) * (len(contents) - 1)
    print(f"balance beta*L_style/(alpha*L_content) at the reference noise, {n} cross-artist pairs:")
    others = len(styles) - 1  # the style images each content image is paired with
    worst = 0.0
    for label, vgg in (("raw VGG19", raw), ("normalised VGG19", normalised)):
        raw_beta = balances(vgg, contents, styles, args.size, style_weights=[1e3] * others)
        dosed = balances(vgg, contents, styles, args.size, doses=[1.0] * others)
        print(f"  {label}, raw beta 1e3: {spread(raw_beta)}")
        print(f"  {label}, dose 1:       {spread(dosed)}")
        worst = max(worst, float(dosed.max() / dosed.min()))
    pulls = {}
    for size in (int(v) for v in args.sizes.split(",")):
        rng = random.Random(args.seed)  # the same paintings at every size
        at = [from_pil(resize_long_side(open_rgb(rng.choice(ps)), size)) for ps in by_artist.values()]
        at_styles = [from_pil(resize_long_side(open_rgb(rng.choice(ps)), size)) for ps in by_artist.values()]
        pulls[size] = gradient_ratios(normalised, at, at_styles, size)
        print(
            f"  normalised VGG19, dose 1, {size} px: gradient ratio style/content {spread(pulls[size])}, "
            f"median {float(pulls[size].median()):.3g}"
        )
    sizes = sorted(pulls)
    for a, b in zip(sizes, sizes[1:]):
        moved = pulls[b] / pulls[a]
        print(
            f"  {a} -> {b} px, same pairs: the gradient ratio moves {spread(moved)}, median {float(moved.median()):.3g}x"
        )
    if worst > MAX_SPREAD:
        sys.exit(f"dose 1 spans {worst:.1f}x across pairs, more than {MAX_SPREAD:g}x: a dose is not one treatment")


if __name__ == "__main__":
    main()
