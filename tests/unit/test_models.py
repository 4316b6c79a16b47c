"""Every backbone x head x mode trains on synthetic paintings (tiny, CPU, random init)."""

import numpy as np
import pytest
import torch

from worker.ml.errors import ConfigError
from worker.ml.imageio import decode_all
from worker.ml.models import ARCHS, HEADS, MIN_SIZE, ModelConfig, build_head, build_model, feature_shape, set_mode
from worker.ml.synth import write_synthetic
from worker.ml.train import Split, TrainConfig, fit
from worker.ml.weights import load_backbone_weights

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def paintings(tmp_path_factory):
    root = tmp_path_factory.mktemp("paint")
    names = write_synthetic(root, artists=3, per_artist=4, seed=0, size=40)
    paths = [f"{n}/{f.name}" for n in names for f in sorted((root / n).iterdir())]
    labels = torch.tensor([i for i, n in enumerate(names) for _ in range(4)])
    return {size: Split(torch.from_numpy(decode_all(root, paths, size)), labels) for size in (32, 75)}


def size_for(arch):
    return 75 if MIN_SIZE[arch] > 32 else 32


COMBOS = [(a, h, m) for a in ARCHS for h in HEADS for m in ("feature-extract", "fine-tune", "staged")
          if not (a == "logistic" and h != "linear")]


@pytest.mark.parametrize("arch,head,mode", COMBOS)
def test_every_combination_trains(paintings, arch, head, mode):
    size = size_for(arch)
    extra = dict(head_epochs=1, finetune_epochs=1) if mode == "staged" else {}
    cfg = TrainConfig(arch=arch, num_classes=3, epochs=1, batch_size=6, lr=1e-3, image_size=size, mode=mode,
                      head=head, dense=(16,) if head == "spp" else (), augment="crop-flip", **extra)
    data = paintings[size]
    model, result = fit(cfg, data, data, device=CPU)
    assert result.epochs_run == cfg.total_epochs
    assert np.isfinite(result.history[-1].train_loss)
    model.eval()
    assert model(data.images[:2].float()).shape == (2, 3)


def test_inception_returns_aux_logits_in_training():
    model = build_model(ModelConfig("inception_v3", 4, image_size=75))
    model.train()
    logits, aux = model(torch.randn(2, 3, 299, 299))
    assert logits.shape == aux.shape == (2, 4)
    model.eval()
    assert model(torch.randn(2, 3, 75, 75)).shape == (2, 4)


@pytest.mark.parametrize("cfg,match", [
    (ModelConfig("logistic", 3, head="spp", image_size=32), "spatial maps"),
    (ModelConfig("logistic", 3, head="gap", image_size=32), "spatial maps"),
    (ModelConfig("resnet9", 3), "unknown arch"),
    (ModelConfig("resnet18", 3, head="max"), "unknown head"),
    (ModelConfig("resnet18", 3, dense=(0,)), "positive"),
    (ModelConfig("inception_v3", 3, image_size=64), "at least 75"),
])
def test_bad_configurations(cfg, match):
    with pytest.raises(ConfigError, match=match):
        cfg.validate()


def test_feature_extract_freezes_backbone_and_its_batchnorm():
    model = build_model(ModelConfig("resnet18", 3, image_size=32))
    set_mode(model, "feature-extract")
    model.train()
    bn = model.backbone[1]
    assert not bn.training and all(not p.requires_grad for p in model.backbone.parameters())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 0])).backward()
    opt.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("head.") for k in changed)


def test_head_alone_on_feature_shape():
    cfg = ModelConfig("resnet50", 5, head="spp", dense=(32, 16), image_size=64)
    shape = feature_shape(cfg)
    assert shape == (2048, 2, 2)
    head = build_head(cfg, shape).eval()
    assert head(torch.randn(3, *shape)).shape == (3, 5)


def test_weights_from_a_local_file_and_missing_imagenet(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    src = build_model(ModelConfig("resnet18", 3, image_size=32))
    save_file({f"backbone.{k}": v.contiguous() for k, v in src.backbone.state_dict().items()}, str(tmp_path / "w.safetensors"))
    dst = build_model(ModelConfig("resnet18", 3, image_size=32))
    assert load_backbone_weights(dst, "resnet18", str(tmp_path / "w.safetensors")).startswith("file:")
    assert all(torch.equal(a, b) for a, b in zip(src.backbone.state_dict().values(), dst.backbone.state_dict().values()))
    torch.hub.set_dir(str(tmp_path / "hub"))
    with pytest.raises(ConfigError, match=r"put resnet18-.*\.pth in .*hub/checkpoints"):
        build_model(ModelConfig("resnet18", 3, image_size=32, weights="imagenet"))
    with pytest.raises(ConfigError, match="not found"):
        build_model(ModelConfig("resnet18", 3, image_size=32, weights=str(tmp_path / "nope.safetensors")))
