"""Classifiers: a backbone that yields feature maps, and a head that names the artist.

Backbones are torchvision's VGG16, ResNet18/50, Inception V3 and AlexNet cut
before their pooling, a 4-block baseline CNN, and ``logistic`` (raw pixels), built in
``worker.ml.backbones`` (which ``worker.ml.weights`` also reads, to know what a file must hold).
Their parameter names are torchvision's (``features.0.weight``,
``layer1.0.conv1.weight``, ``Mixed_5b...``), so ImageNet files load without
renaming. Heads pool the maps (``gap``, ``spp``) or flatten them (``linear``),
then run optional dense blocks and a final Linear.

Sources (see the seeds): transfer learning with VGG16/ResNet18/Inception V3 and
an auxiliary loss weighted 0.4; ResNet50 with GAP or SPP heads and dense blocks
Linear -> Dropout 0.5 -> BatchNorm, trained in stages; a 4-conv baseline CNN
with dense 512; logistic regression and AlexNet for period classification.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.config import ARCHS, HEADS, MODES, OPTIMIZERS, ModelConfig
from core.errors import ConfigError
from worker.ml.backbones import InceptionAuxHead, build_backbone, build_inception
from worker.ml.weights import load_backbone_weights

# Inception V3's auxiliary classifier loss weight (Szegedy et al.; the Rijksmuseum study). The trainer applies it.
AUX_LOSS_WEIGHT = 0.4
# Spatial pyramid of 1x1 + 2x2 + 3x3 bins, 14 per channel (the ResNet50 SPP study).
SPP_LEVELS = (1, 2, 3)
# Channels of each backbone's last feature map (logistic has no maps: its features are the 3*S*S pixels).
FEATURE_CHANNELS = {
    "vgg16": 512,
    "resnet18": 512,
    "resnet50": 2048,
    "inception_v3": 2048,
    "alexnet": 256,
    "baseline-cnn": 128,
}
# The WikiArt baseline's classifier (seed 002: flatten -> dense 512 -> dropout 0.5 -> output).
BASELINE_CNN_HEAD = {"head": "linear", "dense": (512,), "dropout": 0.5}


def _down(h: int, k: int, s: int, p: int = 0) -> int:
    """Output side of a conv/pool with kernel k, stride s, padding p."""
    return (h + 2 * p - k) // s + 1


def feature_shape(cfg: ModelConfig) -> tuple[int, ...]:
    """Shape of one sample's backbone output for ``cfg.image_size`` inputs: (C, H, W), or (D,) for logistic.

    Analytic (no model is built); tests check it against a real forward for every arch.
    """
    s = cfg.image_size
    if cfg.arch == "logistic":
        return (3 * s * s,)
    if cfg.arch not in FEATURE_CHANNELS:
        raise ConfigError(f"unknown arch {cfg.arch!r}; choose from {', '.join(ARCHS)}")
    if cfg.arch == "vgg16":
        h = s // 32  # five 2x2/2 max-pools
    elif cfg.arch == "baseline-cnn":
        h = s // 16  # four 2x2/2 max-pools
    elif cfg.arch in ("resnet18", "resnet50"):
        h = s
        for _ in range(5):  # conv1 7x7/2, maxpool 3x3/2, layer2..4 stride 2: each ceil(h / 2)
            h = (h - 1) // 2 + 1
    elif cfg.arch == "alexnet":
        h = _down(_down(_down(_down(s, 11, 4, 2), 3, 2), 3, 2), 3, 2)
    else:  # inception_v3
        h = _down(s, 3, 2) - 2  # Conv2d_1a 3x3/2, Conv2d_2a 3x3 (2b keeps the size)
        h = _down(h, 3, 2) - 2  # maxpool1, Conv2d_4a 3x3 (3b is 1x1)
        for _ in range(3):  # maxpool2, Mixed_6a, Mixed_7a: all 3x3/2 without padding
            h = _down(h, 3, 2)
    return (FEATURE_CHANNELS[cfg.arch], h, h)


# ---------------------------------------------------------------------------------------------------------------
# Heads: features -> logits. Public so a grid can train heads alone on cached backbone features.


class SpatialPyramidPool(nn.Module):
    """Adaptive max pooling at 1x1, 2x2 and 3x3, concatenated: (B, C, H, W) -> (B, 14 C).

    Max pooling as in He et al.'s SPP-net (and the Keras SpatialPyramidPooling2D layer of seed 001). Maps
    smaller than 3x3 still work: adaptive pooling then repeats cells.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.adaptive_max_pool2d(x, n).flatten(1) for n in SPP_LEVELS], dim=1)  # (B, 14 C)


class GlobalAvgPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))  # (B, C)


class DenseBlock(nn.Sequential):
    """Linear -> ReLU -> Dropout -> BatchNorm1d (seed 001's block: a Keras Dense with ReLU, Dropout, BN)."""

    def __init__(self, d_in: int, d_out: int, dropout: float) -> None:
        super().__init__(
            OrderedDict(
                linear=nn.Linear(d_in, d_out),
                relu=nn.ReLU(inplace=True),
                dropout=nn.Dropout(dropout),
                bn=nn.BatchNorm1d(d_out),
            )
        )


