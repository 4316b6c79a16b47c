"""Backbone weight files, at the level of tensors: read, check against an architecture, load.

No SQL, no network, no pickle. Which file a job loads (``imagenet``, an imported name,
random init) is decided at submit time and checked on the worker by
``worker.weights_store``; this module only reads files it is handed.

Files are ``.safetensors`` (preferred) or ``.pt``/``.pth`` read with
``torch.load(weights_only=True)``. Backbone parameter names are torchvision's (see
``worker.ml.backbones``), so a torchvision file loads as-is, and our own checkpoints
(``backbone.*`` keys, or ``model.backbone.*`` in a training state) load by dropping the
prefix. Only the backbone is ever used: torchvision's ImageNet classifier (1000 classes)
or another run's head is not, so a features-only file (only ``features.*`` for VGG and
AlexNet) is a complete backbone.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn
import torchvision.models as tvm
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from core.config import ARCHS, IMAGENET_ARCHS, VGG_NAMES
from core.errors import ConfigError
from worker.ml.backbones import build_backbone, build_inception

# The original ImageNet weights for every arch (ResNet50's DEFAULT is V2; V1 is the classic the seeds used).
IMAGENET_VERSION = "IMAGENET1K_V1"
# Prefixes under which a file may hold the backbone: torchvision's own, our Classifier's, our training state's.
BACKBONE_PREFIXES = ("", "backbone.", "model.backbone.")
AUX_PREFIXES = ("AuxLogits.", "aux_head.", "model.aux_head.")
# Every architecture a weight file can be for: the classifier backbones and the style VGGs.
WEIGHT_ARCHS = ARCHS + tuple(v for v in VGG_NAMES if v not in ARCHS)


def imagenet_weights(arch: str) -> tvm.WeightsEnum:
    """torchvision's ImageNet weights entry for ``arch`` (metadata only; nothing is fetched)."""
    if arch not in IMAGENET_ARCHS and arch not in VGG_NAMES:
        raise ConfigError(f"{arch} has no ImageNet weights; use --weights random or a weight file")
    return tvm.get_model_weights(arch)[IMAGENET_VERSION]


