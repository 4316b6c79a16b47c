"""Style transfer throughput: the tutorial's one pair at a time against atelier's batches.

The same (content, style) pairs, at each size, stylized twice in one process:
  - tutorial: one pair at a time, fp32, torch.optim.LBFGS over the image, the
    image clamped inside the closure (the PyTorch neural-style tutorial's loop,
    written out below), `--steps` closure evaluations per pair;
  - atelier: worker.ml.style.stylize_batch on `--batch` pairs at once (per-pair
    batched L-BFGS, bf16 convolutions on CUDA), `--steps` iterations.
Both optimise the same objective (content MSE at relu4_2, Gram MSE at relu1_1 ..
relu5_1, alpha/beta) through the same VGG, from the content image. The final
loss of every result is recomputed in fp32 by one function, so the columns compare.
Prints pairs/hour, forward+backward passes per pair, mean final loss and the speed-up.

    python bench/stylize.py                                        # GPU box: 32 pairs, 256 and 512 px, 300 steps
    python bench/stylize.py --pairs 2 --sizes 32 --steps 3 --batch 2   # CPU smoke test
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import StyleConfig  # noqa: E402
from corpus.synth import make_artists, paint  # noqa: E402
from worker.ml.style import (  # noqa: E402
    CONTENT_LAYER,
    STYLE_LAYERS,
    build_vgg,
    content_loss,
    from_pil,
    gram_matrix,
    style_loss,
    stylize_batch,
)


def make_pairs(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n procedural (content, style) paintings by two different artists, 4:3, long side ``size``: (n, 3, H, W) x2."""
    w, h = size, max(16, round(size * 3 / 4))
    artists = make_artists(max(2, min(n + 1, 12)), seed)
    rng = np.random.default_rng(seed)
    content, style = [], []
    for i in range(n):
        content.append(from_pil(paint(artists[i % len(artists)], rng, size).resize((w, h))))
        style.append(from_pil(paint(artists[(i + 1) % len(artists)], rng, size).resize((w, h))))
    return torch.stack(content), torch.stack(style)


def tutorial_gram(f: torch.Tensor) -> torch.Tensor:
    """The tutorial's Gram for one image: (1, C, H, W) -> (C, C), normalised by C*H*W."""
    _, c, h, w = f.shape
    flat = f.view(c, h * w)
    return flat @ flat.t() / (c * h * w)


def tutorial_lbfgs(content: torch.Tensor, style: torch.Tensor, vgg, cfg: StyleConfig) -> tuple[torch.Tensor, int]:
    """One pair, fp32, torch.optim.LBFGS over the image: (3, H, W) x2 -> stylized (3, H, W), closure evaluations."""
    device = next(vgg.parameters()).device
    c, s = content[None].to(device), style[None].to(device)
    with torch.no_grad():
        target = vgg(c)[CONTENT_LAYER]
        grams = {n: tutorial_gram(f) for n, f in vgg(s).items() if n in STYLE_LAYERS}
    x = c.clone().requires_grad_(True)
    # One .step() runs `steps` evaluations (max_eval caps them); no line search and lr 1 as in the tutorial,
    # the same history length as atelier's.
    opt = torch.optim.LBFGS([x], lr=1, max_iter=cfg.steps, max_eval=cfg.steps, history_size=cfg.history)
    evals = [0]

    def closure():
        with torch.no_grad():
            x.clamp_(0, 1)
        opt.zero_grad()
        feats = vgg(x)
        loss = cfg.content_weight * F.mse_loss(feats[CONTENT_LAYER], target)
        loss = loss + cfg.style_weight * sum(F.mse_loss(tutorial_gram(feats[n]), grams[n]) for n in STYLE_LAYERS)
        loss.backward()
        evals[0] += 1
        return loss

    opt.step(closure)
    with torch.no_grad():
        x.clamp_(0, 1)
    return x.detach()[0].cpu(), evals[0]


def run_tutorial(content, style, vgg, cfg) -> tuple[torch.Tensor, int]:
    images, evals = [], 0
    for c, s in zip(content, style):
        img, n = tutorial_lbfgs(c, s, vgg, cfg)
        images.append(img)
        evals += n
    return torch.stack(images), evals


