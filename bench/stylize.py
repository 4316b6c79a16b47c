"""Style transfer throughput: the tutorial way against atelier's batched implementation.

The same (content, style) pairs, in one run:
  - baseline: one pair at a time with torch.optim.LBFGS in fp32 (the PyTorch tutorial's recipe);
  - atelier: worker.ml.style.stylize_batch, many pairs per batch (per-pair L-BFGS or Adam),
    bf16 convolutions and fp32 Grams on a GPU;
at each size, printing pairs/hour, mean final loss and the ratio.

    python bench/stylize.py --pairs 64 --sizes 256,512 --steps 300          # on a GPU box
    python bench/stylize.py --pairs 2 --sizes 32 --steps 3 --batch 2          # smoke test on a CPU
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.ml.style import (CONTENT_LAYER, STYLE_LAYERS, StyleConfig, build_vgg, content_loss, from_pil,  # noqa: E402
                             gram_matrix, style_loss, stylize_batch)
from worker.ml.synth import make_artists, paint  # noqa: E402


def images(n: int, size: int, seed: int) -> torch.Tensor:
    painters = make_artists(6, seed)
    rng = np.random.default_rng(seed)
    return torch.stack([from_pil(paint(painters[i % 6], rng, size).resize((size, size))) for i in range(n)])


def tutorial_one_pair(content, style, cfg: StyleConfig, vgg, device) -> float:
    """The common recipe: fp32, torch.optim.LBFGS on one image, clamping inside the closure."""
    content, style = content[None].to(device), style[None].to(device)
    with torch.no_grad():
        target = vgg(content)[CONTENT_LAYER]
        grams = {n: gram_matrix(f) for n, f in vgg(style).items() if n in STYLE_LAYERS}
    x = content.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], max_iter=cfg.steps)
    final = [0.0]

    def closure():
        with torch.no_grad():
            x.clamp_(0, 1)
        opt.zero_grad()
        feats = vgg(x)
        loss = (cfg.content_weight * content_loss(feats[CONTENT_LAYER], target) + cfg.style_weight * style_loss(feats, grams)).sum()
        loss.backward()
        final[0] = loss.item()
        return loss

    opt.step(closure)
    return final[0]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=32)
    p.add_argument("--baseline-pairs", type=int, default=None, help="pairs timed one at a time (default: all)")
    p.add_argument("--sizes", default="256,512")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=32, help="pairs per stylize_batch call")
    p.add_argument("--optimizer", default="lbfgs", choices=("lbfgs", "adam"))
    p.add_argument("--style-weight", type=float, default=1e5)
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    vgg, used = build_vgg("vgg19", None, device)
    print(f"device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}; VGG19 weights: {used}; "
          f"{args.pairs} pairs, {args.steps} steps, style weight {args.style_weight:g}")
    for size in (int(s) for s in args.sizes.split(",")):
        content, style = images(args.pairs, size, 0), images(args.pairs, size, 1)
        cfg = StyleConfig(steps=args.steps, size=size, optimizer=args.optimizer, style_weight=args.style_weight)
        n_base = args.baseline_pairs or args.pairs
        sync(device)
        t0 = time.perf_counter()
        base_losses = [tutorial_one_pair(content[i], style[i], cfg, vgg, device) for i in range(n_base)]
        sync(device)
        base_rate = n_base / (time.perf_counter() - t0) * 3600
        t0 = time.perf_counter()
        ours = []
        for start in range(0, args.pairs, args.batch):
            r = stylize_batch(content[start:start + args.batch], style[start:start + args.batch], cfg, vgg, device=device)
            ours.append(r.total_loss)
        sync(device)
        our_rate = args.pairs / (time.perf_counter() - t0) * 3600
        ours_loss = torch.cat(ours)[:n_base].mean().item()
        print(f"\n{size}px:")
        print(f"  tutorial LBFGS, one pair at a time   {base_rate:10.0f} pairs/h   mean final loss {np.mean(base_losses):.4g}")
        print(f"  atelier batched ({args.optimizer:5s})          {our_rate:10.0f} pairs/h   mean final loss {ours_loss:.4g}")
        print(f"  speed-up {our_rate / base_rate:.1f}x; loss ratio (atelier / tutorial) {ours_loss / np.mean(base_losses):.2f}")


if __name__ == "__main__":
    main()
