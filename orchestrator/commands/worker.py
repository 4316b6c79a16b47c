"""`atelier worker`: one correctly configured Celery worker process per GPU.

The CLI checks what it can check without torch (the queues, the store, the broker),
then execs the worker's own entry point (`python -m worker`), which imports the tasks.
"""

from __future__ import annotations

import os
import sys

import click

from core.worker_options import WorkerOptions, worker_options
from orchestrator.commands.common import pass_lab


@click.command("worker")
@worker_options  # the same options as the worker entry point it execs
@pass_lab
def worker_cmd(lab, queues, gpu, name, threads, loglevel) -> None:
    """Run a worker: prefork, concurrency 1, one long-lived child (see worker/child.py), no prefetch."""
    options = WorkerOptions.parse(queues, gpu, name, threads, loglevel)
    lab.engine.dispose()  # migrate the store, then hold no connection into the exec'd worker
    lab.celery()  # checks the broker (and starts the embedded one)
    lab.close()
    args = [sys.executable, "-m", "worker", *options.argv()]
    sys.stdout.flush()
    sys.stderr.flush()
    # exec, not a child: signals (SIGTERM from compose, SIGKILL from a test) reach the worker itself.
    os.execv(sys.executable, args)


COMMANDS = [worker_cmd]