def run_atelier(content, style, vgg, cfg, batch: int, betas: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """Batches of ``batch`` pairs in order; ``betas`` (n,): each pair's own dose, mixed inside a batch."""
    images, evals = [], 0
    for start in range(0, len(content), batch):
        part = slice(start, start + batch)
        weights = None if betas is None else betas[part]
        r = stylize_batch(
            content[part], style[part], cfg, vgg, pair_seeds=list(range(len(content)))[part], style_weights=weights
        )
        images.append(r.images)
        evals += r.evaluations * len(r.images)  # one batched pass serves every pair in it
    return torch.cat(images), evals


def run_split_by_beta(content, style, vgg, cfg, batch: int, betas: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The old way: one optimisation per dose, so a batch over k doses runs as k batches of about batch / k."""
    images, evals = torch.empty_like(content), 0
    for start in range(0, len(content), batch):
        part = torch.arange(start, min(start + batch, len(content)))
        for beta in betas[part].unique():
            idx = part[betas[part] == beta]
            r = stylize_batch(content[idx], style[idx], cfg, vgg, pair_seeds=idx.tolist(), style_weights=betas[idx])
            images[idx] = r.images
            evals += r.evaluations * len(idx)
    return images, evals


@torch.no_grad()
def final_losses(images, content, style, vgg, cfg, batch: int, betas: torch.Tensor | None = None) -> torch.Tensor:
    """alpha * content + beta * style of finished images, fp32 (no autocast), one value per pair."""
    device = next(vgg.parameters()).device
    out = []
    for start in range(0, len(images), batch):
        part = slice(start, start + batch)
        x, c, s = (t[part].to(device) for t in (images, content, style))
        f, fc, fs = vgg(x), vgg(c), vgg(s)
        grams = {n: gram_matrix(fs[n]) for n in STYLE_LAYERS}
        beta = cfg.style_weight if betas is None else betas[part].to(device)
        out.append(
            (
                cfg.content_weight * content_loss(f[CONTENT_LAYER], fc[CONTENT_LAYER], cfg.loss)
                + beta * style_loss(f, grams, cfg.loss)
            ).cpu()
        )
    return torch.cat(out)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=32)
    p.add_argument("--sizes", default="256,512", help="long sides in px, comma-separated")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=16, help="pairs per stylize_batch call")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--vgg", default="vgg19", choices=("vgg19", "vgg16"))
    p.add_argument("--vgg-weights", default=None, help="a VGG features file (torchvision names); random init if unset")
    p.add_argument("--optimizer", default="lbfgs", choices=("lbfgs", "adam"), help="atelier's optimiser")
    p.add_argument("--style-weight", type=float, default=1e5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--doses", default="1e4,1e5,1e6", help="betas for the mixed-dose comparison (round-robin)")
    p.add_argument("--match-steps", default="10,20,40,80,160",
                   help="atelier step counts tried, fewest first, for the fewest that reach the tutorial's loss")  # fmt: skip
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = p.parse_args()
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    sizes = [int(s) for s in args.sizes.split(",")]
    # The tutorial's objective on both sides, so the comparison is of optimisers and batching only.
    cfg = StyleConfig(
        vgg=args.vgg,
        style_weight=args.style_weight,
        steps=args.steps,
        optimizer=args.optimizer,
        init="content",
        pool="max",
        loss="tutorial",
        seed=args.seed,
    )
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes per size: let cuDNN pick its fastest kernels
        name = torch.cuda.get_device_name(device)
        precision = (
            f"atelier bf16 autocast; tutorial fp32 (cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, "
            f"torch's default)"
        )
    else:
        name, precision = f"cpu ({torch.get_num_threads()} threads)", "both fp32"
    torch.manual_seed(args.seed)
    vgg = build_vgg(args.vgg, args.vgg_weights, device, pool="max")  # the tutorial's network: max pooling
    weights = args.vgg_weights or "random init"
    print(
        f"device {name}; {args.vgg} ({weights}); {args.pairs} pairs, {args.steps} steps, batch {args.batch}, "
        f"beta {args.style_weight:g}; {precision}"
    )

    rows, mixed, equal = [], [], []
    for size in sizes:
        content, style = make_pairs(args.pairs, size, args.seed)
        # Warm-up on this shape (cuDNN autotuning, allocator) outside the timed runs.
        warm = StyleConfig(**{**vars(cfg), "steps": 2})
        run_tutorial(content[:1], style[:1], vgg, warm)
        run_atelier(content[: args.batch], style[: args.batch], vgg, warm, args.batch)
        # Bound now (default arguments): the lambdas run inside this iteration, on this size's pairs.
        methods = (
            ("tutorial LBFGS, 1 pair", lambda c=content, s=style: run_tutorial(c, s, vgg, cfg)),
            (
                f"atelier {args.optimizer}, batch {args.batch}",
                lambda c=content, s=style: run_atelier(c, s, vgg, cfg, args.batch),
            ),
        )
        for method, fn in methods:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            sync(device)
            t0 = time.perf_counter()
            images, evals = fn()
            sync(device)
            seconds = time.perf_counter() - t0
            peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
            loss = final_losses(images, content, style, vgg, cfg, args.batch).mean().item()
            rows.append(
                (
                    f"{size}x{content.shape[2]}",
                    method,
                    args.pairs,
                    seconds,
                    args.pairs / seconds * 3600,
                    evals / args.pairs,
                    loss,
                    peak,
                )
            )
            print(f"  {rows[-1][0]:>9} {method:26s} {seconds:9.2f} s")
        tutorial = rows[-2]
        equal.append(equal_loss(content, style, vgg, cfg, args, device, tutorial[6], tutorial[4]))
        mixed.append(mixed_doses(content, style, vgg, cfg, args, device))

    print()
    print(
        f"{'size':>9}  {'method':26s} {'pairs':>5} {'seconds':>9} {'pairs/hour':>11} {'evals/pair':>10} "
        f"{'mean final loss':>15} {'peak GiB':>8}"
    )
    for i in range(0, len(rows), 2):
        for size, method, n, seconds, per_hour, evals, loss, peak in rows[i : i + 2]:
            peak_text = f"{peak:8.2f}" if peak == peak else f"{'-':>8}"  # NaN off CUDA
            print(
                f"{size:>9}  {method:26s} {n:5d} {seconds:9.2f} {per_hour:11.1f} {evals:10.1f} {loss:15.6g} {peak_text}"
            )
        tutorial, ours = rows[i], rows[i + 1]
        print(
            f"{ours[0]:>9}  {'speed-up (pairs/hour)':26s} {ours[4] / tutorial[4]:>43.1f}x"
            f"   loss ratio atelier/tutorial {ours[6] / tutorial[6]:.3f}"
        )

    for e in equal:
        reached = f"reached it in {e['steps']} steps" if e["reached"] else f"did not reach it in {e['steps']} steps"
        print(
            f"{e['size']:>9}  at the tutorial's final loss {e['tutorial_loss']:.4g}: atelier {reached} "
            f"(loss {e['loss']:.4g}), {e['pairs_per_hour']:.1f} pairs/h, "
            + (f"{e['speedup']:.1f}x the tutorial" if e["reached"] else "no speed-up at equal loss")
        )
    for m in mixed:
        print(
            f"{m['size']:>9}  mixed doses {m['doses']}: one optimisation per device batch "
            f"{m['mixed_pairs_per_hour']:.1f} pairs/h, split by dose {m['split_pairs_per_hour']:.1f} pairs/h, "
            f"{m['speedup']:.2f}x (final loss ratio mixed/split {m['loss_ratio']:.3f})"
        )
    if args.json:
        figures = {
            "device": name,
            "sizes": [
                {
                    "size": rows[i][0],
                    "tutorial_pairs_per_hour": rows[i][4],
                    "atelier_pairs_per_hour": rows[i + 1][4],
                    "speedup": rows[i + 1][4] / rows[i][4],
                    "loss_ratio_atelier_over_tutorial": rows[i + 1][6] / rows[i][6],
                    "atelier_peak_gib": rows[i + 1][7] if rows[i + 1][7] == rows[i + 1][7] else None,
                    "equal_loss": equal[i // 2],
                }
                for i in range(0, len(rows), 2)
            ],
            "mixed_doses": mixed,
        }
        args.json.write_text(json.dumps(figures, indent=1))


def equal_loss(content, style, vgg, cfg, args, device, tutorial_loss: float, tutorial_per_hour: float) -> dict:
    """The yardstick the targets mean: atelier's pairs/hour at the tutorial's final loss. Equal steps is not it:
    atelier's line search spends several evaluations per step and ends far lower. Tries --match-steps, fewest
    first, then --steps; ``speedup`` is None when even --steps does not reach the tutorial's loss."""
    candidates = sorted({int(n) for n in args.match_steps.split(",") if n.strip()} | {cfg.steps})
    for steps in (n for n in candidates if n <= cfg.steps):
        fewer = StyleConfig(**{**vars(cfg), "steps": steps})
        sync(device)
        t0 = time.perf_counter()
        images, _ = run_atelier(content, style, vgg, fewer, args.batch)
        sync(device)
        per_hour = len(content) / (time.perf_counter() - t0) * 3600
        loss = final_losses(images, content, style, vgg, cfg, args.batch).mean().item()
        if loss <= tutorial_loss:
            break
    reached = loss <= tutorial_loss
    return {
        "size": f"{content.shape[3]}x{content.shape[2]}",
        "tutorial_loss": tutorial_loss,
        "steps": steps,
        "loss": loss,
        "reached": reached,
        "pairs_per_hour": per_hour,
        "speedup": per_hour / tutorial_per_hour if reached else None,
    }


def mixed_doses(content, style, vgg, cfg, args, device) -> dict:
    """A device batch whose pairs carry different betas: one optimisation, against one per beta."""
    doses = [float(d) for d in args.doses.split(",")]
    betas = torch.tensor([doses[i % len(doses)] for i in range(len(content))])
    out = {"size": f"{content.shape[3]}x{content.shape[2]}", "doses": args.doses}
    for label, fn in (("mixed", run_atelier), ("split", run_split_by_beta)):
        sync(device)
        t0 = time.perf_counter()
        images, _ = fn(content, style, vgg, cfg, args.batch, betas)
        sync(device)
        out[f"{label}_pairs_per_hour"] = len(content) / (time.perf_counter() - t0) * 3600
        out[f"{label}_loss"] = final_losses(images, content, style, vgg, cfg, args.batch, betas).mean().item()
    out["speedup"] = out["mixed_pairs_per_hour"] / out["split_pairs_per_hour"]
    out["loss_ratio"] = out["mixed_loss"] / out["split_loss"]
    return out


if __name__ == "__main__":
    main()
