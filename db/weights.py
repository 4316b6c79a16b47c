"""The weights registry: which weight files are recorded, under which names, and where.

Queries and inserts only; reading or writing tensors is the worker's
(``worker.weights_store``), deciding what ``--weights`` means is the CLI's.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from core.artifacts import artifact_path
from core.weights import WeightsRecord
from db.models import Weights


def recorded(session, artifacts: Path, arch: str, name: str) -> tuple[WeightsRecord | None, Weights | None]:
    """(the newest recorded file of (arch, name) present under the artifacts root, the newest row even if absent)."""
    rows = session.scalars(
        select(Weights)
        .where(Weights.arch == arch, Weights.name == name)
        .order_by(Weights.created_at.desc(), Weights.id.desc())
    ).all()
    for row in rows:
        if artifact_path(artifacts, row.path).is_file():
            return WeightsRecord(row.name, row.sha256, row.path), rows[0]
    return None, rows[0] if rows else None


def record_file(
    session, arch: str, name: str, digest: str, relative: str, source: str, features_only: bool
) -> WeightsRecord:
    """Record a stored file; identical tensors already recorded for ``arch`` keep their row (and name)."""
    row = session.scalar(select(Weights).where(Weights.arch == arch, Weights.sha256 == digest))
    if row is None:
        try:
            with session.begin_nested():
                session.add(
                    Weights(
                        arch=arch, name=name, sha256=digest, path=relative, source=source, features_only=features_only
                    )
                )
        except IntegrityError:  # another submit recorded the same file a moment ago
            row = session.scalar(select(Weights).where(Weights.arch == arch, Weights.sha256 == digest))
    elif row.path != relative:
        row.path = relative
    if row is not None:
        return WeightsRecord(row.name, row.sha256, row.path)
    return WeightsRecord(name, digest, relative)


def listing(session, artifacts: Path) -> list[dict]:
    """Every recorded weight file, newest first per (arch, name), with whether this host sees it."""
    rows = session.scalars(
        select(Weights).order_by(Weights.arch, Weights.name, Weights.created_at.desc(), Weights.id.desc())
    ).all()
    return [
        {
            "arch": r.arch,
            "name": r.name,
            "source": r.source,
            "sha256": r.sha256,
            "path": r.path,
            "features_only": r.features_only,
            "created_at": r.created_at,
            "present": artifact_path(artifacts, r.path).is_file(),
        }
        for r in rows
    ]
