"""`atelier worker`: one correctly configured Celery worker process per GPU."""

from __future__ import annotations

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
@click.option("--loglevel", default="INFO", show_default=True)
@pass_lab
def worker_cmd(lab, queues, gpu, name, loglevel) -> None:
    """Run a worker: prefork, concurrency 1, a fresh child per task, no prefetch."""
    from worker.celery_app import QUEUES

    wanted = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = [q for q in wanted if q not in QUEUES]
    if not wanted or unknown:
        raise ConfigError(f"unknown queue(s) {', '.join(unknown) or queues!r}; choose from {', '.join(QUEUES)}")
    if gpu is not None:
        # Before anything can touch CUDA: the children inherit it, the parent never initialises CUDA.
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    lab.engine.dispose()  # migrate the store, then hold no connection: children are forked (see worker.reaper)
    lab.celery()  # checks the broker (and starts the embedded one)
    from worker.celery_app import app, configure
    import worker.tasks  # noqa: F401  registers the tasks; imports torch in the parent so children fork warm

    celery = configure(lab.settings, app)
    from worker.reaper import start_reaper

    @worker_ready.connect(weak=False)
    def _start_reaper(**_kwargs) -> None:
        start_reaper(lab.settings)

    node = name or f"{'gpu%d' % gpu if gpu is not None else 'cpu'}@{socket.gethostname()}"
    celery.worker_main(["worker", f"--loglevel={loglevel}", "-Q", ",".join(wanted), "-n", node,
                        "--pool=prefork", "--concurrency=1", "--max-tasks-per-child=1", "--without-gossip",
                        "--without-mingle", "-E"])


COMMANDS = [worker_cmd]
