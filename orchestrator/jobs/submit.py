"""Submitting work: commit the rows of a training run or a sweep, then enqueue their jobs (a style batch:
``orchestrator.jobs.style_batch``).

The click commands (``orchestrator.commands.train``, ``grid``) parse their options and call these. Every job's
params come from ``core.params``. The broker must be reachable before anything is committed, so a dead broker
leaves no rows behind; the jobs are sent once their rows are committed.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from core import messages
from core import weights as names
from core.config import TrainConfig, default_image_size
from core.params import cell_params, features_params, train_params
from core.weights import WeightsRecord
from db import jobs
from db.engine import in_slices
from db.models import Job, Run, Sweep, SweepCell
from orchestrator.jobs.lookups import get_dataset
from orchestrator.jobs.weights import resolve as resolve_weights


def run_row(job: Job) -> Run:
    """The run a train job fills (found again by its job id): dataset, config and weights from its params."""
    p = job.params
    return Run(
        job_id=job.id,
        dataset_id=p["dataset_id"],
        arch=p["arch"],
        config=p["config"],
        weights=p["weights"]["name"],
        weights_sha256=p["weights"]["sha256"],
    )


# --- one training run ----------------------------------------------------------------------------------------


def submit_train(lab, dataset_name: str, cfg_fields: dict) -> tuple[str, int]:
    """Validate, commit a job and its run row, then enqueue; returns (job id, run id)."""
    with lab.sessions() as s:
        ds = get_dataset(s, dataset_name)
        dataset_id, classes = ds.id, list(ds.classes)
    arch = cfg_fields["arch"]
    spec = cfg_fields.get("weights") or names.default_spec(arch)
    cfg = TrainConfig(
        num_classes=len(classes),
        **{**cfg_fields, "weights": None, "image_size": cfg_fields.get("image_size") or default_image_size(arch)},
    )
    cfg.model_config().validate()
    # Before any job row: unavailable weights fail here, in one line, and leave nothing behind.
    weights = resolve_weights(lab, arch, spec)
    params = train_params(dataset_name, dataset_id, cfg, weights)
    celery = lab.celery()  # the broker must be reachable before anything is committed
    with lab.sessions.begin() as s:
        job = jobs.create_job(s, "train", params, max_attempts=lab.settings.max_attempts)
        run = run_row(job)
        s.add(run)
        s.flush()
    messages.send(celery, [job])
    return job.id, run.id


# --- a sweep: plan -> reuse -> insert -> send ------------------------------------------------------------------


@dataclass
class Cell:
    index: int
    values: dict  # this cell's axis values
    config: TrainConfig


@dataclass
class PlannedCell:
    cell: Cell
    params: dict  # its train job's params
    hash: str  # of those params: an identical cell that succeeded has the same
    features: dict | None  # the params of the features job it trains on (feature-extract mode), else None


def submit_sweep(
    lab, dataset_id: int, spec: dict, cells: list[Cell], weights: WeightsRecord, finetune_top: int, force: bool
) -> tuple[str, int]:
    """Commit the sweep, its features jobs and one job per cell not reused; then send what can run now.

    Returns (sweep id, cells reused from earlier sweeps). ``force`` reuses nothing.
    """
    planned = plan_cells(spec["dataset"], dataset_id, cells, weights)
    celery = lab.celery()  # the broker must be reachable before anything is committed
    with lab.sessions.begin() as s:
        sweep = Sweep(
            dataset_id=dataset_id,
            arch=spec["arch"],
            spec=spec,
            spec_hash=jobs.params_hash("sweep", spec),
            finetune_top=finetune_top,
            metric=spec["metric"],
        )
        s.add(sweep)
        s.flush()
        features = insert_features_jobs(s, sweep.id, planned, force)
        done = {} if force else finished_runs(s, [p.hash for p in planned])
        cell_jobs = insert_cells(s, sweep.id, planned, features, done, lab.settings.max_attempts)
        sweep_id = sweep.id
    to_send = [j for j in features.values() if j is not None] + [j for j in cell_jobs if j.depends_on is None]
    messages.send(celery, to_send)
    return sweep_id, len(planned) - len(cell_jobs)


def plan_cells(dataset: str, dataset_id: int, cells: list[Cell], weights: WeightsRecord) -> list[PlannedCell]:
    """Each cell's params (and its features job's, in feature-extract mode) and their hash; no rows."""
    planned = []
    for cell in cells:
        features = None
        if cell.config.mode == "feature-extract":
            features = features_params(dataset_id, cell.config, weights, jobs.params_hash)
        params = cell_params(dataset, dataset_id, cell.config, weights, cell.index, features and features["output"])
        planned.append(PlannedCell(cell, params, jobs.params_hash("train", params), features))
    return planned


def reusable_job(session, kind: str, params: dict) -> Job | None:
    """The latest succeeded ``kind`` job with these params, if any."""
    return session.scalars(
        select(Job)
        .where(Job.kind == kind, Job.params_hash == jobs.params_hash(kind, params), Job.status == "succeeded")
        .order_by(Job.finished_at.desc())
        .limit(1)
    ).first()


def finished_runs(session, hashes: list[str]) -> dict[str, tuple[str, int]]:
    """params hash -> (job id, run id) of the latest succeeded train job with those params."""
    found: dict[str, tuple[str, int]] = {}
    for part in in_slices(hashes):
        rows = session.execute(
            select(Job.params_hash, Job.id, Run.id)
            .join(Run, Run.job_id == Job.id)
            .where(Job.kind == "train", Job.status == "succeeded", Job.params_hash.in_(part))
            .order_by(Job.finished_at)
        ).all()
        found.update({h: (job_id, run_id) for h, job_id, run_id in rows})  # the latest wins
    return found


def insert_features_jobs(session, sweep_id: str, planned: list[PlannedCell], force: bool) -> dict[str, Job | None]:
    """One features job per distinct features params among the cells, keyed by its output file; None where an
    identical job succeeded before (its file is there) unless ``force``."""
    found: dict[str, Job | None] = {}
    for p in planned:
        if p.features is None or p.features["output"] in found:
            continue
        job = None
        if force or reusable_job(session, "features", p.features) is None:
            job = jobs.new_job("features", p.features)
            job.group_id = sweep_id
        found[p.features["output"]] = job
    session.add_all([job for job in found.values() if job is not None])
    session.flush()  # before the cells that depend on them
    return found


def insert_cells(
    session,
    sweep_id: str,
    planned: list[PlannedCell],
    features: dict[str, Job | None],
    done: dict[str, tuple[str, int]],
    max_attempts: int,
) -> list[Job]:
    """Every cell's row: a reused cell names the earlier job and run; a new one gets a job and a run. Rows go
    in bulk (one INSERT per table, not one per cell): a 1,000-cell grid is one short transaction."""
    created: list[tuple[Cell, Job]] = []
    for p in planned:
        if p.hash in done:
            job_id, run_id = done[p.hash]
            session.add(
                SweepCell(
                    sweep_id=sweep_id,
                    cell_index=p.cell.index,
                    cell=p.cell.values,
                    job_id=job_id,
                    run_id=run_id,
                    reused=True,
                )
            )
            continue
        job = jobs.new_job("train", p.params, max_attempts=max_attempts)
        waits_for = features.get(p.params.get("features"))
        job.group_id, job.depends_on = sweep_id, waits_for.id if waits_for is not None else None
        created.append((p.cell, job))
    runs = [run_row(job) for _, job in created]
    session.add_all([job for _, job in created])
    session.add_all(runs)
    session.flush()  # the runs get their ids
    session.add_all(
        [
            SweepCell(sweep_id=sweep_id, cell_index=cell.index, cell=cell.values, job_id=job.id, run_id=run.id)
            for (cell, job), run in zip(created, runs)
        ]
    )
    return [job for _, job in created]
