"""Style transfer throughput: the tutorial's one pair at a time against atelier's optimisers, side by side.

The same (content, style) pairs, at each size, stylized in one process:
  - tutorial: one pair at a time, fp32, torch.optim.LBFGS over the image, the
    image clamped inside the closure (the PyTorch neural-style tutorial's loop,
    written out below), `--steps` closure evaluations per pair, on the first
    `--tutorial-pairs` pairs (its pace is one pair's, so a few pairs measure it);
  - atelier, once per optimiser in `--optimizers` (default: today's batched L-BFGS,
    which re-evaluates the batch until every pair has accepted its step, and the
    one-evaluation-per-iteration L-BFGS variants of worker.ml.style.lbfgs_one_pass):
    stylize_batch on device batches of `--batch` pairs (0: sized from the card's
    free memory by device_batch_for, as the workers do), `--steps` iterations.
All optimise the same objective (content MSE at relu4_2, Gram MSE at relu1_1 ..
relu5_1, alpha/beta) through the same VGG, from the content image. The final loss
of every result is recomputed in fp32 by one function, so the columns compare.

Per optimiser: evaluations (forward+backward passes of the batch) per pair per step,
pairs/hour, peak memory, the fraction of the compute floor (VGG to relu5_1, forward
plus the gradient w.r.t. the image = 4 x the forward MACs in FLOPs, one evaluation
per step) at the device's peak (bench/peak.py: --peak-tflops, else a known GPU's
data-sheet bf16 figure, else large dense work of the run's precision measured here,
named in the output; a fraction above 1 stops the run), how many pairs the optimiser
stopped before their steps ran out, the mean final loss, and the evaluations per pair
it spent to reach the tutorial's final loss (read from its own loss trace on the
tutorial's pairs).

--cpu-bf16 runs atelier's convolutions under torch.autocast("cpu", bfloat16), the
CPU stand-in for the bf16 autocast the workers use on CUDA (targets and reported
losses stay fp32, as there); the tutorial stays fp32.

    python -m bench.stylize                                         # GPU box: one device batch, 256 px, 300 steps
    python -m bench.stylize --pairs 2 --sizes 32 --steps 3 --batch 2   # CPU smoke test
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import worker.ml.style.transfer as style_module  # stylize_batch reads _autocast there
from bench import peak
from core.config import STYLE_OPTIMIZERS, StyleConfig
from corpus.synth import make_artists, paint
from worker.ml.style import (
    CONTENT_LAYER,
    STYLE_LAYERS,
    build_vgg,
    content_loss,
    device_batch_for,
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


def run_atelier(
    content, style, vgg, cfg, batch: int, betas: torch.Tensor | None = None, results: list | None = None
) -> tuple[torch.Tensor, int]:
    """Batches of ``batch`` pairs in order; ``betas`` (n,): each pair's own dose, mixed inside a batch.
    ``results``: if given, each batch's StyleResult is appended (traces, evaluations per iterate)."""
    images, evals = [], 0
    for start in range(0, len(content), batch):
        part = slice(start, start + batch)
        weights = None if betas is None else betas[part]
        r = stylize_batch(
            content[part], style[part], cfg, vgg, pair_seeds=list(range(len(content)))[part], style_weights=weights
        )
        images.append(r.images)
        evals += r.evaluations * len(r.images)  # one batched pass serves every pair in it
        if results is not None:
            results.append(r)
    return torch.cat(images), evals


def use_cpu_bf16() -> None:
    """Run stylize_batch's fast path (its convolutions) under CPU bf16 autocast, as it does on CUDA.

    stylize_batch asks ``_autocast`` for its optimisation passes only; targets, the dose's reference losses and
    the reported losses are fp32 (fast=False), so this reproduces the CUDA bf16 path's numerics on a CPU.
    """
    style_module._autocast = lambda device, bf16=True: (
        torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    )


def forward_macs(vgg, height: int, width: int) -> float:
    """Multiply-accumulates of one forward pass of ``vgg``'s body (to relu5_1) on one (3, height, width) image:
    23.7 G for VGG19 at 256 x 256."""
    macs, h, w = 0.0, height, width
    for m in vgg.body:
        if isinstance(m, nn.Conv2d):
            macs += m.in_channels * m.out_channels * m.kernel_size[0] * m.kernel_size[1] * h * w
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            h, w = h // 2, w // 2
    return macs


