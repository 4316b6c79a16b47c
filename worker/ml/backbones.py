"""Backbones: the trunks of the classifiers, images (B, 3, S, S) -> feature maps (B, C, H, W), before any pooling.

Their own module because two others build them: ``models`` puts a head on a trunk, and ``weights`` builds
each trunk on the meta device to learn which tensors a weight file must hold. Parameter names are
torchvision's (``features.0.weight``, ``layer1.0.conv1.weight``, ``Mixed_5b...``), so ImageNet files load
without renaming.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.models as tvm

from core.config import ARCHS
from core.errors import ConfigError


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


def build_inception() -> tuple[InceptionTrunk, nn.Module]:
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
        return build_inception()[0]
    if arch == "logistic":
        # Keras' BatchNormalization on (S, S, 3) normalises per channel, then Flatten: seed 003's logistic model.
        return nn.Sequential(OrderedDict(bn=nn.BatchNorm2d(3), flatten=nn.Flatten()))  # (B, 3*S*S)
    raise ConfigError(f"unknown arch {arch!r}; choose from {', '.join(ARCHS)}")
