"""Training throughput: atelier's uint8 GPU cache against the usual DataLoader pipeline.

On the same JPEG images, one run measures images/s of a fine-tuning epoch for
  - atelier: images decoded once into a uint8 cache on the GPU, augmented there
    (worker.ml.train.train_one_epoch, the code the workers run);
  - torchvision ImageFolder + PIL transforms + DataLoader with 4 and 16 workers;
  - the model-only ceiling: random tensors already on the GPU;
for ResNet18 and ResNet50 at 224 px, and prints the ratios.

    python -m bench.train_throughput --images 2000            # on a GPU box
    python -m bench.train_throughput --images 64 --size 64 --arches resnet18 --workers 2 --batch 16  # smoke test
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core.config import ModelConfig, TrainConfig
from corpus.imageio import decode_all
from corpus.synth import make_artists, paint
from worker.ml.augment import make_augment
from worker.ml.models import build_model, build_optimizer
from worker.ml.train import Split, train_one_epoch


def _paint_one(args: tuple[int, int, int, str]) -> str:
    i, n_artists, long_side, out = args
    artist = make_artists(n_artists, 0)[i % n_artists]
    path = Path(out) / artist.name / f"{i:05d}.jpg"
    paint(artist, np.random.default_rng(i), long_side).save(path, quality=90)
    return f"{artist.name}/{path.name}"


def make_jpegs(root: Path, n: int, artists: int, long_side: int) -> list[str]:
    """Synthetic paintings as JPEGs of a museum-scan-like size (the reports' average is ~510x563)."""
    for a in make_artists(artists, 0):
        (root / a.name).mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor() as pool:
        return list(pool.map(_paint_one, [(i, artists, long_side, str(root)) for i in range(n)], chunksize=32))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def step(model, optimizer, x, y, device) -> None:
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        loss = F.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def fresh_model(arch: str, classes: int, size: int, device):
    model = build_model(ModelConfig(arch, classes, image_size=size)).to(device).to(memory_format=torch.channels_last)
    return model, build_optimizer("adam", model.parameters(), 1e-4)


def bench_atelier(arch, root, paths, labels, args, device) -> tuple[float, float]:
    t0 = time.perf_counter()
    cache = torch.from_numpy(decode_all(root, paths, args.size))  # once per (dataset, size), shared by all runs
    cache_s = time.perf_counter() - t0
    split = Split(cache.to(device), torch.tensor(labels))
    cfg = TrainConfig(
        arch=arch, num_classes=args.artists, batch_size=args.batch, image_size=args.size, augment="crop-flip"
    )
    model, opt = fresh_model(arch, args.artists, args.size, device)
    aug = make_augment("crop-flip", args.size, train=True)
    g = torch.Generator().manual_seed(0)
    train_one_epoch(model, opt, split, aug, cfg, device, g)  # warm-up: cuDNN autotune, allocator
    sync(device)
    t0 = time.perf_counter()
    for _ in range(args.epochs):
        train_one_epoch(model, opt, split, aug, cfg, device, g)
    sync(device)
    return args.epochs * len(paths) / (time.perf_counter() - t0), cache_s


def bench_dataloader(arch, root, args, workers, device) -> float:
    from torchvision import datasets, transforms

    tf = transforms.Compose(
        [
            transforms.RandomResizedCrop(args.size),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    loader = torch.utils.data.DataLoader(
        datasets.ImageFolder(str(root), tf),
        batch_size=args.batch,
        shuffle=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=True,
        drop_last=True,
    )
    model, opt = fresh_model(arch, args.artists, args.size, device)
    model.train()

    def epoch() -> int:
        n = 0
        for x, y in loader:
            step(model, opt, x.to(device, non_blocking=True), y.to(device, non_blocking=True), device)
            n += len(y)
        return n

    epoch()  # warm-up (worker start-up, page cache)
    sync(device)
    t0 = time.perf_counter()
    seen = sum(epoch() for _ in range(args.epochs))
    sync(device)
    return seen / (time.perf_counter() - t0)


def bench_ceiling(arch, n, args, device) -> float:
    model, opt = fresh_model(arch, args.artists, args.size, device)
    model.train()
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, args.artists, (args.batch,), device=device)
    steps = max(1, n // args.batch)
    for _ in range(3):
        step(model, opt, x, y, device)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps * args.epochs):
        step(model, opt, x, y, device)
    sync(device)
    return steps * args.epochs * args.batch / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--artists", type=int, default=10)
    p.add_argument("--long-side", type=int, default=560, help="JPEG long side in pixels")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--epochs", type=int, default=2, help="timed epochs per pipeline (after one warm-up)")
    p.add_argument("--arches", default="resnet18,resnet50")
    p.add_argument("--workers", default="4,16", help="DataLoader worker counts to compare")
    p.add_argument("--data", type=Path, default=None, help="reuse a folder of JPEGs")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True

    root = args.data or Path(tempfile.mkdtemp(prefix="atelier-bench-"))
    t0 = time.perf_counter()
    paths = make_jpegs(root, args.images, args.artists, args.long_side) if not args.data else None
    if paths is None:
        paths = sorted(f.relative_to(root).as_posix() for f in root.rglob("*.jpg"))
    names = sorted({pth.split("/")[0] for pth in paths})
    labels = [names.index(pth.split("/")[0]) for pth in paths]
    print(
        f"device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}; {len(paths)} JPEGs "
        f"(long side {args.long_side}) made in {time.perf_counter() - t0:.1f}s; batch {args.batch}, {args.size}px"
    )

    rows = []
    for arch in args.arches.split(","):
        ours, cache_s = bench_atelier(arch, root, paths, labels, args, device)
        loaders = {w: bench_dataloader(arch, root, args, int(w), device) for w in args.workers.split(",")}
        ceiling = bench_ceiling(arch, len(paths), args, device)
        best = max(loaders.values())
        rows.append((arch, ours, loaders, ceiling, cache_s))
        print(f"\n{arch} fine-tune, images/s (training included):")
        print(f"  atelier uint8 GPU cache   {ours:9.0f}   (cache built once in {cache_s:.1f}s)")
        for w, v in loaders.items():
            print(f"  DataLoader {w:>2} workers      {v:9.0f}")
        print(f"  model-only ceiling        {ceiling:9.0f}")
        print(f"  ratio atelier / best DataLoader: {ours / best:.2f}x   atelier / ceiling: {ours / ceiling:.0%}")
    if args.json:
        figures = [
            {"arch": arch, "atelier_images_per_s": ours, "dataloader_images_per_s": loaders,
             "ceiling_images_per_s": ceiling, "over_best_dataloader": ours / max(loaders.values()),
             "of_ceiling": ours / ceiling, "cache_build_s": cache_s}
            for arch, ours, loaders, ceiling, cache_s in rows
        ]  # fmt: skip
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
