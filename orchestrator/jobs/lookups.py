"""Finding what a command's argument names: a job, a sweep, a style batch, a dataset."""

from __future__ import annotations

from sqlalchemy import select

from core.errors import ConfigError
from core.params import MAX_INT
from db.models import Dataset, Job, Run, StyleBatch, Sweep


def _prefixed(session, column, ref: str) -> list:
    """At most two values of ``column`` that start with ``ref``, taken literally (a ``%`` or ``_`` in it is no
    wildcard): one is an answer, two an ambiguity."""
    return list(session.scalars(select(column).where(column.startswith(ref, autoescape=True)).limit(2)))


def find_job(session, ref: str) -> Job:
    """A job by id or unambiguous id prefix."""
    ids = _prefixed(session, Job.id, ref)
    if not ids:
        raise ConfigError(f"no job {ref!r}")
    if len(ids) > 1:
        raise ConfigError(f"job prefix {ref!r} is ambiguous; give more characters")
    return session.get(Job, ids[0])


def find_sweep(session, ref: str) -> Sweep | None:
    """The sweep ``ref`` (an id or prefix) names; None when none does, an error when several do."""
    ids = _prefixed(session, Sweep.id, ref)
    if len(ids) > 1:
        raise ConfigError(f"sweep prefix {ref!r} is ambiguous; give more characters")
    return session.get(Sweep, ids[0]) if ids else None


def _groups(session, ref: str) -> list[tuple[str, str]]:
    """("sweep", id) and ("batch", id) for sweeps and style batches whose id starts with ``ref``, up to two each."""
    return [
        (kind, i)
        for kind, model in (("sweep", Sweep), ("batch", StyleBatch))
        for i in _prefixed(session, model.id, ref)
    ]


def _ambiguous(ref: str, found: list[tuple[str, str]]) -> ConfigError:
    named = " and ".join(f"{kind} {ident}" for kind, ident in found[:2])
    return ConfigError(f"{ref!r} is ambiguous: it names {named}{' and more' if len(found) > 2 else ''}; give more")


def find_group(session, ref: str) -> tuple[str, str] | None:
    """(label, id) of the sweep or style batch that ``ref`` (an id or prefix) names; None when none does, an
    error when it names more than one (a sweep and a batch included: neither is preferred)."""
    found = _groups(session, ref)
    if len(found) > 1:
        raise _ambiguous(ref, found)
    return found[0] if found else None


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
    group = find_group(session, ref)
    if group is None:
        raise ConfigError(f"no run, sweep or style batch {ref!r}")
    return group
