"""Classifiers: a backbone that yields feature maps, and a head that names the artist.

Backbones are torchvision's VGG16, ResNet18/50, Inception V3 and AlexNet cut
before their pooling, a 4-block baseline CNN, and ``logistic`` (raw pixels).
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
import torchvision.models as tvm

from core.config import ARCHS, HEADS, MODES, OPTIMIZERS, ModelConfig
from core.errors import ConfigError
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


# ---------------------------------------------------------------------------------------------------------------
# Backbones: images (B, 3, S, S) -> feature maps (B, C, H, W), taken before any pooling.


class FeaturesTrunk(nn.Module):
    """A ``features`` Sequential under that name, so keys read ``features.N.*`` as in torchvision's VGG/AlexNet."""

    def __init__(self, features: nn.Sequential) -> None:
        super().__init__()
        self.features = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, C, H, W)


def _vgg16_features() -> nn.Sequential:
    """VGG16 (configuration D) convolutions, laid out and initialised as torchvision's ``vgg16().features``.

    Built here rather than through ``tvm.vgg16`` to skip initialising its 120M-parameter classifier.
    """
    layers: list[nn.Module] = []
    c_in = 3
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"):
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        conv = nn.Conv2d(c_in, v, kernel_size=3, padding=1)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(conv.bias)
        layers += [conv, nn.ReLU(inplace=True)]
        c_in = v
    return nn.Sequential(*layers)


def _alexnet_features() -> nn.Sequential:
    """AlexNet's convolutions as in torchvision (``alexnet().features``, default init), without the classifier."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )


def _baseline_features() -> nn.Sequential:
    """4 x (conv 3x3 -> ReLU -> max-pool 2), channels 32, 64, 128, 128 (seed 002's WikiArt baseline).

    Padding 1 ("same") where the seed's Keras model used "valid": the maps then halve exactly, and 32 px
    inputs still leave a 2x2 map (valid convolutions would need 46 px).
    """
    layers: list[nn.Module] = []
    c_in = 3
    for c_out in (32, 64, 128, 128):
        layers += [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        c_in = c_out
    return nn.Sequential(*layers)


def _resnet_trunk(arch: str) -> nn.Sequential:
    """ResNet up to layer4, children named as torchvision's so its keys (``layer1.0.conv1.weight``) load as-is."""
    net = getattr(tvm, arch)(weights=None)
    names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
    return nn.Sequential(OrderedDict((n, getattr(net, n)) for n in names))


class InceptionTrunk(nn.Module):
    """Inception V3 up to Mixed_7c, with torchvision's module names (its ImageNet keys load as-is).

    Inputs are ImageNet-normalised like every other backbone; the trunk maps them to the [-1, 1] scaling
    Google's weights were trained on (torchvision's ``transform_input``), always, so the input convention
    does not depend on whether weights were loaded.
    """

    STEM = (
        "Conv2d_1a_3x3",
        "Conv2d_2a_3x3",
        "Conv2d_2b_3x3",
        "maxpool1",
        "Conv2d_3b_1x1",
        "Conv2d_4a_3x3",
        "maxpool2",
        "Mixed_5b",
        "Mixed_5c",
        "Mixed_5d",
        "Mixed_6a",
        "Mixed_6b",
        "Mixed_6c",
        "Mixed_6d",
        "Mixed_6e",
    )
    TOP = ("Mixed_7a", "Mixed_7b", "Mixed_7c")

    def __init__(self, net: tvm.Inception3) -> None:
        super().__init__()
        for name in self.STEM + self.TOP:
            self.add_module(name, getattr(net, name))
        mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
        # x_imagenet * std / 0.5 + (mean - 0.5) / 0.5 == (x_01 - 0.5) / 0.5; not persistent: keys stay torchvision's
        self.register_buffer("in_scale", (std / 0.5).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("in_shift", ((mean - 0.5) / 0.5).view(1, 3, 1, 1), persistent=False)

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(Mixed_7c maps, Mixed_6e maps): the second feeds the auxiliary classifier."""
        x = x * self.in_scale + self.in_shift  # (B, 3, S, S)
        for name in self.STEM:
            x = getattr(self, name)(x)
        mid = x  # (B, 768, 17, 17) at 299 px
        for name in self.TOP:
            x = getattr(self, name)(x)
        return x, mid  # (B, 2048, 8, 8) at 299 px

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_aux(x)[0]


class InceptionAuxHead(nn.Module):
    """Inception V3's auxiliary classifier on Mixed_6e (conv0/conv1/fc named as torchvision's ``AuxLogits``).

    At 299 px (Mixed_6e >= 17x17) it is exactly torchvision's: avg-pool 5/3 -> 1x1 conv -> 5x5 conv. Smaller
    inputs leave maps too small for the 5x5 conv, so they are pooled adaptively to 5x5 instead: the auxiliary
    loss then exists at any input size (tests run at 75 px).
    """

    def __init__(self, aux: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.conv0, self.conv1 = aux.conv0, aux.conv1
        self.fc = nn.Linear(768, num_classes)
        nn.init.trunc_normal_(self.fc.weight, std=0.001, a=-2, b=2)  # torchvision's init for this layer
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 768, h, w)
        if min(x.shape[-2:]) >= 17:
            x = F.avg_pool2d(x, kernel_size=5, stride=3)  # (B, 768, 5, 5) at 17x17
        else:
            x = F.adaptive_avg_pool2d(x, 5)  # (B, 768, 5, 5)
        x = self.conv1(self.conv0(x))  # (B, 768, 1, 1) at 5x5
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))  # (B, K)


def _inception() -> tuple[InceptionTrunk, nn.Module]:
    # torchvision's init draws trunc_normal(std, a=-2, b=2) for 27M weights, several seconds on a CPU (erfinv);
    # with std <= 0.1 the +-2 bounds sit 20 sigma out and never bite, so a plain normal draw is the same
    # distribution at a fraction of the cost. (init_weights is passed explicitly: torchvision warns otherwise.)
    net = tvm.inception_v3(weights=None, aux_logits=True, init_weights=False)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.normal_(0.0, float(getattr(m, "stddev", 0.1)))
    return InceptionTrunk(net), net.AuxLogits


def build_backbone(arch: str) -> nn.Module:
    """The randomly initialised trunk of ``arch`` (images -> maps, or flat pixels for logistic)."""
    if arch == "vgg16":
        return FeaturesTrunk(_vgg16_features())
    if arch == "alexnet":
        return FeaturesTrunk(_alexnet_features())
    if arch == "baseline-cnn":
        return FeaturesTrunk(_baseline_features())
    if arch in ("resnet18", "resnet50"):
        return _resnet_trunk(arch)
    if arch == "inception_v3":
        return _inception()[0]
    if arch == "logistic":
        # Keras' BatchNormalization on (S, S, 3) normalises per channel, then Flatten: seed 003's logistic model.
        return nn.Sequential(OrderedDict(bn=nn.BatchNorm2d(3), flatten=nn.Flatten()))  # (B, 3*S*S)
    raise ConfigError(f"unknown arch {arch!r}; choose from {', '.join(ARCHS)}")


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
            self.backbone, aux = _inception()
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
