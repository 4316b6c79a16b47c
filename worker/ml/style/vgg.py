"""The frozen VGG the losses read, its paper layer names, its weights and Gatys et al.'s normalisation.

The normalisation (``mean_activation_scales`` + ``VGGFeatures.rescale``) lives beside the network because it
changes the network's units, not the method: only with it do alpha and beta mean what the paper's ratios mean.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torchvision.models as tvm
from safetensors.torch import load_file

from core.config import VGG_NAMES
from core.errors import ConfigError
from worker.ml.style.losses import CONTENT_LAYER, STYLE_LAYERS

# ImageNet statistics every torchvision VGG was trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _vgg_features(name: str, device: str | torch.device = "cpu") -> nn.Sequential:
    """torchvision's ``features`` of ``name`` with *empty* weights (the caller initialises or loads them).

    The model is built on the meta device: its classifier (~120M parameters, never
    used here) would otherwise take seconds to random-initialise and then be dropped.
    """
    if name not in VGG_NAMES:
        raise ConfigError(f"unknown vgg {name!r}; choose from {', '.join(VGG_NAMES)}")
    with torch.device("meta"):
        features = getattr(tvm, name)(weights=None).features
    return features if torch.device(device).type == "meta" else features.to_empty(device=device)


def layer_indices(name: str) -> dict[str, int]:
    """Paper layer names -> index of that ReLU in torchvision's ``vgg*.features``, read off its layer list.

    reluB_K is the ReLU after the K-th conv of block B, blocks being separated by
    max-pools. (The PyTorch tutorial counts convs across blocks: its conv_4 is conv2_2.)
    """
    names, block, conv = {}, 1, 0
    for i, layer in enumerate(_vgg_features(name, "meta")):
        if isinstance(layer, nn.Conv2d):
            conv += 1
        elif isinstance(layer, nn.ReLU):
            names[f"relu{block}_{conv}"] = i
        elif isinstance(layer, nn.MaxPool2d):
            block, conv = block + 1, 0
    return names


class VGGFeatures(nn.Module):
    """Frozen VGG trunk, cut after the last layer the losses need; returns {layer name: activation}."""

    def __init__(self, features: nn.Sequential, name: str, pool: str = "avg"):
        super().__init__()
        if pool not in ("max", "avg"):
            raise ConfigError(f"unknown pool {pool!r}; choose from max, avg")
        index = layer_indices(name)
        self.name, self.pool = name, pool
        self.wanted = {index[n]: n for n in (*STYLE_LAYERS, CONTENT_LAYER)}
        layers = list(features[: max(self.wanted) + 1])  # relu5_1 is the last: nothing after it is computed
        for i, layer in enumerate(layers):
            if isinstance(layer, nn.ReLU):
                layers[i] = nn.ReLU(inplace=False)  # the activations returned must not be overwritten later
            elif isinstance(layer, nn.MaxPool2d) and pool == "avg":
                layers[i] = nn.AvgPool2d(2, 2)  # Gatys' variant: smoother gradients, slightly better images
        self.body = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    @torch.no_grad()
    def rescale(self, scales: dict[str, torch.Tensor]) -> VGGFeatures:
        """Gatys et al.'s normalisation, applied so that it changes each layer's scale and nothing else.

        Conv l's output channels are multiplied by its factors f_l and its input channels divided by the
        factors f_{l-1} of the conv before it (W_l <- W_l f_l[out] / f_{l-1}[in], b_l <- b_l f_l). ReLU and
        both poolings commute with a positive per-channel scale, so every activation of the rescaled
        network is the original activation times its channel's factor: the same network, other units.
        (Scaling the outputs alone, as this method once did, feeds conv l+1 rescaled inputs through its
        unchanged weights: another network.)
        """
        convs = {str(i): m for i, m in enumerate(self.body) if isinstance(m, nn.Conv2d)}
        if set(scales) != set(convs):
            raise ConfigError(
                f"VGG normalisation has factors for {len(scales)} convs, the {self.name} trunk has {len(convs)}"
            )
        before = None  # the factors of the previous conv's outputs: this conv's inputs
        for i, conv in convs.items():
            f = scales[i].to(conv.weight.device, torch.float64)
            w = conv.weight.double() * f.view(-1, 1, 1, 1)
            if before is not None:
                w = w / before.view(1, -1, 1, 1)
            conv.weight.copy_(w.to(conv.weight.dtype))
            conv.bias.copy_((conv.bias.double() * f).to(conv.bias.dtype))
            before = f
        return self

    def forward(self, img: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 3, H, W) in [0, 1] -> {name: (B, C, h, w)} at relu1_1 .. relu5_1 and relu4_2."""
        x = (img - self.mean) / self.std
        if x.is_cuda:
            x = x.contiguous(memory_format=torch.channels_last)  # cuDNN's fast bf16 convolutions are NHWC
        out = {}
        for i, layer in enumerate(self.body):
            x = layer(x)
            if i in self.wanted:
                out[self.wanted[i]] = x
        return out


