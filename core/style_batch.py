"""A style batch as one typed object: what its chunks share, its treatment, and how its pairs were drawn.

``StyleBatchSpec`` is built once, when a batch is planned (``orchestrator.jobs.style_batch``), stored as
``StyleBatch.spec`` (``to_dict``) and read by the planner that names every pair (``orchestrator.jobs.submit``).
A chunk job carries the part a worker needs (``core.params.stylize_params`` writes it, ``StyleChunk.from_dict``
reads it back, typed, after ``worker.payload`` checked its JSON).

Two rules are decided here and nowhere else:
- a batch's treatment is scale-free doses or raw betas, never both (``Treatment.of``), and every pair of a
  chunk carries a level of that treatment (``StyleChunk.from_dict``);
- the weights of the style VGG are named in every cache key by ``core.weights.identity`` (random weights by the
  style seed they are drawn from).

The dicts these write are the ones the code before this module wrote, key for key: pair hashes, and so the reuse
of finished pairs, depend on them (tests/unit/orchestrator/test_style_batch_hashes.py pins them).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from core.config import StyleConfig
from core.errors import ConfigError
from core.weights import WeightsRecord, identity

# Scale-free doses (worker.ml.dose: the style term's size relative to the content term's at the pair's reference
# noise). 0 is the null dose (a reconstruction); the rest, a decade apart, span the flip from content to style
# artist measured on real paintings with real weights (docs/findings.md): at 64 px the style
# artist overtakes near dose 1, at 128 px between 10 and 1000, so the grid reaches 1000.
DEFAULT_DOSES = (0.0, 0.1, 1.0, 10.0, 100.0, 1000.0)
# A treatment's levels: the key each pair carries (and its hash names), and the option that sets them.
FIELDS = {"dose": "--dose", "style_weight": "--style-weight"}


@dataclass(frozen=True)
class Treatment:
    """What differs between a pair's stylizations: scale-free doses (the study's) or raw betas (the paper's)."""

    field: str  # "dose" or "style_weight": the key every pair of the batch carries
    levels: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.field not in FIELDS:
            raise ConfigError(f"a treatment is 'dose' or 'style_weight', got {self.field!r}")
        if not self.levels:
            raise ConfigError(f"{FIELDS[self.field]} needs at least one value")
        if any(not (isinstance(v, int | float) and math.isfinite(v) and v >= 0) for v in self.levels):
            raise ConfigError(f"{FIELDS[self.field]} values must be finite and non-negative")

    @classmethod
    def of(cls, doses: list[float] | None = None, style_weights: list[float] | None = None) -> Treatment:
        """The one place the rule is decided: doses or raw betas, not both; neither is the default doses."""
        if doses is not None and style_weights is not None:
            raise ConfigError("give --dose or --style-weight, not both: a batch's strata are doses or raw betas")
        if style_weights is not None:
            return cls("style_weight", tuple(style_weights))
        return cls("dose", tuple(DEFAULT_DOSES if doses is None else doses))

    @property
    def dosed(self) -> bool:
        """A dose batch: each pair's beta is set from its own loss scales (``worker.ml.dose``)."""
        return self.field == "dose"

    @property
    def noun(self) -> str:
        return "doses" if self.dosed else "raw betas"

    def keywords(self, levels: list[float]) -> dict:
        """``levels`` as the transfer takes them: ``doses=`` or ``style_weights=``, the other None."""
        return {"doses": levels, "style_weights": None} if self.dosed else {"doses": None, "style_weights": levels}

    def to_dict(self) -> dict:
        """The spec's two keys, one of them null (as stored since the first batch)."""
        levels = list(self.levels)
        return {"doses": levels if self.dosed else None, "style_weights": None if self.dosed else levels}


@dataclass(frozen=True)
class Sampling:
    """How a batch's pairs were chosen: ``cross-artist``, ``all`` or a CSV file; pairs per cell; the split."""

    pairs: str = "cross-artist"
    per_cell: int = 5
    split: str = "test"


@dataclass(frozen=True)
class VggNorm:
    """The mean-activation normalisation of the batch's VGG: a content key and the train images it is measured on."""

    key: str
    images: tuple[int, ...]

    def to_dict(self) -> dict:
        return {"key": self.key, "images": list(self.images)}

    @classmethod
    def from_dict(cls, d: dict | None) -> VggNorm | None:
        return None if d is None else cls(d["key"], tuple(d["images"]))


@dataclass(frozen=True)
class StyleBatchSpec:
    """A style batch as submitted. ``classifier_sha256`` pins the checkpoint (None only in specs from before)."""

    dataset: str
    classifier_run_id: int
    style: StyleConfig
    treatment: Treatment
    vgg_weights: WeightsRecord
    vgg_norm: VggNorm | None
    sampling: Sampling
    classifier_sha256: str | None = None

    @property
    def vgg_identity(self) -> str:
        """The VGG's weights as every cache key names them (random ones by the style seed)."""
        return identity(self.vgg_weights, self.style.seed)

    def to_dict(self) -> dict:
        """``StyleBatch.spec``: the very dict (keys and their order) batches have always stored."""
        return {
            "dataset": self.dataset,
            **asdict(self.sampling),
            **self.treatment.to_dict(),
            "classifier_sha256": self.classifier_sha256,
            "style": asdict(self.style),
            "vgg_weights": self.vgg_weights.to_json(),
            "vgg_norm": self.vgg_norm and self.vgg_norm.to_dict(),
            "classifier_run_id": self.classifier_run_id,
        }

    @classmethod
    def from_dict(cls, d: dict) -> StyleBatchSpec:
        return cls(
            dataset=d["dataset"],
            classifier_run_id=d["classifier_run_id"],
            style=StyleConfig(**d["style"]),
            treatment=Treatment.of(d.get("doses"), d.get("style_weights")),
            vgg_weights=WeightsRecord.from_json(d["vgg_weights"]),
            vgg_norm=VggNorm.from_dict(d.get("vgg_norm")),
            sampling=Sampling(d["pairs"], d["per_cell"], d["split"]),
            classifier_sha256=d.get("classifier_sha256"),
        )


@dataclass(frozen=True)
class StylePair:
    """One stylization: a (content, style) pair at one level of the batch's treatment, named by its hash."""

    content: int
    style: int
    level: float
    seed: int  # one per (content, style): a pair's levels start from the same noise
    hash: str

    def to_dict(self, treatment: Treatment) -> dict:
        return {"content": self.content, "style": self.style, treatment.field: self.level, "seed": self.seed} | {
            "hash": self.hash
        }


@dataclass(frozen=True)
class StyleChunk:
    """A stylize job's params, typed (the worker's view of its part of the batch). ``device_batch`` stays in the
    params: the worker writes the size it picked back there, so an out-of-memory retry halves what really ran."""

    batch_id: str
    classifier_run_id: int
    classifier_sha256: str | None
    treatment: Treatment
    style: StyleConfig
    vgg_weights: WeightsRecord
    vgg_norm: VggNorm | None
    pairs: tuple[StylePair, ...]

    @property
    def vgg_identity(self) -> str:
        return identity(self.vgg_weights, self.style.seed)

    @classmethod
    def from_dict(cls, p: dict[str, Any]) -> StyleChunk:
        """Typed, with the treatment rule checked: a dose chunk's pairs carry doses, a raw-beta chunk's betas."""
        field = "dose" if p.get("doses") is not None else "style_weight"
        for n, q in enumerate(p["pairs"]):
            other = "style_weight" if field == "dose" else "dose"
            if field not in q or other in q:
                raise ConfigError(f"pair {n} of a {field} chunk must carry a {field} and no {other}")
        levels = [q[field] for q in p["pairs"]]
        return cls(
            batch_id=p["batch_id"],
            classifier_run_id=p["classifier_run_id"],
            classifier_sha256=p.get("classifier_sha256"),
            treatment=Treatment(field, tuple(p["doses"]) if p.get("doses") is not None else tuple(levels)),
            style=StyleConfig(**p["style"]),
            vgg_weights=WeightsRecord.from_json(p.get("vgg_weights")),
            vgg_norm=VggNorm.from_dict(p.get("vgg_norm")),
            pairs=tuple(StylePair(q["content"], q["style"], q[field], q["seed"], q["hash"]) for q in p["pairs"]),
        )
