"""The weights registry on a real SQLite store: resolving --weights at submit time, importing files strictly,
and the worker's sha256 check. Tiny tensors built here (AlexNet's features, a ResNet18); no network."""

import hashlib
import os
import urllib.error

import pytest
import torch
import torchvision.models as tvm
from safetensors.torch import load_file, save_file
from sqlalchemy import func, select

from core import weights as weights_store
from core.config import IMAGENET_ARCHS, VGG_NAMES
from core.errors import ConfigError
from core.weights import RANDOM_RECORD, WeightsRecord
from db import weights as registry
from db.engine import make_engine, make_sessionmaker
from db.migrate import upgrade
from db.models import Weights
from worker.ml.backbones import _alexnet_features, build_backbone
from worker.ml.models import build_model
from worker.ml.weights import Template
from worker.weights_store import import_file, local_file, resolve


@pytest.fixture
def store(tmp_path, monkeypatch):
    """(sessions, artifacts root) of a fresh store; the torch cache is an empty folder of its own."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    upgrade(engine)
    yield make_sessionmaker(engine), tmp_path / "artifacts"
    engine.dispose()


def alexnet_features_file(path, seed=0):
    """A features-only AlexNet file, as the real ImageNet ones are: only ``features.*`` keys."""
    torch.manual_seed(seed)
    save_file({f"features.{k}": v.contiguous() for k, v in _alexnet_features().state_dict().items()}, str(path))
    return path


def test_imagenet_files_are_torchvisions_and_the_hub_dir_is_torchs(monkeypatch, tmp_path):
    for arch in (*IMAGENET_ARCHS, *VGG_NAMES):
        url = tvm.get_model_weights(arch)["IMAGENET1K_V1"].url
        assert weights_store.IMAGENET_URL + weights_store.IMAGENET_FILES[arch] == url
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert weights_store.torch_hub_dir() == tmp_path / "th" / "hub"
    monkeypatch.delenv("TORCH_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert str(weights_store.torch_hub_dir()) == os.path.join(torch.hub._get_torch_home(), "hub")


def test_records_round_trip_and_random_is_the_only_record_without_a_file():
    assert WeightsRecord.from_json(None) == RANDOM_RECORD and RANDOM_RECORD.is_random
    rec = WeightsRecord("imagenet", "a" * 64, "weights/vgg16/x.safetensors")
    assert WeightsRecord.from_json(rec.to_json()) == rec and not rec.is_random
    assert rec.label() == "imagenet (sha256 aaaaaaaaaaaa)" and RANDOM_RECORD.label() == "random"
    with pytest.raises(ConfigError, match="needs a sha256 and a path"):
        WeightsRecord.from_json({"name": "imagenet", "sha256": None, "path": None})
    with pytest.raises(ConfigError, match="names no file"):
        WeightsRecord.from_json({"name": "random", "sha256": "a" * 64, "path": "x"})
    assert weights_store.default_spec("resnet18") == "imagenet" and weights_store.default_spec("vgg19") == "imagenet"
    assert weights_store.default_spec("baseline-cnn") == "random"
    assert weights_store.warns_random("resnet18", "random") and weights_store.warns_random("vgg16", None)
    assert not weights_store.warns_random("baseline-cnn", "random") and not weights_store.warns_random(
        "resnet18", "imagenet"
    )


def test_templates_name_torchvisions_keys():
    vgg16 = Template("vgg16")
    assert set(vgg16.backbone) == set(build_backbone("vgg16").state_dict())  # classifier trunk == style VGG file
    assert {k.split(".")[0] for k in vgg16.head} == {"classifier"}
    assert "features.34.weight" in Template("vgg19").backbone
    inception = Template("inception_v3")
    assert "AuxLogits.conv0.conv.weight" in inception.aux and "AuxLogits.fc.weight" in inception.head
    assert "Mixed_7c.branch_pool.conv.weight" in inception.backbone and "fc.weight" in inception.head
    assert Template("baseline-cnn").head == {}


def test_a_features_only_file_imports_and_is_kept_under_the_artifacts_root(store, tmp_path):
    sessions, artifacts = store
    src = alexnet_features_file(tmp_path / "alexnet-features.safetensors")
    with sessions.begin() as s:
        rec = import_file(s, artifacts, src, "alexnet")
    assert rec.name == "imagenet" and rec.path == f"weights/alexnet/{rec.sha256}.safetensors"
    stored = artifacts / rec.path
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == rec.sha256
    assert load_file(str(stored)).keys() == load_file(str(src)).keys()
    with sessions() as s:
        (row,) = s.scalars(select(Weights)).all()
        assert (row.arch, row.name, row.features_only, row.source) == (
            "alexnet",
            "imagenet",
            True,
            f"imported from {src}",
        )

    # The same tensors again (from a .pth this time) are the same file: one row, whatever it is called now.
    torch.save(load_file(str(src)), tmp_path / "again.pth")
    with sessions.begin() as s:
        assert import_file(s, artifacts, tmp_path / "again.pth", "alexnet", "mine") == rec
        assert s.scalar(select(func.count()).select_from(Weights)) == 1
    with sessions.begin() as s:
        assert resolve(s, artifacts, "alexnet", "imagenet", offline=True) == rec
        listed = registry.listing(s, artifacts)
    assert [(r["arch"], r["name"], r["sha256"], r["present"]) for r in listed] == [
        ("alexnet", "imagenet", rec.sha256, True)
    ]


def test_a_file_of_another_architecture_is_refused_in_one_line(store, tmp_path):
    sessions, artifacts = store
    src = alexnet_features_file(tmp_path / "alexnet.safetensors")
    for arch, match in (
        ("vgg16", "does not fit vgg16: .* missing"),
        ("resnet18", "holds no resnet18 weights"),
        ("vgg19", "does not fit vgg19"),
    ):
        with sessions.begin() as s, pytest.raises(ConfigError, match=match) as err:
            import_file(s, artifacts, src, arch)
        assert "\n" not in str(err.value)
    state = load_file(str(src))
    save_file(
        {**state, "features.3.weight": state["features.3.weight"][:10].contiguous()},
        str(tmp_path / "shape.safetensors"),
    )
    save_file({**state, "extra.weight": torch.zeros(2)}, str(tmp_path / "extra.safetensors"))
    with sessions.begin() as s:
        with pytest.raises(
            ConfigError, match=r"'features.3.weight' has shape \(10, 64, 5, 5\), expected \(192, 64, 5, 5\)"
        ):
            import_file(s, artifacts, tmp_path / "shape.safetensors", "alexnet")
        with pytest.raises(ConfigError, match="1 tensors alexnet does not have, e.g. 'extra.weight'"):
            import_file(s, artifacts, tmp_path / "extra.safetensors", "alexnet")
        with pytest.raises(ConfigError, match="has no ImageNet weights"):
            import_file(s, artifacts, src, "baseline-cnn")
        with pytest.raises(ConfigError, match="must be 1-100 letters"):
            import_file(s, artifacts, src, "alexnet", name="../x")
        assert s.scalar(select(func.count()).select_from(Weights)) == 0
    assert not list(artifacts.rglob("*.safetensors"))


def test_a_full_torchvision_file_keeps_its_backbone_only_and_loads_into_the_model(store, tmp_path):
    sessions, artifacts = store
    torch.manual_seed(0)
    tv = tvm.resnet18(weights=None)
    torch.save(tv.state_dict(), tmp_path / "r18.pth")
    with sessions.begin() as s:
        rec = import_file(s, artifacts, tmp_path / "r18.pth", "resnet18", "tv")
        assert not s.scalar(select(Weights.features_only))
    kept = load_file(str(artifacts / rec.path))
    assert not any(k.startswith("fc.") for k in kept) and "layer4.1.conv2.weight" in kept
    model = build_model(weights_store_config("resnet18", "tv"), local_file(artifacts, rec))
    assert torch.equal(model.backbone.layer4[1].conv2.weight, tv.layer4[1].conv2.weight)

    # Our own checkpoint (backbone.* and head.* keys) imports too: the same backbone, so the same file.
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "ours.safetensors"))
    with sessions.begin() as s:
        assert import_file(s, artifacts, tmp_path / "ours.safetensors", "resnet18", "ours") == rec


def weights_store_config(arch, name):
    from core.config import ModelConfig

    return ModelConfig(arch, 3, image_size=32, weights=name)


def test_imagenet_offline_and_uncached_fails_with_one_line_naming_the_file(store):
    sessions, artifacts = store
    with sessions.begin() as s:
        assert resolve(s, artifacts, "resnet18", "random", offline=True) == RANDOM_RECORD
        with pytest.raises(ConfigError) as err:
            resolve(s, artifacts, "resnet18", "imagenet", offline=True)
        with pytest.raises(ConfigError, match="baseline-cnn has no ImageNet weights"):
            resolve(s, artifacts, "baseline-cnn", "imagenet", offline=True)
        with pytest.raises(ConfigError, match="no weights 'nope' for resnet18"):
            resolve(s, artifacts, "resnet18", "nope", offline=True)
    msg = str(err.value)
    assert (
        "\n" not in msg
        and "resnet18-f37072fd.pth" in msg
        and "atelier weights import resnet18-f37072fd.pth --arch resnet18" in msg
    )


def fake_torchvision_file(folder, monkeypatch, arch="alexnet", seed=0):
    """torchvision's layout for ``arch`` (random values), named by its own sha256 as torchvision names files."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = alexnet_features_file(folder / "tmp.safetensors", seed)
    torch.save(load_file(str(tmp)), folder / "tmp.pth")
    tmp.unlink()
    digest = hashlib.sha256((folder / "tmp.pth").read_bytes()).hexdigest()
    name = f"alexnet-owt-{digest[:8]}.pth"
    (folder / "tmp.pth").rename(folder / name)
    monkeypatch.setitem(weights_store.IMAGENET_FILES, arch, name)
    return folder / name


