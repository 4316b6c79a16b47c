"""Pretrained weights, from local files only (no network, no pickle).

``imagenet`` resolves through torchvision's weights API to the file name the
torch hub cache would hold; a path is loaded as safetensors or with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision.models as tvm
from safetensors.torch import load_file

from worker.ml.errors import ConfigError

TORCHVISION_NAMES = {"vgg16": "vgg16", "resnet18": "resnet18", "resnet50": "resnet50",
                     "inception_v3": "inception_v3", "alexnet": "alexnet"}


def imagenet_file(arch: str) -> Path:
    if arch not in TORCHVISION_NAMES:
        raise ConfigError(f"{arch} has no ImageNet weights; train it from random init or give a weight file")
    weights = tvm.get_model_weights(TORCHVISION_NAMES[arch]).DEFAULT
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ConfigError(f"weight file {path} not found")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a pickle that needs code, a truncated file...
        raise ConfigError(f"cannot read weights from {path}: {err}") from None
    return state.get("state_dict", state) if isinstance(state, dict) else state


def _torchvision_to_trunk(arch: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision classifier's keys to our trunk's (classifier layers dropped)."""
    if arch in ("vgg16", "alexnet"):
        return {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    if arch in ("resnet18", "resnet50"):
        order = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
        out = {}
        for k, v in state.items():
            head, _, rest = k.partition(".")
            if head in order:
                out[f"{order.index(head)}.{rest}"] = v
        return out
    if arch == "inception_v3":
        return {f"net.{k}": v for k, v in state.items() if not k.startswith(("fc.", "AuxLogits."))}
    return state


def load_backbone_weights(model, arch: str, spec: str) -> str:
    """Load weights into ``model.backbone``; returns what was used, for the run's record."""
    if spec == "imagenet":
        path = imagenet_file(arch)
        if not path.is_file():
            raise ConfigError(f"no ImageNet weights cached for {arch}: put {path.name} in {path.parent}/")
        state, used = _torchvision_to_trunk(arch, read_state_dict(path)), f"imagenet:{path.name}"
    else:
        path = Path(spec).expanduser()
        raw = read_state_dict(path)
        # Our own checkpoints hold "backbone.*" keys; torchvision files hold the classifier's names.
        if any(k.startswith("backbone.") for k in raw):
            state = {k[len("backbone."):]: v for k, v in raw.items() if k.startswith("backbone.")}
        else:
            state = _torchvision_to_trunk(arch, raw)
        used = f"file:{path}"
    missing, unexpected = model.backbone.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ConfigError(f"weights in {path} do not fit {arch}: {len(missing)} missing, {len(unexpected)} unexpected keys"
                          f" (e.g. {(missing or unexpected)[0]})")
    return used
