"""Finding what a command's argument names: a job, a sweep, a style batch, a dataset."""

from __future__ import annotations

from sqlalchemy import select

from core.errors import ConfigError
from core.params import MAX_INT
from db.models import Dataset, Job, Run, StyleBatch, Sweep


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


def find_report_target(session, ref: str) -> tuple[str, int | str]:
    """("run", id), ("sweep", id) or ("batch", id) of what ``ref`` names: an integer is a run id; anything else,
    or an integer no run has, is a prefix of a sweep or style batch id (a digits-only uuid prefix stays reachable:
    "12345678-" is no integer). A prefix that names more than one sweep or batch is refused rather than guessed."""
    ref = ref.strip()
    if not ref:
        raise ConfigError("give a run id, or a sweep or style batch id (or a prefix of one)")
    # A run id is an integer column: a longer string of digits can only be an id prefix (SQLite refuses the bind).
    if ref.isascii() and ref.isdigit() and 0 < int(ref) <= MAX_INT and session.get(Run, int(ref)) is not None:
        return "run", int(ref)
    found: list[tuple[str, str]] = []
    for kind, model in (("sweep", Sweep), ("batch", StyleBatch)):
        ids = session.scalars(select(model.id).where(model.id.startswith(ref, autoescape=True)).limit(2)).all()
        found += [(kind, i) for i in ids]
    if not found:
        raise ConfigError(f"no run, sweep or style batch {ref!r}")
    if len(found) > 1:
        named = " and ".join(f"{kind} {ident}" for kind, ident in found[:2])
        raise ConfigError(f"{ref!r} is ambiguous: it names {named}{' and more' if len(found) > 2 else ''}; give more")
    return found[0]
