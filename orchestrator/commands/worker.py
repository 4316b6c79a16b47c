"""`atelier worker`: one correctly configured Celery worker process per GPU."""

from __future__ import annotations

import logging
import os
import socket

import click
from celery.signals import worker_ready

from orchestrator.commands.common import pass_lab
from worker.ml.errors import ConfigError


@click.command("worker")
@click.option("--queues", default="gpu,cpu", show_default=True, help="Comma-separated queues to consume.")
@click.option("--gpu", type=click.IntRange(0), default=None, help="GPU index this worker owns (sets CUDA_VISIBLE_DEVICES).")
@click.option("--name", default=None, help="Worker node name [default: gpuN@host or cpu@host].")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="CPU threads per job [default: PyTorch's, one per core]. Several workers on one box: cores / workers.")
@click.option("--loglevel", default="INFO", show_default=True)
@pass_lab
def worker_cmd(lab, queues, gpu, name, threads, loglevel) -> None:
    """Run a worker: prefork, concurrency 1, a fresh child per task, no prefetch."""
    from worker.celery_app import QUEUES

    wanted = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = [q for q in wanted if q not in QUEUES]
    if not wanted or unknown:
        raise ConfigError(f"unknown queue(s) {', '.join(unknown) or queues!r}; choose from {', '.join(QUEUES)}")
    if gpu is not None:
        # Before anything can touch CUDA: the children inherit it, the parent never initialises CUDA.
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    if threads is not None:
        # Before torch is imported: OpenMP reads it once. Workers that together ask for more threads
        # than there are cores do not just share them: OpenMP's waiting threads spin, and two
        # 2-thread workers on 2 cores ran a style chunk 7x slower than one thread each.
        os.environ["OMP_NUM_THREADS"] = str(threads)
    lab.engine.dispose()  # migrate the store, then hold no connection: children are forked (see worker.reaper)
    lab.celery()  # checks the broker (and starts the embedded one)
    from worker.celery_app import app, configure
    import worker.tasks  # noqa: F401  registers the tasks; imports torch in the parent so children fork warm
    import torch

    # torch sized its thread pool from OMP_NUM_THREADS at that import; every forked child inherits it.
    click.echo(f"worker: jobs run on {torch.get_num_threads()} CPU thread(s)", err=True)

    celery = configure(lab.settings, app)
    # Celery's prefork pool with a quicker child replacement (worker/pool.py); the command line's
    # --pool accepts only built-in names, the setting takes a class.
    celery.conf.worker_pool = "worker.pool:FreshChildPool"
    from worker.reaper import start_reaper

    @worker_ready.connect(weak=False)
    def _start_reaper(**_kwargs) -> None:
        start_reaper(lab.settings)

    # A worker's log is read after the fact (which job ran when, how long it waited): stamp every line.
    logging.basicConfig(force=True, format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s")
    node = name or f"{'gpu%d' % gpu if gpu is not None else 'cpu'}@{socket.gethostname()}"
    celery.worker_main(["worker", f"--loglevel={loglevel}", "-Q", ",".join(wanted), "-n", node,
                        "--concurrency=1", "--max-tasks-per-child=1", "--without-gossip",
                        "--without-mingle", "-E"])


COMMANDS = [worker_cmd]
