"""What the worker's job glue runs against in unit tests: a migrated SQLite file store, settings naming it,
and a Celery app on kombu's in-memory transport whose queues the tests read back. No Redis, no worker
process, no PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from core.config import TrainConfig
from core.messages import QUEUES, configure
from core.settings import Settings
from db import jobs
from db.engine import make_engine, make_sessionmaker
from db.migrate import upgrade
from db.models import Dataset, Job


def make_settings(root: Path, **overrides: Any) -> Settings:
    return Settings(
        home=root,
        database_url=f"sqlite:///{root / 'atelier.db'}",
        broker_url="memory://",
        artifacts=root / "artifacts",
        embedded_broker=False,
        **overrides,
    )


@contextmanager
def sqlite_store(settings: Settings) -> Iterator[sessionmaker[Session]]:
    """Sessions on the store ``settings`` name, migrated to the newest schema."""
    engine = make_engine(settings.database_url)
    upgrade(engine)
    try:
        yield make_sessionmaker(engine)
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Message:
    """A task message as the broker holds it."""

    task: str
    task_id: str
    args: list
    kwargs: dict
    queue: str


def memory_celery(settings: Settings) -> Celery:
    """A client configured as the CLI's and the workers' (core.messages.configure) on kombu's memory transport;
    its queues are emptied first (the transport's state is shared by the whole process)."""
    celery = configure(settings, Celery("atelier-test"))
    published(celery)
    return celery


def published(celery: Celery) -> list[Message]:
    """Every message waiting in the broker's queues, taken off them (a later call sees only newer ones)."""
    out = []
    with celery.connection_for_read() as conn:
        for name in QUEUES:
            queue = conn.SimpleQueue(name, no_ack=True)
            try:
                while True:
                    try:
                        m = queue.get(block=False)
                    except queue.Empty:
                        break
                    args, kwargs, _embed = m.payload
                    out.append(
                        Message(m.headers["task"], m.headers["id"], args, kwargs, m.delivery_info["routing_key"])
                    )
            finally:
                queue.close()
    return out


def tiny_config(**overrides: Any) -> TrainConfig:
    """A training config small enough for a unit test: a 2-class baseline CNN on 32 px images."""
    base = dict(
        arch="baseline-cnn",
        num_classes=2,
        epochs=2,
        batch_size=8,
        lr=1e-3,
        image_size=32,
        augment="none",
        head="gap",
        early_stop_patience=5,
    )
    return TrainConfig(**{**base, **overrides})


def add_dataset(session: Session, root: Path | str = "/nowhere", classes: tuple[str, ...] = ("a", "b")) -> Dataset:
    dataset = Dataset(
        name=f"d{id(session)}-{len(classes)}",
        root=str(root),
        format="imagefolder",
        seed=0,
        split=[0.5, 0.25, 0.25],
        classes=list(classes),
    )
    session.add(dataset)
    session.flush()
    return dataset


def add_job(
    session: Session, status: str = "queued", *, kind: str = "train", params: dict | None = None, **fields: Any
) -> Job:
    """A job row in ``status`` (``fields`` set the other columns: depends_on, group_id, attempts, queue...)."""
    job = jobs.create_job(
        session, kind, params if params is not None else {"dataset_id": 1, "config": tiny_config().to_json()}
    )
    job.status = status
    for key, value in fields.items():
        setattr(job, key, value)
    session.flush()
    return job
