"""`atelier worker`: one correctly configured Celery worker process per GPU.

The CLI checks what it can check without torch (the queues, the store, the broker),
then execs the worker's own entry point (`python -m worker`), which imports the tasks.
"""

from __future__ import annotations

import os
import sys

import click

from core.messages import parse_queues
from orchestrator.commands.common import pass_lab


@click.command("worker")
@click.option("--queues", default="gpu,cpu", show_default=True, help="Comma-separated queues to consume.")
@click.option(
    "--gpu", type=click.IntRange(0), default=None, help="GPU index this worker owns (sets CUDA_VISIBLE_DEVICES)."
)
@click.option("--name", default=None, help="Worker node name [default: gpuN@host or cpu@host].")
@click.option(
    "--threads",
    type=click.IntRange(1),
    default=None,
    help="CPU threads per job [default: PyTorch's, one per core]. Several workers on one box: cores / workers.",
)
@click.option("--loglevel", default="INFO", show_default=True)
@pass_lab
def worker_cmd(lab, queues, gpu, name, threads, loglevel) -> None:
    """Run a worker: prefork, concurrency 1, one long-lived child (see worker/child.py), no prefetch."""
    wanted = parse_queues(queues)
    lab.engine.dispose()  # migrate the store, then hold no connection into the exec'd worker
    lab.celery()  # checks the broker (and starts the embedded one)
    lab.close()
    args = [sys.executable, "-m", "worker", "--queues", ",".join(wanted), "--loglevel", loglevel]
    for flag, value in (("--gpu", gpu), ("--name", name), ("--threads", threads)):
        if value is not None:
            args += [flag, str(value)]
    sys.stdout.flush()
    sys.stderr.flush()
    # exec, not a child: signals (SIGTERM from compose, SIGKILL from a test) reach the worker itself.
    os.execv(sys.executable, args)


COMMANDS = [worker_cmd]
