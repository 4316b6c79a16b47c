"""Finding what a command's argument names: a job, a sweep, a style batch, a dataset."""

from __future__ import annotations

from sqlalchemy import select

from core.errors import ConfigError
from db.models import Dataset, Job, StyleBatch, Sweep


def find_job(session, ref: str) -> Job:
    """A job by id or unambiguous id prefix."""
    matches = session.scalars(select(Job).where(Job.id.startswith(ref)).limit(2)).all()
    if not matches:
        raise ConfigError(f"no job {ref!r}")
    if len(matches) > 1:
        raise ConfigError(f"job prefix {ref!r} is ambiguous; give more characters")
    return matches[0]


def find_sweep(session, ref: str) -> Sweep | None:
    matches = session.scalars(select(Sweep).where(Sweep.id.startswith(ref)).limit(2)).all()
    return matches[0] if len(matches) == 1 else None


def find_group(session, ref: str) -> tuple[str, str] | None:
    """(label, id) of the sweep or style batch that ``ref`` (an id or unambiguous prefix) names, if any."""
    sweep = find_sweep(session, ref)
    if sweep is not None:
        return "sweep", sweep.id
    batches = session.scalars(select(StyleBatch.id).where(StyleBatch.id.startswith(ref)).limit(2)).all()
    return ("batch", batches[0]) if len(batches) == 1 else None


def jobs_of(session, ref: str) -> tuple[str, list[Job]]:
    """The jobs a reference names: a sweep, a style batch (its group) or one job."""
    group = find_group(session, ref)
    if group is not None:
        return group[1], list(session.scalars(select(Job).where(Job.group_id == group[1])))
    job = find_job(session, ref)
    return job.id, [job]


def get_dataset(session, name: str) -> Dataset:
    ds = session.scalar(select(Dataset).where(Dataset.name == name))
    if ds is None:
        known = ", ".join(session.scalars(select(Dataset.name).order_by(Dataset.name))) or "none yet"
        raise ConfigError(f"unknown dataset {name!r} (known: {known})")
    return ds