def device_peak(args, device: torch.device, name: str) -> peak.Peak:
    """The ceiling of the floor fractions: --peak-tflops, a known GPU's data-sheet bf16 figure, or large dense
    work measured here in the run's precision. A CPU under bf16 autocast is measured in bf16 and in fp32, the
    better counting: one without bf16 units computes its bf16 convolutions in fp32."""
    if args.peak_tflops:
        return peak.Peak(args.peak_tflops * 1e12, "given with --peak-tflops")
    if device.type == "cuda" and (sheet := peak.datasheet(name)):
        return sheet
    if device.type == "cuda":
        dtypes: tuple[torch.dtype, ...] = (torch.bfloat16,)
    else:
        dtypes = (torch.bfloat16, torch.float32) if args.cpu_bf16 else (torch.float32,)
    return peak.measured(device, dtypes, args.peak_seconds)


def evals_to_reach(results: list, tutorial_losses: torch.Tensor) -> float | None:
    """Evaluations per pair atelier spent before its mean loss, over the tutorial's pairs (the first
    len(tutorial_losses)), first went at or below the tutorial's mean final loss; None if it never did."""
    n = len(tutorial_losses)
    traces, taken = [], 0
    for r in results:
        if taken >= n:
            break
        traces.append(r.trace[:, : n - taken])
        taken += traces[-1].shape[1]
    if len({r.evaluations_at is not None and tuple(r.evaluations_at) for r in results[: len(traces)]}) != 1:
        return None  # the batches spent differently: no one count per iterate (not seen: batch sizes are equal)
    mean = torch.cat(traces, 1).mean(1)  # (steps + 1,) the loss each iterate had, as the optimiser saw it
    hit = (mean <= tutorial_losses.mean()).nonzero()
    return float(results[0].evaluations_at[int(hit[0])]) if len(hit) else None


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
    p.add_argument("--pairs", type=int, default=0, help="pairs per size; 0: one device batch (CUDA) or 4 (CPU)")
    p.add_argument("--tutorial-pairs", type=int, default=4, help="the first pairs, run through the tutorial's loop")
    p.add_argument("--sizes", default="256", help="long sides in px, comma-separated")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=0,
                   help="pairs per stylize_batch call; 0: device_batch_for the card's free memory (CUDA), 4 (CPU)")  # fmt: skip
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--vgg", default="vgg19", choices=("vgg19", "vgg16"))
    p.add_argument("--vgg-weights", default=None, help="a VGG features file (torchvision names); random init if unset")
    p.add_argument("--optimizers", default="lbfgs,lbfgs-onepass,lbfgs-unit",
                   help=f"atelier's optimisers to compare, comma-separated, of {', '.join(STYLE_OPTIMIZERS)}")  # fmt: skip
    p.add_argument("--cpu-bf16", action="store_true", help="atelier's convolutions under CPU bf16 autocast")
    p.add_argument("--peak-tflops", type=float, default=0,
                   help="the device's peak (its data sheet's); 0: a known GPU's data sheet, else measured dense work")  # fmt: skip
    p.add_argument("--peak-seconds", type=float, default=2.0, help="each of the 3 repetitions of the measured peak")
    p.add_argument("--style-weight", type=float, default=1e5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--doses", default="1e4,1e5,1e6",
                   help="betas for the mixed-dose comparison (round-robin), with the last optimiser; '' skips it")  # fmt: skip
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = p.parse_args()
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    sizes = [int(s) for s in args.sizes.split(",")]
    optimizers = [o.strip() for o in args.optimizers.split(",") if o.strip()]
    if unknown := [o for o in optimizers if o not in STYLE_OPTIMIZERS]:
        p.error(f"unknown optimizers {unknown}; known: {', '.join(STYLE_OPTIMIZERS)}")
    if args.cpu_bf16:
        if device.type != "cpu":
            p.error("--cpu-bf16 is for CPU runs; on CUDA atelier runs bf16 autocast already")
        use_cpu_bf16()
    # The tutorial's objective on both sides, so the comparison is of optimisers and batching only.
    cfg = StyleConfig(
        vgg=args.vgg,
        style_weight=args.style_weight,
        steps=args.steps,
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
        name = f"cpu ({torch.get_num_threads()} threads)"
        precision = "atelier bf16 autocast (CPU), tutorial fp32" if args.cpu_bf16 else "both fp32"
    torch.manual_seed(args.seed)
    vgg = build_vgg(args.vgg, args.vgg_weights, device, pool="max")  # the tutorial's network: max pooling
    ceiling = device_peak(args, device, name)
    weights = args.vgg_weights or "random init"
    print(
        f"device {name}; {args.vgg} ({weights}); {args.steps} steps, beta {args.style_weight:g}; {precision}; "
        f"peak {ceiling}",
        flush=True,
    )

    sections, mixed = [], []
    for size in sizes:
        w, h = size, max(16, round(size * 3 / 4))  # make_pairs' 4:3
        if args.batch:
            batch = args.batch
        elif device.type == "cuda":
            batch = device_batch_for(torch.cuda.mem_get_info(device)[0], h, w, args.vgg, cfg.history)
        else:
            batch = 4
        n = args.pairs or batch
        batch = min(batch, n)
        content, style = make_pairs(n, size, args.seed)
        n_tut = min(args.tutorial_pairs, n)
        floor_flops = 4 * forward_macs(vgg, h, w) * args.steps  # per pair, one evaluation per step
        print(f"  {w}x{h}: {n} pairs, device batch {batch}, tutorial on {n_tut}", flush=True)
        # Warm-up on this shape (cuDNN autotuning, allocator) outside the timed runs.
        warm = StyleConfig(**{**vars(cfg), "steps": 2})
        run_tutorial(content[:1], style[:1], vgg, warm)
        run_atelier(content[:batch], style[:batch], vgg, warm, batch)

        def timed(fn, *fn_args):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            sync(device)
            t0 = time.perf_counter()
            out = fn(*fn_args)
            sync(device)
            seconds = time.perf_counter() - t0
            gib = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
            return out, seconds, gib

        (images, evals), seconds, gib = timed(run_tutorial, content[:n_tut], style[:n_tut], vgg, cfg)
        tut_losses = final_losses(images, content[:n_tut], style[:n_tut], vgg, cfg, batch)
        rows = [
            {
                "method": "tutorial LBFGS, 1 pair",
                "optimizer": "torch.optim.LBFGS",
                "pairs": n_tut,
                "seconds": seconds,
                "pairs_per_hour": n_tut / seconds * 3600,
                "evals_per_pair_per_step": evals / n_tut / args.steps,
                "peak_gib": gib,
                "floor_fraction": peak.fraction(floor_flops, seconds / n_tut, ceiling),
                "stopped_early": None,  # torch.optim.LBFGS keeps no per-pair record
                "mean_final_loss": tut_losses.mean().item(),
                "loss_on_tutorial_pairs": tut_losses.mean().item(),
                "evals_to_tutorial_loss": evals / n_tut,
            }
        ]
        print(f"    {rows[-1]['method']:28s} {seconds:9.2f} s", flush=True)
        for opt in optimizers:
            ocfg = StyleConfig(**{**vars(cfg), "optimizer": opt})
            results: list = []
            (images, evals), seconds, gib = timed(run_atelier, content, style, vgg, ocfg, batch, None, results)
            losses = final_losses(images, content, style, vgg, cfg, batch)
            rows.append(
                {
                    "method": f"atelier {opt}, batch {batch}",
                    "optimizer": opt,
                    "pairs": n,
                    "seconds": seconds,
                    "pairs_per_hour": n / seconds * 3600,
                    "evals_per_pair_per_step": (evals / n - 1) / args.steps,  # the start's evaluation aside
                    "peak_gib": gib,
                    "floor_fraction": peak.fraction(floor_flops, seconds / n, ceiling),
                    "stopped_early": sum(int((r.steps_done < args.steps).sum()) for r in results),
                    "mean_final_loss": losses.mean().item(),
                    "loss_on_tutorial_pairs": losses[:n_tut].mean().item(),
                    "evals_to_tutorial_loss": evals_to_reach(results, tut_losses),
                }
            )
            print(f"    {rows[-1]['method']:28s} {seconds:9.2f} s", flush=True)
        sections.append({"size": f"{w}x{h}", "batch": batch, "rows": rows})
        if args.doses:
            mixed.append(mixed_doses(content, style, vgg, StyleConfig(**{**vars(cfg), "optimizer": optimizers[-1]}),
                                     args, device, batch))  # fmt: skip

    print()
    print(
        f"{'size':>9}  {'method':30s} {'pairs':>5} {'evals/pair/step':>15} {'pairs/hour':>11} {'peak GiB':>8} "
        f"{'of floor':>8} {'stopped':>7} {'mean final loss':>15} {'tutorial pairs':>14} {'evals to tut. loss':>18}"
    )
    for sec in sections:
        for r in sec["rows"]:
            gib = f"{r['peak_gib']:8.2f}" if r["peak_gib"] is not None else f"{'-':>8}"
            reach = r["evals_to_tutorial_loss"]
            reach_text = f"{reach:18.0f}" if reach is not None else f"{'not reached':>18}"
            stopped = f"{r['stopped_early']:7d}" if r["stopped_early"] is not None else f"{'-':>7}"
            print(
                f"{sec['size']:>9}  {r['method']:30s} {r['pairs']:5d} {r['evals_per_pair_per_step']:15.3f} "
                f"{r['pairs_per_hour']:11.1f} {gib} {r['floor_fraction']:8.2%} {stopped} {r['mean_final_loss']:15.6g} "
                f"{r['loss_on_tutorial_pairs']:14.6g} {reach_text}"
            )
    for m in mixed:
        print(
            f"{m['size']:>9}  mixed doses {m['doses']} ({m['optimizer']}): one optimisation per device batch "
            f"{m['mixed_pairs_per_hour']:.1f} pairs/h, split by dose {m['split_pairs_per_hour']:.1f} pairs/h, "
            f"{m['speedup']:.2f}x (final loss ratio mixed/split {m['loss_ratio']:.3f})"
        )
    if args.json:
        figures = {
            "device": name,
            "precision": precision,
            "peak_tflops": ceiling.flops / 1e12,
            "peak_source": ceiling.source,
            "steps": args.steps,
            "weights": weights,
            "sizes": [summary(sec) for sec in sections],
            "mixed_doses": mixed,
        }
        args.json.write_text(json.dumps(figures, indent=1))


def summary(sec: dict) -> dict:
    """A size's rows with the headline figures of the last optimiser (the new one) and of today's (lbfgs)."""
    tutorial, rows = sec["rows"][0], sec["rows"][1:]
    new = rows[-1]
    old = next((r for r in rows if r["optimizer"] == "lbfgs"), rows[0])
    return {
        "size": sec["size"],
        "batch": sec["batch"],
        "rows": sec["rows"],
        "tutorial_pairs_per_hour": tutorial["pairs_per_hour"],
        "atelier_optimizer": new["optimizer"],
        "atelier_pairs_per_hour": new["pairs_per_hour"],
        "atelier_evals_per_pair_per_step": new["evals_per_pair_per_step"],
        "atelier_floor_fraction": new["floor_fraction"],
        "atelier_stopped_early": new["stopped_early"],
        "atelier_peak_gib": new["peak_gib"],
        "speedup_over_tutorial": new["pairs_per_hour"] / tutorial["pairs_per_hour"],
        "speedup_over_lbfgs": new["pairs_per_hour"] / old["pairs_per_hour"],
        "loss_ratio_atelier_over_tutorial": new["loss_on_tutorial_pairs"] / tutorial["loss_on_tutorial_pairs"],
        "evals_to_tutorial_loss_new_over_lbfgs": (
            new["evals_to_tutorial_loss"] / old["evals_to_tutorial_loss"]
            if new["evals_to_tutorial_loss"] and old["evals_to_tutorial_loss"]
            else None
        ),
    }


def mixed_doses(content, style, vgg, cfg, args, device, batch: int) -> dict:
    """A device batch whose pairs carry different betas: one optimisation, against one per beta."""
    doses = [float(d) for d in args.doses.split(",")]
    betas = torch.tensor([doses[i % len(doses)] for i in range(len(content))])
    out = {"size": f"{content.shape[3]}x{content.shape[2]}", "doses": args.doses, "optimizer": cfg.optimizer}
    for label, fn in (("mixed", run_atelier), ("split", run_split_by_beta)):
        sync(device)
        t0 = time.perf_counter()
        images, _ = fn(content, style, vgg, cfg, batch, betas)
        sync(device)
        out[f"{label}_pairs_per_hour"] = len(content) / (time.perf_counter() - t0) * 3600
        out[f"{label}_loss"] = final_losses(images, content, style, vgg, cfg, batch, betas).mean().item()
    out["speedup"] = out["mixed_pairs_per_hour"] / out["split_pairs_per_hour"]
    out["loss_ratio"] = out["mixed_loss"] / out["split_loss"]
    return out


if __name__ == "__main__":
    try:
        main()
    except peak.PeakExceeded as err:  # no figure rather than one that cannot be
        sys.exit(f"bench.stylize: {err}")
