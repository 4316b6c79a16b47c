"""Does bf16 give the study's answers? The same real pairs stylized in fp32 and in bf16, each picture named.

`bench/gpu.sh` compared bf16 with fp32 only by loss: the genuine VGG19 file is larger than a device run can
carry. ``pack`` writes, here, one folder that fits in the 64 MiB a run carries: VGG19's convolutions up to
relu5_1 in fp16 (26 MB), a set of real paintings, and a small classifier that names their artists (a
logistic-regression head on the average-pooled relu3_1, relu4_1 and relu5_1 activations of that same VGG19,
trained here on the packed paintings; 8 artists x 1280 weights). ``run`` (the default, on the device) stylizes
cross-artist pairs at each dose with the study's defaults (noise init, normalised VGG19): in fp32 with the
reference optimiser (``lbfgs``, the CPU path's), under bf16 autocast with each ``--optimizer`` candidate, and
in fp32 from another white-noise start. It names every picture,
after 8-bit rounding as the study stores it, with the packed classifier in fp32, and reports how often bf16
names the artist fp32 names, beside how often fp32 agrees with itself from another start (the floor: what
the start alone decides), and among the decisive answers (top-2 margin >= analysis.NEAR_TIE in both).
bf16 holds when it agrees at least as often as the floor and on every decisive answer. Each run's
evaluations per pair per step and the pairs its optimiser stopped early are beside it.

    python -m bench.answers pack --weights /work/weights/vgg19-imagenet-features.safetensors \\
        --paintings ../shared/realdata/paintings --out out/answers         # here: the folder to carry
    python -m bench.answers run --pack out/answers --json answers.json     # on the device (bench/gpu.sh does it)
    python -m bench.answers run --synthetic --pairs 2 --size 32 --steps 3  # CPU smoke: random VGG, synthetic art

On a CPU the bf16 run is fp32 unless --cpu-bf16 (CPU bf16 autocast, bench/stylize.py's stand-in).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from core.config import STYLE_OPTIMIZERS, StyleConfig
from corpus.imageio import open_rgb
from corpus.synth import make_artists, paint
from worker.ml.style import (
    build_vgg,
    device_batch_for,
    from_pil,
    mean_activation_scales,
    resize_long_side,
    stylize_batch,
    to_pil,
)

VGG_FILE = "vgg19-relu5_1-fp16.safetensors"
HEAD_FILE = "head.safetensors"
HEAD_LAYERS = ("relu3_1", "relu4_1", "relu5_1")  # 256 + 512 + 512 pooled channels
CARRY_LIMIT = 60 * 2**20  # the device run carries 64 MiB with the checkout (~4 MB)
SUFFIXES = (".jpg", ".jpeg", ".png")
# analysis.NEAR_TIE, the study's own threshold (tests/unit/bench checks they agree): not imported, because the
# analysis package reads the store (SQLAlchemy), which a device's Python may lack.
NEAR_TIE = 0.1


@torch.no_grad()
def pooled(vgg, images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 1280): each head layer's channels averaged over positions, fp32."""
    feats = vgg(images)
    return torch.cat([feats[n].float().mean((2, 3)) for n in HEAD_LAYERS], 1)


def train_head(x: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> dict:
    """A multinomial logistic regression on standardised features, L2-penalised (96 paintings, 1280 features)."""
    mean, std = x.mean(0), x.std(0).clamp(min=1e-6)
    z = (x - mean) / std
    w = torch.zeros(len(classes), z.shape[1], requires_grad=True)
    b = torch.zeros(len(classes), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z @ w.T + b, labels) + 1e-3 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return {"mean": mean, "std": std, "weight": w.detach(), "bias": b.detach()}


def probabilities(head: dict, feats: torch.Tensor) -> torch.Tensor:
    z = (feats.cpu() - head["mean"]) / head["std"]
    return torch.softmax(z @ head["weight"].T + head["bias"], 1)


def _paintings(paintings: Path | None, per_artist: int, size: int) -> dict[str, list[tuple[str, object]]]:
    """{artist: [(file name, PIL image)]}: the first ``per_artist`` of each folder, or synthetic art."""
    if paintings is None:
        rng = np.random.default_rng(0)
        return {
            a.name: [(f"{a.name}_{i}.png", paint(a, rng, size)) for i in range(per_artist)] for a in make_artists(3, 0)
        }
    if not paintings.is_dir():
        raise SystemExit(f"--paintings {paintings}: not a folder of artist folders")
    out = {}
    for folder in sorted(p for p in paintings.iterdir() if p.is_dir()):
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in SUFFIXES)[:per_artist]
        if files:
            out[folder.name] = [(f.name, open_rgb(f)) for f in files]
    if len(out) < 2:
        raise SystemExit(f"--paintings {paintings}: fewer than 2 artist folders with images")
    return out