def _read_features_state(path: Path) -> dict[str, torch.Tensor]:
    """The ``features.*`` tensors of a VGG state dict file: torchvision's, or under a prefix (``backbone.``)."""
    if not path.is_file():
        raise ConfigError(f"VGG weight file not found: {path}")
    if path.suffix not in (".safetensors", ".pth", ".pt"):
        raise ConfigError(f"VGG weights must be .safetensors, .pth or .pt, got {path.name}")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)  # tensors only: no code runs on load
    except Exception as e:  # a truncated download, a pickle with objects in it, not a state dict at all...
        raise ConfigError(
            f"cannot read tensors from {path} ({type(e).__name__}); "
            "give a .safetensors file or a .pth holding only a state dict"
        ) from None
    if not isinstance(state, dict):
        raise ConfigError(f"{path} holds a {type(state).__name__}, not a state dict")
    first = [k for k in state if k.endswith("features.0.weight")]
    if not first:
        raise ConfigError(f"{path} holds no VGG features (no key ending in 'features.0.weight')")
    prefix = first[0][: -len("0.weight")]
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def build_vgg(
    name: str = "vgg19", weights: str | Path | None = None, device: str | torch.device | None = None, pool: str = "avg"
) -> VGGFeatures:
    """The frozen feature extractor, up to relu5_1.

    weights: None -> torchvision's random init (seed torch first for reproducibility); otherwise a
    .safetensors / .pth file with torchvision's ``features.*`` names (resolving "imagenet" to a file is the
    job's business: see worker.weights_store). Every conv up to relu5_1 must be in the file, with its shape.
    """
    index = layer_indices(name)
    features = _vgg_features(name)[: max(index[n] for n in (*STYLE_LAYERS, CONTENT_LAYER)) + 1]  # up to relu5_1
    if weights is None:
        for m in features.modules():
            if isinstance(m, nn.Conv2d):  # torchvision's VGG init
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
    else:
        path = Path(weights)
        needed = features.state_dict()
        state = {k: v for k, v in _read_features_state(path).items() if k in needed}  # convs after relu5_1 unused
        # A vgg16 file on a vgg19 net (or the reverse) misses a conv or has one of the wrong shape: say which.
        missing = [k for k in needed if k not in state]
        wrong = [k for k in state if state[k].shape != needed[k].shape]
        if missing or wrong:
            k = (missing or wrong)[0]
            problem = "lacks" if missing else f"has shape {tuple(state[k].shape)}, not {tuple(needed[k].shape)}, for"
            raise ConfigError(f"{path} does not fit torchvision's {name}: it {problem} features.{k}")
        features.load_state_dict(state, strict=True)
    return VGGFeatures(features, name, pool).to(device or "cpu")


# A filter's factor is at most this many times its layer's median factor. Filters that barely fire on the
# measured images would otherwise get gains of hundreds (139-421x the median on 32 real paintings with the
# ImageNet VGG19), and the Gram loss, quartic in the activations, would then be dominated by a few rare filters.
MAX_GAIN = 10.0


@torch.no_grad()
def mean_activation_scales(
    vgg: VGGFeatures, images: list[torch.Tensor], max_gain: float = MAX_GAIN
) -> dict[str, torch.Tensor]:
    """Gatys et al.'s normalisation: per conv filter, the factor that makes its mean activation 1.

    "We normalized the network by scaling the weights such that the mean activation of each convolutional
    filter over images and positions is equal to one." ``rescale`` applies the factors so that each
    normalised activation is the original one times its factor, hence the factor of a filter is 1 / its
    mean ReLU activation in the original network, all measured in one pass per image. Measured on the
    network as trained (max pooling, whatever ``vgg.pool`` is), like the paper, so the same factors serve
    both poolings. A factor is capped at ``max_gain`` times its layer's median (``MAX_GAIN``: the one
    departure from the paper, for filters that rarely fire); a filter that never fires gets the median.
    Style loss is quartic and content loss quadratic in the activations, so the factors decide how the
    filters and layers weigh in the losses; the dose (``worker.ml.dose``) makes the overall scale irrelevant.

    images: (3, H, W) floats in [0, 1], any sizes. Returns {"<body index>": (C,) factors} for every conv.
    """
    device = next(vgg.parameters()).device
    layers = [nn.MaxPool2d(2, 2) if isinstance(m, nn.AvgPool2d) else m for m in vgg.body]
    convs = [i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d)]
    totals = {i: torch.zeros(layers[i].out_channels, dtype=torch.float64, device=device) for i in convs}
    positions = {i: 0 for i in convs}
    for img in images:
        x = (img[None].to(device, torch.float32) - vgg.mean) / vgg.std
        for i, layer in enumerate(layers):
            x = layer(x)
            if i in totals:
                totals[i] += torch.relu(x).sum((0, 2, 3)).double()
                positions[i] += x.shape[2] * x.shape[3]
    scales: dict[str, torch.Tensor] = {}
    for i in convs:
        mean = totals[i] / max(positions[i], 1)
        fires = mean > 0
        factor = 1.0 / mean.clamp(min=1e-30)
        median = factor[fires].median() if bool(fires.any()) else torch.tensor(1.0, dtype=torch.float64)
        factor = torch.where(fires, factor.clamp(max=float(max_gain * median)), median)
        scales[str(i)] = factor.float().cpu()
    return scales


def vgg_channels(layer: str) -> int:
    """Filters at a paper layer name (relu<block>_<k>): 64, 128, 256, 512, 512 by block."""
    return {"1": 64, "2": 128, "3": 256, "4": 512, "5": 512}[layer[4]]