class Head(nn.Module):
    """pool (flatten | GAP | SPP) -> dense blocks -> Linear to the class logits."""

    def __init__(self, pool: nn.Module, width: int, dense: tuple[int, ...], dropout: float, num_classes: int) -> None:
        super().__init__()
        self.pool = pool
        blocks = []
        for d in dense:
            blocks.append(DenseBlock(width, d, dropout))
            width = d
        self.dense = nn.Sequential(*blocks)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) or (B, D)
        return self.classifier(self.dense(self.pool(x)))  # (B, K)


def build_head(cfg: ModelConfig, feature_shape: tuple[int, ...]) -> Head:
    """The head of ``cfg`` for backbone features of one sample's shape (C, H, W) (or (D,) for linear)."""
    if cfg.head == "linear":
        pool, width = nn.Flatten(), math.prod(feature_shape)
    elif len(feature_shape) != 3:
        raise ConfigError(f"head {cfg.head!r} needs spatial feature maps (C, H, W), got shape {tuple(feature_shape)}")
    elif cfg.head == "gap":
        pool, width = GlobalAvgPool(), feature_shape[0]
    elif cfg.head == "spp":
        pool, width = SpatialPyramidPool(), feature_shape[0] * sum(n * n for n in SPP_LEVELS)
    else:
        raise ConfigError(f"unknown head {cfg.head!r}; choose from {', '.join(HEADS)}")
    return Head(pool, int(width), tuple(cfg.dense), cfg.dropout, cfg.num_classes)


# ---------------------------------------------------------------------------------------------------------------
# The classifier, its training modes and optimisers.


class Classifier(nn.Module):
    """backbone (images -> maps) + head (maps -> logits), and Inception's auxiliary head.

    ``forward`` returns logits, or ``(logits, aux_logits)`` for Inception V3 while training with a trainable
    backbone (the trainer adds ``AUX_LOSS_WEIGHT`` x the aux loss). With a frozen backbone the aux branch is
    skipped: its gradient could reach nothing that shapes the main logits.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.arch == "inception_v3":
            self.backbone, aux = build_inception()
            self.aux_head: InceptionAuxHead | None = InceptionAuxHead(aux, cfg.num_classes)
        else:
            self.backbone, self.aux_head = build_backbone(cfg.arch), None
        self.head = build_head(cfg, feature_shape(cfg))
        self.frozen = False  # set by set_mode("feature-extract"): backbone (and aux) weights and BN stats fixed

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)  # (B, C, H, W), or (B, D) for logistic

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.aux_head is not None and self.training and not self.frozen:
            maps, mid = self.backbone.forward_with_aux(x)
            return self.head(maps), self.aux_head(mid)  # (B, K), (B, K)
        return self.head(self.backbone(x))  # (B, K)

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        if self.frozen:  # a frozen backbone keeps its BatchNorm running statistics (and no dropout)
            self.backbone.eval()
            if self.aux_head is not None:
                self.aux_head.eval()
        return self


def build_model(cfg: ModelConfig, weights_file: str | Path | None = None) -> Classifier:
    """A validated Classifier: random init, then the backbone weights of ``weights_file`` if given.

    ``cfg.weights`` names the weights for the record ("imagenet", an imported name, "random"); which file
    that is was settled at submit time (``worker.weights_store``), so the caller hands the file over. A
    config naming weights without a file is refused rather than silently trained from random init.
    """
    model = Classifier(cfg.validate())
    if weights_file is not None:
        load_backbone_weights(model, cfg.arch, weights_file)
    elif cfg.weights not in (None, "random"):
        raise ConfigError(f"the model config names weights {cfg.weights!r} but no weight file was given")
    return model


def set_mode(model: Classifier, mode: str) -> None:
    """``feature-extract``: freeze the backbone (and Inception's aux head), weights and BatchNorm statistics,
    so only ``model.head`` trains; ``fine-tune``: everything trains. ``staged`` is a schedule of these two:
    call set_mode for each phase of ``TrainConfig.phases``.
    """
    if mode == "staged":
        raise ConfigError("'staged' is a schedule of phases: call set_mode with each phase's mode (TrainConfig.phases)")
    if mode not in ("feature-extract", "fine-tune"):
        raise ConfigError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    model.frozen = mode == "feature-extract"
    frozen_parts = [model.backbone] + ([model.aux_head] if model.aux_head is not None else [])
    for part in frozen_parts:
        for p in part.parameters():
            p.requires_grad_(not model.frozen)
    model.train(model.training)  # re-applies (or lifts) the eval mode of the frozen BatchNorm layers


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters the optimiser should see: those that require grad in the current mode."""
    return [p for p in model.parameters() if p.requires_grad]


def build_optimizer(
    name: str, params, lr: float, weight_decay: float = 0.0, momentum: float = 0.9
) -> torch.optim.Optimizer:
    """SGD with momentum, Adam, or RMSprop; ``momentum`` applies to SGD only.

    RMSprop uses alpha (Keras' rho) 0.9, the Keras default of the seeds that used it (PyTorch's is 0.99).
    """
    if not (lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"lr must be a positive number, got {lr}")
    if weight_decay < 0:
        raise ConfigError(f"weight decay must be >= 0, got {weight_decay}")
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    elif name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    elif name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=0.9, weight_decay=weight_decay)
    raise ConfigError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")