def test_imagenet_comes_from_the_torch_cache_once_then_from_the_record(store, monkeypatch):
    sessions, artifacts = store
    cached = fake_torchvision_file(weights_store.torch_hub_dir() / "checkpoints", monkeypatch)
    with sessions.begin() as s:
        rec = resolve(s, artifacts, "alexnet", "imagenet", offline=True)
        assert s.scalar(select(Weights.source)).startswith("torchvision IMAGENET1K_V1")
    cached.unlink()  # recorded under the artifacts root: the cache is not needed any more
    with sessions.begin() as s:
        assert resolve(s, artifacts, "alexnet", "imagenet", offline=True) == rec


def test_a_cached_file_that_is_not_torchvisions_is_refused(store, monkeypatch):
    sessions, artifacts = store
    cached = fake_torchvision_file(weights_store.torch_hub_dir() / "checkpoints", monkeypatch)
    cached.write_bytes(cached.read_bytes()[:-10])  # truncated
    with sessions.begin() as s, pytest.raises(ConfigError, match="is not torchvision's file"):
        resolve(s, artifacts, "alexnet", "imagenet", offline=True)


def test_online_it_is_torchvisions_download_and_a_failed_one_is_one_line(store, monkeypatch, tmp_path):
    sessions, artifacts = store
    source = fake_torchvision_file(tmp_path / "server", monkeypatch)
    calls = []

    def fake_download(url, model_dir, progress, check_hash, map_location, weights_only):
        calls.append((url, check_hash, weights_only))
        if len(calls) == 1:
            raise urllib.error.URLError("Temporary failure in name resolution")
        os.makedirs(model_dir, exist_ok=True)
        (weights_store.imagenet_cache_file("alexnet")).write_bytes(source.read_bytes())
        return {}

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    with (
        sessions.begin() as s,
        pytest.raises(ConfigError, match=r"cannot download alexnet's ImageNet weights .*`atelier weights import"),
    ):
        resolve(s, artifacts, "alexnet", "imagenet", offline=False)
    with sessions.begin() as s:
        rec = resolve(s, artifacts, "alexnet", "imagenet", offline=False)
    assert rec.name == "imagenet" and calls[-1] == (
        "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        True,
        True,
    )
    with sessions.begin() as s, pytest.raises(ConfigError, match="offline"):  # offline never downloads
        resolve(s, artifacts, "vgg16", "imagenet", offline=True)
    assert len(calls) == 2


