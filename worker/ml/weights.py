"""Pretrained backbone weights from local files only: no network, no pickle.

``imagenet`` resolves through torchvision's weights API to the file name the
torch hub cache would hold (``<torch.hub.get_dir()>/checkpoints/<file>``); the
file must already be there, it is never downloaded. Any other spec is a path:
``.safetensors`` (preferred) or ``.pt``/``.pth`` read with
``torch.load(weights_only=True)``. Only the backbone is loaded, strictly: a
torchvision classifier (1000 ImageNet classes) or our own head is ignored.

Backbone parameter names are torchvision's (see ``worker.ml.models``), so a
torchvision file loads as-is, and our own checkpoints (``backbone.*`` keys,
or ``model.backbone.*`` in a training state) load by dropping the prefix.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn
import torchvision.models as tvm
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from worker.ml.config import IMAGENET_ARCHS
from worker.ml.errors import ConfigError

# The original ImageNet weights for every arch (ResNet50's DEFAULT is V2; V1 is the classic the seeds used).
IMAGENET_VERSION = "IMAGENET1K_V1"
# Prefixes under which a file may hold the backbone: torchvision's own, our Classifier's, our training state's.
BACKBONE_PREFIXES = ("", "backbone.", "model.backbone.")
AUX_PREFIXES = ("AuxLogits.", "aux_head.", "model.aux_head.")


def imagenet_weights(arch: str) -> tvm.WeightsEnum:
    """torchvision's ImageNet weights entry for ``arch`` (metadata only; nothing is fetched)."""
    if arch not in IMAGENET_ARCHS:
        raise ConfigError(f"{arch} has no ImageNet weights; use random init or a weight file")
    return tvm.get_model_weights(arch)[IMAGENET_VERSION]


def imagenet_file(arch: str) -> Path:
    """Where torchvision would cache ``arch``'s ImageNet weights: the only place they are looked for."""
    weights = imagenet_weights(arch)
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def save_safetensors(state_dict: dict[str, torch.Tensor], path: str | Path,
                     metadata: dict[str, str] | None = None) -> None:
    """Write tensors (copied to contiguous CPU memory) and string metadata; atomic (write, then rename)."""
    path = Path(path)
    metadata = dict(metadata or {})
    bad = [k for k, v in metadata.items() if not (isinstance(k, str) and isinstance(v, str))]
    if bad:
        raise TypeError(f"safetensors metadata must map str to str; not so for {bad[0]!r}")
    # clone: safetensors refuses tensors sharing storage (views of one buffer), which a state_dict may hold
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def load_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors on the CPU, metadata) of a safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"weight file {path} not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError) as err:
        raise ConfigError(f"cannot read safetensors file {path}: {err}") from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` or ``.pt``/``.pth`` file (``{"state_dict": ...}`` wrappers unwrapped)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"weight file {path} not found")
    if path.suffix == ".safetensors":
        return load_safetensors(path)[0]
    if path.suffix not in (".pt", ".pth"):
        raise ConfigError(f"weight file {path} must be .safetensors, .pt or .pth")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a pickle that needs code to load, a truncated file...
        raise ConfigError(f"cannot read weights from {path} (weights_only): {err}") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)} if isinstance(state, dict) else {}
    if not tensors:
        raise ConfigError(f"weight file {path} holds no state dict of tensors")
    return tensors


def _strip(state: dict[str, torch.Tensor], prefixes: tuple[str, ...], wanted: set[str]) -> dict[str, torch.Tensor]:
    """The view of ``state`` under whichever prefix names the most ``wanted`` keys."""
    views = [{k[len(p):]: v for k, v in state.items() if k.startswith(p)} for p in prefixes]
    return max(views, key=lambda view: len(wanted & view.keys()))


def _load_part(module: nn.Module, state: dict[str, torch.Tensor], what: str, source: str) -> None:
    """Load every tensor of ``module`` from ``state`` (extra keys ignored), or raise ConfigError saying why not."""
    own = module.state_dict()
    # Files saved before BatchNorm counted its batches lack num_batches_tracked: a counter, not a weight.
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise ConfigError(f"weights in {source} do not fit the {what}: {len(missing)} of {len(own)} tensors "
                          f"missing, e.g. {missing[0]!r}")
    for k, v in own.items():
        if k in state and state[k].shape != v.shape:
            raise ConfigError(f"weights in {source} do not fit the {what}: {k!r} has shape "
                              f"{tuple(state[k].shape)}, expected {tuple(v.shape)}")
    module.load_state_dict({k: state.get(k, v) for k, v in own.items()}, strict=True)


def load_backbone_weights(model_or_backbone: nn.Module, arch: str, spec: str) -> str:
    """Load ``spec`` ("imagenet" or a file path) into the backbone; returns what was used, for the run's record.

    ``model_or_backbone`` is a Classifier (its ``.backbone``, and Inception's auxiliary convolutions when the
    file has them) or a bare backbone. Every backbone tensor must be in the file with the right shape.
    """
    backbone = getattr(model_or_backbone, "backbone", model_or_backbone)
    if spec == "imagenet":
        weights, path = imagenet_weights(arch), imagenet_file(arch)
        if not path.is_file():
            raise ConfigError(f"no ImageNet weights cached for {arch}: put {path.name} in {path.parent}/ "
                              f"(from {weights.url})")
        used = f"imagenet:{type(weights).__name__}.{weights.name}"
    else:
        path, used = Path(spec).expanduser(), f"file:{Path(spec).expanduser()}"
    raw = read_state_dict(path)
    _load_part(backbone, _strip(raw, BACKBONE_PREFIXES, set(backbone.state_dict())), f"{arch} backbone", str(path))
    aux = getattr(model_or_backbone, "aux_head", None)
    if aux is not None:
        # The aux convolutions are pretrained too; its fc (1000 ImageNet classes, or another run's) is not taken.
        convs = {k for k in aux.state_dict() if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
        found = _strip(raw, AUX_PREFIXES, convs)
        if convs <= found.keys():
            _load_part(aux, {**aux.state_dict(), **{k: found[k] for k in convs}}, f"{arch} aux head", str(path))
    return used
