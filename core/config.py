"""The vocabulary of a job, without PyTorch: architectures, heads, modes, presets, and the
typed configurations of a training run and of a style transfer.

The CLI validates every option against these before it writes a job row, and it
must start in well under a second, so nothing here may import torch (a test checks);
the modules that build and run models import their names from here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from numbers import Integral

from core.errors import ConfigError

ARCHS = ("vgg16", "resnet18", "resnet50", "inception_v3", "alexnet", "baseline-cnn", "logistic")
HEADS = ("linear", "gap", "spp")
MODES = ("feature-extract", "fine-tune", "staged")
OPTIMIZERS = ("sgd", "adam", "rmsprop")

# Smallest input side that leaves each backbone a feature map of at least 1x1 (AlexNet's stride-4 11x11 stem
# and three 3x3/2 pools need 63 px; Inception V3's stem needs 75 px; 32 px is one cell of a stride-32 trunk).
MIN_IMAGE_SIZE = {
    "vgg16": 32,
    "resnet18": 32,
    "resnet50": 32,
    "inception_v3": 75,
    "alexnet": 63,
    "baseline-cnn": 16,
    "logistic": 1,
}


@dataclass(frozen=True)
class ModelConfig:
    arch: str  # backbone, one of ARCHS
    num_classes: int  # artists (or periods) to tell apart
    head: str = "gap"  # linear (flatten) | gap (global average pool) | spp (pyramid 1+2x2+3x3 max pool)
    dense: tuple[int, ...] = ()  # widths of the Linear -> ReLU -> Dropout -> BatchNorm1d blocks before the output
    dropout: float = 0.5  # dropout probability inside each dense block (no dense blocks: unused)
    image_size: int | None = None  # square input side in px; None: default_image_size(arch)
    weights: str | None = None  # the weights' name, for the record: None or "random", "imagenet", an imported name

    def __post_init__(self) -> None:
        if self.image_size is None:  # frozen: resolve the default once, so every reader sees a number
            object.__setattr__(self, "image_size", default_image_size(self.arch))

    def validate(self) -> ModelConfig:
        """Raise ConfigError for any option that cannot build; returns self for chaining."""
        if self.arch not in ARCHS:
            raise ConfigError(f"unknown arch {self.arch!r}; choose from {', '.join(ARCHS)}")
        if self.head not in HEADS:
            raise ConfigError(f"unknown head {self.head!r}; choose from {', '.join(HEADS)}")
        if self.arch == "logistic" and self.head != "linear":
            raise ConfigError(f"head {self.head!r} pools spatial maps and 'logistic' has none: use head 'linear'")
        if not isinstance(self.dense, (tuple, list)) or not all(
            isinstance(d, Integral) and not isinstance(d, bool) and d > 0 for d in self.dense
        ):
            raise ConfigError(f"dense block widths must be positive integers, got {self.dense!r}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if not isinstance(self.num_classes, Integral) or self.num_classes < 2:
            raise ConfigError(f"a classifier needs at least 2 classes, got {self.num_classes}")
        if not isinstance(self.image_size, Integral) or self.image_size < MIN_IMAGE_SIZE[self.arch]:
            raise ConfigError(
                f"{self.arch} needs images of at least {MIN_IMAGE_SIZE[self.arch]} px, got {self.image_size}"
            )
        if self.weights == "imagenet" and self.arch not in IMAGENET_ARCHS:
            raise ConfigError(f"{self.arch} has no ImageNet weights; use --weights random or a weight file")
        if self.weights is not None and not self.weights:
            raise ConfigError("weights must be None or a name ('random', 'imagenet', an imported name), got ''")
        return self


def default_image_size(arch: str) -> int:
    """The input side each backbone was designed for: 299 for Inception V3, 224 otherwise."""
    return 299 if arch == "inception_v3" else 224


# Backbones torchvision ships ImageNet weights for (the baseline CNN and logistic regression have none).
IMAGENET_ARCHS = ("vgg16", "resnet18", "resnet50", "inception_v3", "alexnet")
# Augmentation presets (worker.ml.augment.PRESET_RANGES gives each its ranges).
PRESETS = ("none", "crop-flip", "rotate-zoom-flip", "keras")


METRICS = ("macro_f1", "top1", "top2")
METRIC_NAMES = {"macro_f1": "macro-F1", "top1": "top-1", "top2": "top-2"}  # how tables and plots name them


def check_feature_views(augment: str, views: int) -> None:
    """Cached features carry augmentation only in their extra views: refuse a preset with one view.

    With ``views == 1`` only the plain view 0 is stored, so every epoch would train on the same
    unaugmented maps while the run's record says it was augmented.
    """
    if augment != "none" and views < 2:
        raise ConfigError(
            f"augmentation in feature-extract mode needs --views >= 2: with {views} view every cell "
            f"trains on the plain image only (--augment {augment}); pass e.g. --views 4, or --augment none"
        )


@dataclass(frozen=True)
class TrainConfig:
    arch: str  # backbone name, one of ARCHS
    num_classes: int
    epochs: int = 10  # epochs of the main phase
    batch_size: int = 32
    lr: float = 1e-4
    image_size: int = 224  # network input side in pixels
    mode: str = "fine-tune"  # feature-extract | fine-tune | staged
    head: str = "gap"  # linear | gap | spp
    dense: tuple[int, ...] = ()  # widths of the dense blocks after pooling
    dropout: float = 0.5
    weights: str | None = None  # the weights' name: None or "random" (random init) | "imagenet" | an imported name
    optimizer: str = "adam"  # sgd | adam | rmsprop
    weight_decay: float = 0.0
    augment: str = "crop-flip"  # one of PRESETS
    metric: str = "macro_f1"  # validation metric for best checkpoint, plateau and early stop
    plateau_patience: int = 4  # epochs without improvement before the LR is cut
    plateau_factor: float = 0.1
    early_stop_patience: int = 10  # epochs without improvement before training stops
    head_epochs: int = 0  # staged: epochs training the head on a frozen backbone
    finetune_epochs: int = 0  # staged: epochs fine-tuning everything at lr * finetune_lr_scale
    finetune_lr_scale: float = 1e-3
    seed: int = 0
    # A grid cell trained on cached backbone features (feature-extract grids) sees its augmentation only
    # through these: views stored per training image (view 0 plain), drawn by the features job from this seed.
    # Images trained end to end are augmented on the fly and keep the defaults.
    views: int = 1
    features_seed: int = 0

    def __post_init__(self) -> None:
        if self.views < 1:
            raise ConfigError(f"--views must be at least 1, got {self.views}")
        if self.epochs < 1:
            raise ConfigError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"--lr must be a positive number, got {self.lr}")
        if self.mode not in MODES:
            raise ConfigError(f"unknown --mode {self.mode!r}; choose from {', '.join(MODES)}")
        if self.metric not in METRICS:
            raise ConfigError(f"unknown --metric {self.metric!r}; choose from {', '.join(METRICS)}")
        for name in ("head_epochs", "finetune_epochs"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 0, got {getattr(self, name)}")
        if not 0 < self.finetune_lr_scale <= 1:
            raise ConfigError(f"--finetune-lr-scale must be in (0, 1], got {self.finetune_lr_scale}")
        if self.mode == "staged" and not (self.head_epochs or self.finetune_epochs):
            raise ConfigError("--mode staged needs --head-epochs and/or --finetune-epochs")
        if self.num_classes < 2:
            raise ConfigError(f"a classifier needs at least 2 classes, the dataset has {self.num_classes}")

    def model_config(self) -> ModelConfig:
        return ModelConfig(
            arch=self.arch,
            num_classes=self.num_classes,
            head=self.head,
            dense=tuple(self.dense),
            dropout=self.dropout,
            image_size=self.image_size,
            weights=self.weights,
        )

    def phases(self) -> list[tuple[str, str, int, float]]:
        """(stage, mode, epochs, lr) in order; one phase unless staged."""
        if self.mode != "staged":
            return [("main", self.mode, self.epochs, self.lr)]
        phases = [("main", "fine-tune", self.epochs, self.lr)]
        if self.head_epochs:
            phases.append(("head", "feature-extract", self.head_epochs, self.lr))
        if self.finetune_epochs:
            phases.append(("finetune", "fine-tune", self.finetune_epochs, self.lr * self.finetune_lr_scale))
        return phases

    @property
    def total_epochs(self) -> int:
        return sum(p[2] for p in self.phases())

    def to_json(self) -> dict:
        d = asdict(self)
        d["dense"] = list(self.dense)
        return d

    @classmethod
    def from_json(cls, d: dict) -> TrainConfig:
        """The config a job's params or a run row hold (``to_json``'s output); fields a row predates take
        their defaults, and an unknown field is refused (ConfigError)."""
        if not isinstance(d, dict):
            raise ConfigError(f"a training config must be an object, got {type(d).__name__}")
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"unknown training config field(s): {', '.join(unknown)}")
        try:
            return cls(**{**d, "dense": tuple(d.get("dense") or ())})
        except TypeError as err:  # a required field missing, a value of the wrong type
            raise ConfigError(f"bad training config: {err}") from None


VGG_NAMES = ("vgg19", "vgg16")
# The smallest side relu5_1 survives: four 2x2 pools before it, so 16 px -> 1 px.
MIN_SIDE = 16


STYLE_LOSSES = ("gatys", "tutorial")
STYLE_POOLS = ("avg", "max")
STYLE_INITS = ("noise", "content")
# lbfgs: per-pair Armijo backtracking, the batch re-evaluated until every pair accepts; lbfgs-onepass: the same
# trials, one batch evaluation per iteration, each pair backtracking on its own iterations; lbfgs-unit: unit step,
# no line search (the public Gatys implementations); adam. See worker.ml.style.lbfgs_one_pass.
STYLE_OPTIMIZERS = ("lbfgs", "lbfgs-onepass", "lbfgs-unit", "adam")
# The most pairs one optimisation holds (an H200 fits about this many at 256 px); a stylize chunk defaults to it so
# that one job can fill the device batch that the worker sizes from its free memory.
MAX_DEVICE_BATCH = 256


@dataclass(frozen=True)
class StyleConfig:
    vgg: str = "vgg19"  # vgg19 (Gatys' choice) | vgg16
    content_weight: float = 1.0  # alpha: weight of the relu4_2 content loss
    style_weight: float = 1e3  # beta: weight of the style loss (the paper's alpha/beta = 1e-3 with alpha = 1)
    tv_weight: float = 0.0  # total variation: smooths high-frequency noise; 0 is the paper's objective
    init: str = "noise"  # noise (the paper's white noise) | content: the image the optimisation starts from
    pool: str = "avg"  # avg (the paper: "slightly more appealing results") | max (the network as trained)
    loss: str = "gatys"  # gatys: the paper's E_l and 1/2 sum content loss | tutorial: PyTorch tutorial's MSEs
    # lbfgs-onepass: one evaluation of the device batch per step, on CPU (fp32) and under CUDA's bf16 alike, with
    # lbfgs's answers (docs/benchmarks.md, "The default optimiser") | lbfgs | lbfgs-unit | adam (STYLE_OPTIMIZERS)
    optimizer: str = "lbfgs-onepass"
    steps: int = 300  # optimiser iterations; an L-BFGS iteration costs >= 1 forward+backward
    size: int = 256  # long side of the output in px, aspect kept (the caller resizes)
    lr: float = 0.02  # Adam step size, in pixel units of [0, 1]; L-BFGS sets its own step by line search
    history: int = 10  # L-BFGS memory: (s, y) pairs kept per pair
    seed: int = 0  # with the caller's per-pair key, seeds the noise init

    def __post_init__(self) -> None:
        if self.vgg not in VGG_NAMES:
            raise ConfigError(f"unknown vgg {self.vgg!r}; choose from {', '.join(VGG_NAMES)}")
        if self.optimizer not in STYLE_OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose from {', '.join(STYLE_OPTIMIZERS)}")
        for name, allowed in (("init", STYLE_INITS), ("pool", STYLE_POOLS), ("loss", STYLE_LOSSES)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"unknown {name} {getattr(self, name)!r}; choose from {', '.join(allowed)}")
        if self.steps < 1:
            raise ConfigError(f"steps must be at least 1, got {self.steps}")
        if self.size < MIN_SIDE:
            raise ConfigError(f"size must be at least {MIN_SIDE} px (relu5_1 follows four 2x2 pools), got {self.size}")
        for name in ("content_weight", "style_weight", "tv_weight"):
            w = getattr(self, name)
            if not (math.isfinite(w) and w >= 0):
                raise ConfigError(f"{name} must be a finite non-negative number, got {w}")
        if self.content_weight == 0 and self.style_weight == 0:
            raise ConfigError("content_weight and style_weight are both 0: nothing to optimise")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if self.history < 1:
            raise ConfigError(f"history must be at least 1, got {self.history}")