def test_names_and_files_resolve_and_the_worker_checks_the_sha256(store, tmp_path):
    sessions, artifacts = store
    alexnet_features_file(tmp_path / "my-alexnet.safetensors", seed=1)
    with sessions.begin() as s:
        by_file = resolve(s, artifacts, "alexnet", str(tmp_path / "my-alexnet.safetensors"), offline=True)
        assert by_file.name == "my-alexnet"  # imported on the fly under its stem
        assert resolve(s, artifacts, "alexnet", "my-alexnet", offline=True) == by_file
    assert local_file(artifacts, RANDOM_RECORD) is None
    path = local_file(artifacts, by_file)
    assert path == artifacts / by_file.path and local_file(artifacts, by_file) == path  # second time: no hashing
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="not the recorded"):
        local_file(artifacts, by_file)
    path.unlink()
    with pytest.raises(ConfigError, match="not under this worker's artifacts root"):
        local_file(artifacts, by_file)
    with pytest.raises(ConfigError, match="leaves the artifacts root"):
        local_file(artifacts, WeightsRecord("x", "a" * 64, "../../etc/passwd"))
    with sessions.begin() as s, pytest.raises(ConfigError, match="recorded, but .* is not under the artifacts root"):
        resolve(s, artifacts, "alexnet", "my-alexnet", offline=True)
