"""The worker's own entry point (`python -m worker`, or `atelier-worker`).

`atelier worker` checks the store and the broker, then execs this, so the CLI
package never imports the tasks, hence torch. The settings object is built here,
once, from the environment, and handed to the app the tasks read it from.
"""

from __future__ import annotations

import logging
import os
import socket

import click

from core.errors import ConfigError, one_line
from core.settings import Settings
from core.worker_options import WorkerOptions, worker_options


@click.command()
@worker_options
def main(queues: str, gpu: int | None, name: str | None, threads: int | None, loglevel: str) -> None:
    """Run a worker: prefork, concurrency 1, one long-lived child (see worker.child), no prefetch."""
    try:
        settings = Settings.from_env()
        options = WorkerOptions.parse(queues, gpu, name, threads, loglevel)
    except ConfigError as err:
        raise click.ClickException(one_line(str(err))) from None
    run(settings, options)


def run(settings: Settings, options: WorkerOptions) -> None:
    gpu, threads = options.gpu, options.threads
    if gpu is not None:
        # Before anything can touch CUDA: the children inherit it, the parent never initialises CUDA.
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    if threads is not None:
        # Before torch is imported: OpenMP reads it once. Workers that together ask for more threads
        # than there are cores do not just share them: OpenMP's waiting threads spin, and two
        # 2-thread workers on 2 cores ran a style chunk 7x slower than one thread each.
        os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch
    from celery.signals import worker_ready

    import worker.tasks  # noqa: F401  registers the tasks; imports torch in the parent so children fork warm
    from worker.celery_app import app
    from worker.reaper import start_reaper

    # torch sized its thread pool from OMP_NUM_THREADS at that import; every forked child inherits it.
    click.echo(f"worker: jobs run on {torch.get_num_threads()} CPU thread(s)", err=True)
    app.use(settings)
    # Celery's prefork pool with a quicker child replacement (worker/pool.py); the command line's
    # --pool accepts only built-in names, the setting takes a class.
    app.conf.worker_pool = "worker.pool:FreshChildPool"

    @worker_ready.connect(weak=False)
    def _start_reaper(**_kwargs) -> None:
        start_reaper(settings)

    # A worker's log is read after the fact (which job ran when, how long it waited): stamp every line.
    logging.basicConfig(force=True, format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s")
    node = options.name or f"{f'gpu{gpu}' if gpu is not None else 'cpu'}@{socket.gethostname()}"
    app.worker_main(
        [
            "worker",
            f"--loglevel={options.loglevel}",
            "-Q",
            ",".join(options.queues),
            "-n",
            node,
            "--concurrency=1",
            "--without-gossip",
            "--without-mingle",
            "-E",
        ]
    )


if __name__ == "__main__":
    main(prog_name="atelier-worker")
