"""Every backbone x head x mode trains through the real loop on synthetic paintings (tiny, CPU)."""

import numpy as np
import pytest
import torch

from core.config import ARCHS, HEADS, MIN_IMAGE_SIZE, TrainConfig
from corpus.imageio import decode_all
from corpus.synth import write_synthetic
from worker.ml.train import Split, fit

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def paintings(tmp_path_factory):
    root = tmp_path_factory.mktemp("paint")
    write_synthetic(root, artists=3, per_artist=4, seed=0, size=40)
    names = sorted(p.name for p in root.iterdir() if p.is_dir())
    paths = [f"{n}/{f.name}" for n in names for f in sorted((root / n).iterdir())]
    labels = torch.tensor([names.index(p.split("/")[0]) for p in paths])
    return {size: Split(torch.from_numpy(decode_all(root, paths, size)), labels) for size in (32, 75)}


COMBOS = [
    (a, h, m)
    for a in ARCHS
    for h in HEADS
    for m in ("feature-extract", "fine-tune", "staged")
    if not (a == "logistic" and h != "linear")
]


@pytest.mark.parametrize("arch,head,mode", COMBOS)
def test_every_combination_trains(paintings, arch, head, mode):
    size = 32 if MIN_IMAGE_SIZE[arch] <= 32 else 75
    extra = dict(head_epochs=1, finetune_epochs=1) if mode == "staged" else {}
    cfg = TrainConfig(
        arch=arch,
        num_classes=3,
        epochs=1,
        batch_size=6,
        lr=1e-3,
        image_size=size,
        mode=mode,
        head=head,
        dense=(16,) if head == "spp" else (),
        augment="crop-flip",
        **extra,
    )
    data = paintings[size]
    model, result = fit(cfg, data, data, device=CPU)
    assert result.epochs_run == cfg.total_epochs
    assert np.isfinite(result.history[-1].train_loss)
    model.eval()
    assert model(data.images[:2].float()).shape == (2, 3)
