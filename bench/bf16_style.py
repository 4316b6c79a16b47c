"""Does bf16 autocast change the style objective's outcome?

The same pairs stylized twice in one run, under bf16 autocast (what the workers run on
CUDA) and in fp32: the target Grams, the line search's Armijo test and the L-BFGS
curvature pairs all see bf16 activations in the first. Prints, per precision, the final
losses recomputed in fp32 and how many pairs the line search froze early (a pair whose
loss did not move over the last half of the steps), and their ratio. On a CPU both
runs are fp32 (autocast is CUDA-only), so only the figures' presence is checked there.

    python -m bench.bf16_style                      # GPU box: 8 pairs, 256 px, 300 steps
    python -m bench.bf16_style --size 32 --steps 6  # CPU smoke
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from bench.stylize import make_pairs
from core.config import StyleConfig
from worker.ml.style import build_vgg, stylize_batch


def frozen_early(trace: torch.Tensor) -> int:
    """Pairs whose objective did not move over the last half of the steps: (steps + 1, B) -> count."""
    half = trace.shape[0] // 2
    return int((trace[half:] == trace[-1]).all(dim=0).sum())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--style-weight", type=float, default=1e4)
    p.add_argument("--vgg-weights", default=None, help="a VGG19 features file; random init if unset")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    vgg = build_vgg("vgg19", args.vgg_weights, device)
    content, style = make_pairs(args.pairs, args.size, 0)
    cfg = StyleConfig(steps=args.steps, style_weight=args.style_weight, init="noise", seed=0)
    figures = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "pairs": args.pairs}
    for precision in ("bf16", "fp32"):
        r = stylize_batch(content, style, cfg, vgg, device, pair_seeds=list(range(args.pairs)), precision=precision)
        figures[precision] = {
            "mean_final_loss_fp32": r.total_loss.mean().item(),
            "final_losses_fp32": r.total_loss.tolist(),
            "frozen_early": frozen_early(r.trace),
            "evaluations": r.evaluations,
        }
        print(f"{precision}: mean final loss (fp32) {r.total_loss.mean():.6g}, "
              f"{figures[precision]['frozen_early']}/{args.pairs} pairs frozen early, {r.evaluations} evaluations")  # fmt: skip
    figures["loss_ratio_bf16_over_fp32"] = (
        figures["bf16"]["mean_final_loss_fp32"] / figures["fp32"]["mean_final_loss_fp32"]
    )
    print(f"mean final loss bf16 / fp32: {figures['loss_ratio_bf16_over_fp32']:.4f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