def pack(out: Path, weights: Path | None, paintings: Path | None, per_artist: int, size: int) -> dict:
    """Write the folder a device run carries; returns its manifest. Random VGG and synthetic art if None."""
    torch.manual_seed(0)  # random weights (smoke only) are drawn from seed 0
    vgg = build_vgg("vgg19", weights)
    out.mkdir(parents=True, exist_ok=True)
    state = {f"features.{k}": v.half().contiguous() for k, v in vgg.body.state_dict().items()}
    save_file(state, str(out / VGG_FILE), {"source": str(weights or "random init, seed 0"), "dtype": "fp16"})
    vgg = build_vgg("vgg19", out / VGG_FILE)  # the head is trained on the network the device loads
    art = _paintings(paintings, per_artist, size)
    classes = sorted(art)
    images, labels = [], []
    for k, artist in enumerate(classes):
        (out / "paintings" / artist).mkdir(parents=True, exist_ok=True)
        for name, picture in art[artist]:
            if paintings is not None:
                shutil.copyfile(paintings / artist / name, out / "paintings" / artist / name)  # the bytes as found
            else:
                picture.save(out / "paintings" / artist / name)
            images.append(from_pil(resize_long_side(picture, size).resize((size, size))))
            labels.append(k)
    feats = torch.cat([pooled(vgg, torch.stack(images[i : i + 8])) for i in range(0, len(images), 8)])
    head = train_head(feats, torch.tensor(labels), classes)
    save_file(head, str(out / HEAD_FILE), {"classes": json.dumps(classes), "layers": json.dumps(HEAD_LAYERS)})
    accuracy = float((probabilities(head, feats).argmax(1) == torch.tensor(labels)).float().mean())
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "manifest.json")
    total = sum(p.stat().st_size for p in files)
    if total > CARRY_LIMIT:
        raise SystemExit(f"{out}: {total / 2**20:.1f} MiB, over the {CARRY_LIMIT / 2**20:.0f} MiB a run carries")
    manifest = {"classes": classes, "images": len(images), "head_size": size, "head_train_accuracy": accuracy,
                "mib": round(total / 2**20, 2), "weights": str(weights or "random"),
                "sha256": {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}}  # fmt: skip
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def choose_pairs(classes: list[str], by_artist: dict[str, list], n: int) -> list[tuple[int, int]]:
    """n cross-artist (content, style) pairs of packed pictures, style artists in turn, each image in turn."""
    k, pairs = len(classes), []
    for i in range(n):
        style_artist = classes[i % k]
        content_artist = classes[(i % k + 1 + (i // k) % (k - 1)) % k]  # never the style artist
        c_list, s_list = by_artist[content_artist], by_artist[style_artist]
        pairs.append((c_list[(i // k) % len(c_list)], s_list[(i // k) % len(s_list)]))
    return pairs


def _stylize_all(content, style, cfg, vgg, doses, batch: int, precision: str, seeds: list[int]):
    """Every pair at its dose in device batches: (images, evaluations per pair per step, {why a pair stopped early:
    how many})."""
    images, evals, stopped = [], 0, {}
    for start in range(0, len(content), batch):
        part = slice(start, start + batch)
        r = stylize_batch(content[part], style[part], cfg, vgg, pair_seeds=seeds[part], doses=doses[part],
                          precision=precision)  # fmt: skip
        images.append(r.images)
        evals += (r.evaluations - 1) * len(r.images)
        for done, why in zip(r.steps_done.tolist(), r.stop_reason):
            if done < cfg.steps:
                stopped[why] = stopped.get(why, 0) + 1
    return torch.cat(images), evals / len(content) / cfg.steps, stopped


def _named(head_vgg, head, images: torch.Tensor, classes: list[str]) -> tuple[list[str], torch.Tensor]:
    """Each picture's answer and top-2 margin, read after 8-bit rounding (the stored PNG's pixels)."""
    device = next(head_vgg.parameters()).device
    rounded = torch.stack([from_pil(to_pil(x)) for x in images])
    probs = torch.cat(
        [probabilities(head, pooled(head_vgg, rounded[i : i + 16].to(device))) for i in range(0, len(rounded), 16)]
    )
    top2 = probs.topk(2, 1).values
    return [classes[i] for i in probs.argmax(1).tolist()], top2[:, 0] - top2[:, 1]


def agreement(a: list[str], b: list[str], decisive: torch.Tensor) -> dict:
    same = torch.tensor([x == y for x, y in zip(a, b)])
    return {"same": int(same.sum()), "of": len(a), "share": float(same.float().mean()),
            "decisive_same": int(same[decisive].sum()), "decisive": int(decisive.sum())}  # fmt: skip


def load_pack(pack_dir: Path, size: int):
    """(classes, {artist: [picture index]}, pictures (N, 3, size, size), head) from a packed folder."""
    missing = [f for f in (VGG_FILE, HEAD_FILE, "paintings") if not (pack_dir / f).exists()]
    if missing:
        raise SystemExit(f"--pack {pack_dir}: no {missing[0]}; write it with `python -m bench.answers pack`")
    head = load_file(str(pack_dir / HEAD_FILE))
    with safe_open(str(pack_dir / HEAD_FILE), "pt") as f:
        classes = json.loads(f.metadata()["classes"])
    pictures, by_artist = [], {}
    for artist in classes:
        for p in sorted((pack_dir / "paintings" / artist).iterdir()):
            by_artist.setdefault(artist, []).append(len(pictures))
            pictures.append(from_pil(resize_long_side(open_rgb(p), size).resize((size, size))))
    return classes, by_artist, torch.stack(pictures), head


def run(args) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.cpu_bf16:
        from bench.stylize import use_cpu_bf16

        use_cpu_bf16()
    classes, by_artist, pictures, head = load_pack(args.pack, args.size)
    head_vgg = build_vgg("vgg19", args.pack / VGG_FILE, device)  # the classifier's backbone, unnormalised, fp32
    vgg = build_vgg("vgg19", args.pack / VGG_FILE, device)
    norm = torch.Generator().manual_seed(0)
    sample = torch.randperm(len(pictures), generator=norm)[:64]
    vgg.rescale(mean_activation_scales(vgg, [pictures[i] for i in sample]))  # the study's normalised VGG19
    doses = [float(d) for d in args.doses.split(",")]
    pairs = [(c, s, d) for c, s in choose_pairs(classes, by_artist, args.pairs) for d in doses]
    content = torch.stack([pictures[c] for c, _, _ in pairs])
    style = torch.stack([pictures[s] for _, s, _ in pairs])
    dose = torch.tensor([d for _, _, d in pairs])
    seeds = [c * 1000 + s for c, s, _ in pairs]
    if args.batch:
        batch = args.batch
    elif device.type == "cuda":
        batch = device_batch_for(torch.cuda.mem_get_info(device)[0], args.size, args.size, "vgg19", 10)
    else:
        batch = 4
    figures = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "size": args.size,
               "steps": args.steps, "optimizer": args.optimizer, "doses": doses, "stylizations": len(pairs),
               "batch": batch, "classes": classes, "near_tie": NEAR_TIE}  # fmt: skip
    candidates = args.optimizer.split(",")
    figures["reference_optimizer"], figures["candidates"] = args.reference_optimizer, candidates
    # fp32 first (the reference), the first bf16 candidate, fp32 from another start (the floor), then the other
    # candidates: a run cut short still leaves a verdict on the first candidate in the JSON.
    bf16 = [(f"bf16 {o}", o, "bf16", 0) for o in candidates]
    runs = [("fp32", args.reference_optimizer, "fp32", 0), bf16[0],
            ("fp32_other_start", args.reference_optimizer, "fp32", 1), *bf16[1:]]  # fmt: skip
    answers, margins = {}, {}
    for name, optimizer, precision, seed in runs:
        cfg = StyleConfig(steps=args.steps, size=args.size, optimizer=optimizer, seed=seed)
        t0 = time.perf_counter()
        images, per_step, stopped = _stylize_all(content, style, cfg, vgg, dose, batch, precision, seeds)
        answers[name], margins[name] = _named(head_vgg, head, images, classes)
        figures[name] = {"optimizer": optimizer, "precision": precision, "seed": seed,
                         "seconds": round(time.perf_counter() - t0, 2), "evals_per_pair_per_step": per_step,
                         "stopped_early": stopped, "answers": answers[name],
                         "margins": [round(m, 4) for m in margins[name].tolist()]}  # fmt: skip
        print(f"{name} ({optimizer}): {figures[name]['seconds']} s, {per_step:.3f} evaluations per pair per step, "
              f"stopped early: {stopped or 'none'}", flush=True)  # fmt: skip
        for other in answers:
            if other.startswith("bf16"):
                decisive = (margins["fp32"] >= NEAR_TIE) & (margins[other] >= NEAR_TIE)
                figures[other]["vs_fp32"] = agreement(answers[other], answers["fp32"], decisive)
        if "fp32_other_start" in answers:
            floor_decisive = (margins["fp32"] >= NEAR_TIE) & (margins["fp32_other_start"] >= NEAR_TIE)
            floor = agreement(answers["fp32_other_start"], answers["fp32"], floor_decisive)
            figures["fp32_vs_other_start"] = floor
            for other in (n for n in answers if n.startswith("bf16")):
                b = figures[other]["vs_fp32"]
                figures[other]["holds"] = b["same"] >= floor["same"] and b["decisive_same"] == b["decisive"]
        if args.json:
            args.json.write_text(json.dumps(figures, indent=1))
    return figures


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command")
    pk = sub.add_parser("pack", help="write the folder a device run carries")
    pk.add_argument("--weights", type=Path, required=True, help="a torchvision-named VGG19 features file")
    pk.add_argument("--paintings", type=Path, required=True, help="one folder of images per artist")
    pk.add_argument("--out", type=Path, default=Path("out/answers"))
    pk.add_argument("--per-artist", type=int, default=12)
    pk.add_argument("--size", type=int, default=256, help="the long side the classifier is trained at")
    rn = sub.add_parser("run", help="stylize in fp32 and bf16 and compare the answers (the default)")
    rn.add_argument("--pack", type=Path, default=Path("out/answers"))
    rn.add_argument("--synthetic", action="store_true", help="pack random weights and synthetic art first (smoke)")
    rn.add_argument("--pairs", type=int, default=16)
    rn.add_argument("--doses", default="1,10")
    rn.add_argument("--size", type=int, default=256)
    rn.add_argument("--steps", type=int, default=300)
    rn.add_argument(
        "--optimizer",
        default=StyleConfig.optimizer,
        help="the bf16 run's optimiser [default: the study's]; a comma list runs each in turn",
    )
    rn.add_argument(
        "--reference-optimizer",
        default="lbfgs",
        choices=STYLE_OPTIMIZERS,
        help="the fp32 runs' optimiser (the CPU path's, the study's)",
    )
    rn.add_argument("--batch", type=int, default=0, help="pairs per device batch; 0: from free memory (CUDA), 4")
    rn.add_argument("--cpu-bf16", action="store_true", help="the bf16 run under CPU bf16 autocast")
    rn.add_argument("--json", type=Path, default=None)
    argv = sys.argv[1:]
    if not argv or argv[0] not in ("pack", "run", "-h", "--help"):
        argv = ["run", *argv]  # run is the default: gpu.py calls the module with run's options only
    args = p.parse_args(argv)
    if args.command == "pack":
        manifest = pack(args.out, args.weights, args.paintings, args.per_artist, args.size)
        print(f"{args.out}: {manifest['mib']} MiB, {manifest['images']} paintings of {len(manifest['classes'])} "
              f"artists; the head names {manifest['head_train_accuracy']:.0%} of them right")  # fmt: skip
        return
    unknown = [o for o in args.optimizer.split(",") if o not in STYLE_OPTIMIZERS]
    if unknown:
        p.error(f"--optimizer {unknown[0]!r}: choose from {', '.join(STYLE_OPTIMIZERS)}")
    with tempfile.TemporaryDirectory(prefix="atelier-answers-") as tmp:
        if args.synthetic:
            args.pack = Path(tmp)
            pack(args.pack, None, None, 3, args.size)
        figures = run(args)
    f = figures["fp32_vs_other_start"]
    for name in (n for n in figures if n.startswith("bf16 ")):
        b = figures[name]["vs_fp32"]
        print(f"{name} names fp32's artist on {b['same']} of {b['of']} ({b['decisive_same']} of {b['decisive']} "
              f"decisive); fp32 from another start on {f['same']} of {f['of']}: "
              f"{'holds' if figures[name]['holds'] else 'MISSED'}")  # fmt: skip


if __name__ == "__main__":
    main()