def imagenet_file(arch: str) -> Path:
    """Where torchvision's weights API caches ``arch``'s ImageNet weights (``<torch hub>/checkpoints/<file>``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(imagenet_weights(arch).url)


def save_safetensors(
    state_dict: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None
) -> None:
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
        raise ConfigError(
            f"cannot read weights from {path} (weights_only): {' '.join(str(err).split())[:300]}"
        ) from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)} if isinstance(state, dict) else {}
    if not tensors:
        raise ConfigError(f"weight file {path} holds no state dict of tensors")
    return tensors


def _strip(state: dict[str, torch.Tensor], prefixes: tuple[str, ...], wanted: set[str]) -> dict[str, torch.Tensor]:
    """The view of ``state`` under whichever prefix names the most ``wanted`` keys."""
    views = [{k[len(p) :]: v for k, v in state.items() if k.startswith(p)} for p in prefixes]
    return max(views, key=lambda view: len(wanted & view.keys()))


def _counter(key: str) -> bool:
    # Files saved before BatchNorm counted its batches lack num_batches_tracked: a counter, not a weight.
    return key.endswith("num_batches_tracked")


def _load_part(module: nn.Module, state: dict[str, torch.Tensor], what: str, source: str) -> None:
    """Load every tensor of ``module`` from ``state`` (extra keys ignored), or raise ConfigError saying why not."""
    own = module.state_dict()
    missing = [k for k in own if k not in state and not _counter(k)]
    if missing:
        raise ConfigError(
            f"weights in {source} do not fit the {what}: {len(missing)} of {len(own)} tensors "
            f"missing, e.g. {missing[0]!r}"
        )
    for k, v in own.items():
        if k in state and state[k].shape != v.shape:
            raise ConfigError(
                f"weights in {source} do not fit the {what}: {k!r} has shape "
                f"{tuple(state[k].shape)}, expected {tuple(v.shape)}"
            )
    module.load_state_dict({k: state.get(k, v) for k, v in own.items()}, strict=True)


class Template:
    """What a weight file for ``arch`` must and may hold, as torchvision names and shapes (built on the meta device).

    backbone: every tensor the backbone needs; aux: Inception's pretrained auxiliary convolutions (optional);
    head: torchvision's classifier tensors, allowed in a file and never used.
    """

    def __init__(self, arch: str) -> None:
        if arch not in WEIGHT_ARCHS:
            raise ConfigError(f"unknown arch {arch!r}; choose from {', '.join(WEIGHT_ARCHS)}")
        self.arch = arch
        with torch.device("meta"):
            if arch in VGG_NAMES:  # vgg16's classifier trunk and style VGG are the same features.* keys
                full = getattr(tvm, arch)(weights=None)
                backbone, aux = {f"features.{k}": v for k, v in full.features.state_dict().items()}, {}
            elif arch == "inception_v3":
                trunk, aux_module = build_inception()
                backbone = trunk.state_dict()
                aux = {f"AuxLogits.{k}": v for k, v in aux_module.state_dict().items() if not k.startswith("fc.")}
                full = tvm.inception_v3(weights=None, aux_logits=True, init_weights=False)
            else:
                backbone, aux = build_backbone(arch).state_dict(), {}
                full = getattr(tvm, arch)(weights=None) if arch in IMAGENET_ARCHS else None
        self.backbone = {k: tuple(v.shape) for k, v in backbone.items()}
        self.aux = {k: tuple(v.shape) for k, v in aux.items()}
        everything = {k: tuple(v.shape) for k, v in full.state_dict().items()} if full is not None else {}
        self.head = {k: s for k, s in everything.items() if k not in self.backbone and k not in self.aux}

    def extract(self, raw: dict[str, torch.Tensor], source: str) -> tuple[dict[str, torch.Tensor], bool]:
        """(the backbone tensors of ``raw`` under torchvision's names, whether ``raw`` lacked the classifier).

        Strict: every backbone tensor present with its shape, and nothing in the file that torchvision's
        ``arch`` does not have; else ConfigError in one line. Inception's aux convolutions are kept when the
        file has all of them. ``raw`` may hold the backbone under our own checkpoints' prefixes.
        """
        wanted = set(self.backbone)
        view = _strip(raw, BACKBONE_PREFIXES, wanted)
        missing = [k for k in self.backbone if k not in view and not _counter(k)]
        if len(missing) == len([k for k in self.backbone if not _counter(k)]):
            raise ConfigError(
                f"{source} holds no {self.arch} weights: none of its {len(raw)} tensors is a "
                f"{self.arch} backbone tensor (e.g. {next(iter(self.backbone))!r}); is it for another arch?"
            )
        if missing:
            raise ConfigError(
                f"{source} does not fit {self.arch}: {len(missing)} of {len(self.backbone)} backbone "
                f"tensors missing, e.g. {missing[0]!r}"
            )
        known = {**self.backbone, **self.aux, **self.head}
        for k, v in view.items():
            if k in known and tuple(v.shape) != known[k] and k not in self.head:
                raise ConfigError(
                    f"{source} does not fit {self.arch}: {k!r} has shape {tuple(v.shape)}, expected {known[k]}"
                )
        if not any(k.startswith(p) for p in BACKBONE_PREFIXES[1:] for k in raw):
            # A torchvision-layout file: everything in it must be something torchvision's model has.
            unknown = [k for k in view if k not in known]
            if unknown:
                raise ConfigError(
                    f"{source} does not fit {self.arch}: it holds {len(unknown)} tensors "
                    f"{self.arch} does not have, e.g. {unknown[0]!r}"
                )
        state = {k: view[k] for k in self.backbone if k in view}
        aux = _strip(raw, AUX_PREFIXES, {k[len("AuxLogits.") :] for k in self.aux})
        aux = {f"AuxLogits.{k}": v for k, v in aux.items() if f"AuxLogits.{k}" in self.aux}
        needed = [k for k in self.aux if not _counter(k)]
        if needed and all(k in aux for k in needed):
            for k, v in aux.items():
                if tuple(v.shape) != self.aux[k]:
                    raise ConfigError(
                        f"{source} does not fit {self.arch}: {k!r} has shape {tuple(v.shape)}, expected {self.aux[k]}"
                    )
            state.update(aux)
        features_only = bool(self.head) and not any(k in view for k in self.head)
        return state, features_only


def load_backbone_weights(model_or_backbone: nn.Module, arch: str, path: str | Path) -> None:
    """Load the backbone tensors of the file at ``path`` into a Classifier (or a bare backbone), strictly.

    ``model_or_backbone`` is a Classifier (its ``.backbone``, and Inception's auxiliary convolutions when the
    file has them) or a bare backbone. Every backbone tensor must be in the file with the right shape.
    """
    path = Path(path)
    backbone = getattr(model_or_backbone, "backbone", model_or_backbone)
    raw = read_state_dict(path)
    _load_part(backbone, _strip(raw, BACKBONE_PREFIXES, set(backbone.state_dict())), f"{arch} backbone", str(path))
    aux = getattr(model_or_backbone, "aux_head", None)
    if aux is not None:
        # The aux convolutions are pretrained too; its fc (1000 ImageNet classes, or another run's) is not taken.
        convs = {k for k in aux.state_dict() if not k.startswith("fc.") and not _counter(k)}
        found = _strip(raw, AUX_PREFIXES, convs)
        if convs <= found.keys():
            _load_part(aux, {**aux.state_dict(), **{k: found[k] for k in convs}}, f"{arch} aux head", str(path))
