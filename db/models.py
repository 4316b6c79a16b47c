"""The store's tables: SQLAlchemy 2 typed models.

The job table is the source of truth (docs/architecture.md, rule 1): a row is committed before
its Celery message is sent, claimed by a worker with a compare-and-set update,
and kept alive by heartbeats. Timestamps are naive UTC everywhere so SQLite and
PostgreSQL compare them the same way.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
FINISHED_STATES = ("succeeded", "failed", "cancelled")


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def new_id() -> str:
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    # Stable constraint names so Alembic migrations work on SQLite and PostgreSQL alike.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    root: Mapped[str] = mapped_column(Text)  # absolute folder the image paths are relative to
    format: Mapped[str] = mapped_column(String(40))
    label_column: Mapped[str | None] = mapped_column(String(100))
    seed: Mapped[int]
    split: Mapped[list[Any]]  # [train, val, test] fractions
    classes: Mapped[list[Any]]  # sorted labels of the usable images; class index = position
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    images: Mapped[list[Image]] = relationship(back_populates="dataset", cascade="all, delete-orphan")


class Image(Base):
    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("dataset_id", "path"), Index("ix_images_dataset_split", "dataset_id", "split"))

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(String(1024))  # relative to the dataset root, posix
    label: Mapped[str | None] = mapped_column(String(200))
    split: Mapped[str | None] = mapped_column(String(8))  # train | val | test; NULL when skipped
    sha256: Mapped[str | None] = mapped_column(String(64))
    width: Mapped[int | None]
    height: Mapped[int | None]
    status: Mapped[str] = mapped_column(String(16), default="ok")  # ok | skipped
    error: Mapped[str | None] = mapped_column(Text)  # why a skipped file could not be used
    attrs: Mapped[dict[str, Any]] = mapped_column(default=dict)

    dataset: Mapped[Dataset] = relationship(back_populates="images")


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_heartbeat", "status", "heartbeat_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(32))  # train | ...
    queue: Mapped[str] = mapped_column(String(32), default="gpu")
    params: Mapped[dict[str, Any]]
    params_hash: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=3)
    worker: Mapped[str | None] = mapped_column(String(200))
    worker_pid: Mapped[int | None]  # the process (a worker's long-lived child) that claimed it last
    # A fresh token per claim: writes from a worker that lost its claim are refused.
    lease_token: Mapped[str | None] = mapped_column(String(36))
    heartbeat_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    progress: Mapped[float] = mapped_column(default=0.0)  # 0..1
    message: Mapped[str | None] = mapped_column(Text)  # last progress note, e.g. "epoch 3/10"
    # The sweep or style batch this job belongs to (status, cancel and retry act on the group).
    group_id: Mapped[str | None] = mapped_column(String(36), index=True)
    # A job that needs another's output (a grid cell needs its features job) is sent
    # only once that job succeeded; the worker that finishes it sends the dependants.
    depends_on: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), index=True)


class Sweep(Base):
    """A hyperparameter grid: one row, one job per cell (see SweepCell)."""

    __tablename__ = "sweeps"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    arch: Mapped[str] = mapped_column(String(40))
    spec: Mapped[dict[str, Any]]  # the axes and fixed options as submitted
    spec_hash: Mapped[str] = mapped_column(String(64), index=True)
    finetune_top: Mapped[int] = mapped_column(default=0)  # fine-tune the K best cells when all are done
    # The validation metric that ranks the cells (grid_leaderboard, fine-tune follow-ups): macro_f1 | top1 | top2.
    metric: Mapped[str] = mapped_column(String(16), default="macro_f1", server_default="macro_f1")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SweepCell(Base):
    __tablename__ = "sweep_cells"
    __table_args__ = (UniqueConstraint("sweep_id", "cell_index", "stage"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sweep_id: Mapped[str] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"), index=True)
    cell_index: Mapped[int]
    stage: Mapped[str] = mapped_column(String(16), default="grid")  # grid | finetune
    cell: Mapped[dict[str, Any]]  # the axis values of this cell
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"))
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    reused: Mapped[bool] = mapped_column(default=False)  # a finished run of an identical earlier cell


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    arch: Mapped[str] = mapped_column(String(40))
    config: Mapped[dict[str, Any]]
    best_epoch: Mapped[int | None]
    best_val_top1: Mapped[float | None]
    best_val_top2: Mapped[float | None]
    best_val_macro_f1: Mapped[float | None]
    test_top1: Mapped[float | None]
    test_top2: Mapped[float | None]
    test_macro_f1: Mapped[float | None]
    checkpoint_path: Mapped[str | None] = mapped_column(Text)  # best weights, relative to the artifacts root
    # Full training state after the last completed epoch: a retried job resumes from it.
    state_path: Mapped[str | None] = mapped_column(Text)
    last_epoch: Mapped[int] = mapped_column(default=0, server_default="0")
    test_per_class_f1: Mapped[list[Any] | None]
    test_confusion: Mapped[list[Any] | None]  # rows: true class, columns: predicted class
    # What the backbone started from: a weights name ("imagenet", "random", an imported name) and its file's sha256.
    weights: Mapped[str | None] = mapped_column(String(100))
    weights_sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Prediction(Base):
    """A classifier's answer for one test image (the style-transfer analysis builds on these)."""

    __tablename__ = "predictions"
    __table_args__ = (UniqueConstraint("run_id", "image_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(String(200))
    predicted: Mapped[str] = mapped_column(String(200))
    correct: Mapped[bool]
    top3: Mapped[list[Any]]  # [[label, probability], ...] best first


class EpochMetric(Base):
    __tablename__ = "epoch_metrics"
    __table_args__ = (UniqueConstraint("run_id", "epoch", "phase"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    epoch: Mapped[int]  # 1-based, counted across all phases of a staged run
    phase: Mapped[str] = mapped_column(String(16))  # train | val
    stage: Mapped[str] = mapped_column(String(16), default="main")  # main | head | finetune
    loss: Mapped[float]
    top1: Mapped[float]
    top2: Mapped[float]
    macro_f1: Mapped[float]
    lr: Mapped[float]
    seconds: Mapped[float] = mapped_column(default=0.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StyleBatch(Base):
    """A request to stylize many (content, style) pairs and classify the results."""

    __tablename__ = "style_batches"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    classifier_run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    spec: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StyleBatchPair(Base):
    """Which pairs a batch asked for; a pair already stylized by an identical request is shared."""

    __tablename__ = "style_batch_pairs"
    __table_args__ = (UniqueConstraint("batch_id", "pair_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("style_batches.id", ondelete="CASCADE"), index=True)
    pair_hash: Mapped[str] = mapped_column(String(64), index=True)
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id"))  # NULL when reused


class Stylization(Base):
    """One stylized pair and what the classifier made of it."""

    __tablename__ = "stylizations"

    id: Mapped[int] = mapped_column(primary_key=True)
    pair_hash: Mapped[str] = mapped_column(String(64), unique=True)  # content, style, weights, steps, size, ...
    batch_id: Mapped[str] = mapped_column(ForeignKey("style_batches.id"), index=True)  # the batch that produced it
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"))
    content_image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    content_artist: Mapped[str] = mapped_column(String(200))
    style_image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    style_artist: Mapped[str] = mapped_column(String(200))
    content_weight: Mapped[float]  # alpha
    style_weight: Mapped[float]  # beta actually used (for a dose row, set from the pair's own loss scales)
    dose: Mapped[float | None]  # the scale-free dose (worker.ml.dose); None: a raw-beta row (--style-weight)
    balance: Mapped[float | None]  # beta*L_style / (alpha*L_content) at the pair's reference noise, before optimising
    steps: Mapped[int]
    size: Mapped[int]
    optimizer: Mapped[str] = mapped_column(String(16))
    vgg_weights: Mapped[str] = mapped_column(String(300))  # the weights' name: "imagenet", "random", an imported name
    vgg_weights_sha256: Mapped[str | None] = mapped_column(String(64))  # None only for random init
    init: Mapped[str] = mapped_column(String(16), default="noise")  # noise | content: where the optimisation starts
    pool: Mapped[str] = mapped_column(String(8), default="avg")  # avg (the paper's) | max
    loss: Mapped[str] = mapped_column(String(16), default="gatys")  # gatys (the paper's normalisation) | tutorial
    seed: Mapped[int] = mapped_column(default=0)  # this pair's noise seed
    tv_weight: Mapped[float] = mapped_column(default=0.0)
    vgg_norm: Mapped[str] = mapped_column(String(64), default="none")  # key of the mean-activation scaling, or none
    loss_ratio: Mapped[float | None]  # achieved beta*style / alpha*content at the final image
    content_loss: Mapped[float]
    style_loss: Mapped[float]
    classifier_run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    predicted: Mapped[str] = mapped_column(String(200))
    top3: Mapped[list[Any]]
    outcome: Mapped[str] = mapped_column(String(8))  # content | style | other | same (same-artist pair, never pooled)
    checkpoint_sha256: Mapped[str | None] = mapped_column(String(64))  # the classifier file that answered
    probs: Mapped[dict[str, Any] | None]  # {artist: probability} over every class
    p_content: Mapped[float | None]  # the classifier's probability for the content artist
    p_style: Mapped[float | None]  # ... and for the style artist
    answers: Mapped[list[Any] | None]  # [[step, predicted, p_content, p_style], ...] at 1/4, 1/2 and all the steps
    predicted_half: Mapped[str | None] = mapped_column(String(200))  # the answer at half the steps
    precision: Mapped[str | None] = mapped_column(String(8))  # bf16 | fp32: the optimisation's convolutions
    device: Mapped[str | None] = mapped_column(String(16))  # cuda | cpu | mps
    steps_done: Mapped[int | None]  # iterations the optimisation ran (< steps: stopped early); None: not recorded
    stop_reason: Mapped[str | None] = mapped_column(String(24))  # steps done | line search gave up | loss not finite
    image_path: Mapped[str] = mapped_column(Text)  # PNG, relative to the artifacts root
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Weights(Base):
    """A weight file every worker can load: kept under the artifacts root, known by its sha256."""

    __tablename__ = "weights"
    __table_args__ = (UniqueConstraint("arch", "sha256"), Index("ix_weights_arch_name", "arch", "name"))

    id: Mapped[int] = mapped_column(primary_key=True)
    arch: Mapped[str] = mapped_column(String(40))  # a train arch or a style VGG (vgg19)
    name: Mapped[str] = mapped_column(String(100))  # what --weights names: "imagenet" or an imported name
    sha256: Mapped[str] = mapped_column(String(64))  # of the file at ``path``
    path: Mapped[str] = mapped_column(Text)  # safetensors, relative to the artifacts root
    source: Mapped[str] = mapped_column(Text)  # where it came from: torchvision's file, an imported file
    features_only: Mapped[bool] = mapped_column(default=False)  # a backbone without its ImageNet classifier
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StyleControl(Base):
    """An unstylized image classified through exactly the path a stylized one takes (resize, 8-bit PNG, crop)."""

    __tablename__ = "style_controls"
    __table_args__ = (UniqueConstraint("classifier_run_id", "checkpoint_sha256", "image_id", "size"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    classifier_run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    size: Mapped[int]  # long side in px, as the stylizations it controls
    label: Mapped[str] = mapped_column(String(200))
    predicted: Mapped[str] = mapped_column(String(200))
    correct: Mapped[bool]
    top3: Mapped[list[Any]]
    checkpoint_sha256: Mapped[str | None] = mapped_column(String(64))  # the classifier file; None before 0010
    probs: Mapped[dict[str, Any] | None]  # {artist: probability} over every class
    image_path: Mapped[str] = mapped_column(Text)  # the control PNG, relative to the artifacts root
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Attributor(Base):
    """Who else names the artist of a batch's works: a classifier run other than the batch's own, a nearest-centroid
    attributor in a VGG space (style: Grams, content: relu4_2), or a registered embedding. Its key names what it is
    and pins it (a checkpoint's sha256, or the hash of its spec), so two answers under one key come from one thing."""

    __tablename__ = "attributors"

    key: Mapped[str] = mapped_column(String(120), primary_key=True)  # run-12@1a2b3c4d5e6f, style-space@9f..., ...
    kind: Mapped[str] = mapped_column(String(16))  # classifier | style-space | content-space | embedding
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    classes: Mapped[list[Any]]  # the artists it can name, in the order of its probabilities
    spec: Mapped[dict[str, Any]]  # what it is: the run and its sha256, or the VGG, size and training images, ...
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Attribution(Base):
    """One attributor's answer for one stored picture of a batch: a stylization or a matched control."""

    __tablename__ = "attributions"
    __table_args__ = (UniqueConstraint("attributor", "subject", "subject_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    attributor: Mapped[str] = mapped_column(ForeignKey("attributors.key", ondelete="CASCADE"), index=True)
    subject: Mapped[str] = mapped_column(String(12))  # stylization | control
    subject_id: Mapped[int]  # stylizations.id or style_controls.id, as ``subject`` says
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"))
    predicted: Mapped[str] = mapped_column(String(200))
    probs: Mapped[dict[str, Any]]  # {artist: probability} over every class
    distances: Mapped[dict[str, Any] | None]  # nearest-centroid attributors: {artist: distance to its centroid}
    # content-space, stylizations only: cosine of its relu4_2 features to its content image's and its style image's
    near_content: Mapped[float | None]
    near_style: Mapped[float | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
