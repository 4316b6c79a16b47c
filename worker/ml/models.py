"""Classifiers: a backbone that yields feature maps, and a head that names the artist.

Backbones are torchvision's (VGG16, ResNet18/50, Inception V3, AlexNet) cut
before their pooling, a 4-block baseline CNN, and ``logistic`` (raw pixels).
Heads pool those maps (``gap``, ``spp``) or flatten them (``linear``), then run
optional dense blocks (Linear -> Dropout -> BatchNorm, as in the ResNet50 study).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.models as tvm

from worker.ml.errors import ConfigError

ARCHS = ("vgg16", "resnet18", "resnet50", "inception_v3", "alexnet", "baseline-cnn", "logistic")
HEADS = ("linear", "gap", "spp")
MODES = ("feature-extract", "fine-tune", "staged")
AUX_LOSS_WEIGHT = 0.4  # Inception V3's auxiliary classifier, as in its paper and the Rijksmuseum report
SPP_LEVELS = (1, 2, 3)  # pyramid of 1x1 + 2x2 + 3x3 bins: 14 bins per channel
MIN_SIZE = {"inception_v3": 75, "alexnet": 63, "vgg16": 32, "resnet18": 32, "resnet50": 32, "baseline-cnn": 16, "logistic": 8}


@dataclass(frozen=True)
class ModelConfig:
    arch: str  # one of ARCHS
    num_classes: int
    head: str = "gap"  # linear | gap | spp
    dense: tuple[int, ...] = ()  # widths of the dense blocks between pooling and the classifier
    dropout: float = 0.5  # dropout inside each dense block
    image_size: int = 224  # square input side in pixels
    weights: str | None = None  # None: random init; "imagenet": torch cache; else a weight file path

    def validate(self) -> "ModelConfig":
        if self.arch not in ARCHS:
            raise ConfigError(f"unknown arch {self.arch!r}; choose from {', '.join(ARCHS)}")
        if self.head not in HEADS:
            raise ConfigError(f"unknown head {self.head!r}; choose from {', '.join(HEADS)}")
        if self.arch == "logistic" and self.head != "linear":
            raise ConfigError(f"head {self.head!r} pools spatial maps; 'logistic' has none (use --head linear)")
        if any(d <= 0 for d in self.dense):
            raise ConfigError(f"dense block widths must be positive, got {list(self.dense)}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.image_size < MIN_SIZE[self.arch]:
            raise ConfigError(f"{self.arch} needs images of at least {MIN_SIZE[self.arch]} px, got {self.image_size}")
        if self.num_classes < 2:
            raise ConfigError(f"a classifier needs at least 2 classes, got {self.num_classes}")
        return self


def default_image_size(arch: str) -> int:
    return 299 if arch == "inception_v3" else 224


class BaselineCNN(nn.Module):
    """4 x (conv 3x3 -> ReLU -> max-pool), channels 32, 64, 128, 128 (the WikiArt baseline)."""

    def __init__(self) -> None:
        super().__init__()
        layers, c_in = [], 3
        for c_out in (32, 64, 128, 128):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, 128, H/16, W/16)


class InceptionTrunk(nn.Module):
    """Inception V3 up to Mixed_7c, returning the aux branch's input too while training."""

    def __init__(self, net: tvm.Inception3) -> None:
        super().__init__()
        self.net = net
        self.aux_input: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
                     "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
            x = getattr(n, name)(x)
        self.aux_input = x if self.training else None  # (B, 768, 17, 17) at 299 px
        for name in ("Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(n, name)(x)
        return x  # (B, 2048, 8, 8) at 299 px


def _backbone(arch: str) -> tuple[nn.Module, nn.Module | None]:
    """(trunk producing feature maps, Inception's aux branch or None), randomly initialised."""
    if arch == "vgg16":
        return tvm.vgg16(weights=None).features, None
    if arch == "alexnet":
        return tvm.alexnet(weights=None).features, None
    if arch in ("resnet18", "resnet50"):
        net = getattr(tvm, arch)(weights=None)
        return nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4), None
    if arch == "inception_v3":
        net = tvm.inception_v3(weights=None, aux_logits=True, init_weights=True)
        aux = net.AuxLogits
        net.AuxLogits, net.fc = None, nn.Identity()
        return InceptionTrunk(net), aux
    if arch == "baseline-cnn":
        return BaselineCNN(), None
    if arch == "logistic":
        return nn.BatchNorm2d(3), None  # normalised raw pixels
    raise ConfigError(f"unknown arch {arch!r}")


class SPP(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C * 14)
        return torch.cat([F.adaptive_max_pool2d(x, n).flatten(1) for n in SPP_LEVELS], dim=1)


def build_head(cfg: ModelConfig, feature_shape: tuple[int, ...]) -> nn.Module:
    """Pooling, dense blocks and the classifier for backbone output of ``feature_shape`` (C, H, W)."""
    c = feature_shape[0]
    if cfg.head == "gap":
        layers, width = [nn.AdaptiveAvgPool2d(1), nn.Flatten()], c
    elif cfg.head == "spp":
        layers, width = [SPP()], c * sum(n * n for n in SPP_LEVELS)
    else:
        layers, width = [nn.Flatten()], int(torch.tensor(feature_shape).prod())
    for d in cfg.dense:
        layers += [nn.Linear(width, d), nn.ReLU(inplace=True), nn.Dropout(cfg.dropout), nn.BatchNorm1d(d)]
        width = d
    if not cfg.dense and cfg.head == "linear" and cfg.dropout > 0 and cfg.arch == "baseline-cnn":
        layers.append(nn.Dropout(cfg.dropout))
    layers.append(nn.Linear(width, cfg.num_classes))
    return nn.Sequential(*layers)


class Classifier(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone, aux = _backbone(cfg.arch)
        self.frozen = False
        shape = feature_shape(cfg, self.backbone)
        self.head = build_head(cfg, shape)
        self.aux_head = None
        if aux is not None:
            aux.fc = nn.Linear(aux.fc.in_features, cfg.num_classes)
            self.aux_head = aux

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor):
        logits = self.head(self.backbone(x))
        trunk_aux = getattr(self.backbone, "aux_input", None)
        if self.training and self.aux_head is not None and trunk_aux is not None and trunk_aux.shape[-1] >= 5:
            return logits, self.aux_head(trunk_aux)
        return logits

    def train(self, mode: bool = True) -> "Classifier":
        super().train(mode)
        if self.frozen:
            self.backbone.eval()  # frozen BatchNorm statistics stay those of the backbone
        return self


@torch.no_grad()
def feature_shape(cfg: ModelConfig, backbone: nn.Module | None = None) -> tuple[int, ...]:
    """Shape (C, H, W) of the backbone's output for ``cfg.image_size`` inputs (a dry run)."""
    backbone = backbone or _backbone(cfg.arch)[0]
    was_training = backbone.training
    backbone.eval()
    out = backbone(torch.zeros(1, 3, cfg.image_size, cfg.image_size))
    backbone.train(was_training)
    return tuple(out.shape[1:])


def build_model(cfg: ModelConfig) -> Classifier:
    model = Classifier(cfg.validate())
    if cfg.weights:
        from worker.ml.weights import load_backbone_weights

        load_backbone_weights(model, cfg.arch, cfg.weights)
    return model


def set_mode(model: Classifier, mode: str) -> None:
    """feature-extract: the backbone is frozen (weights and BatchNorm statistics); fine-tune: all trains."""
    if mode not in ("feature-extract", "fine-tune"):
        raise ConfigError(f"unknown mode {mode!r}")
    model.frozen = mode == "feature-extract"
    for p in model.backbone.parameters():
        p.requires_grad_(not model.frozen)
    model.train(model.training)


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def build_optimizer(name: str, params, lr: float, weight_decay: float = 0.0, momentum: float = 0.9) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay)
    raise ConfigError(f"unknown optimizer {name!r}; choose from sgd, adam, rmsprop")
