"""A worker's command-line options, declared once for its two entry points.

`atelier worker` (orchestrator) checks the store and the broker without torch, then execs `python -m worker`
(worker/__main__.py) with the same options; the CLI may not import the worker package, so the options live
here, below both. ``worker_options`` puts them on a click command, ``WorkerOptions`` is what they parse to,
and ``WorkerOptions.argv`` is the worker's command line for them: one declaration, so the two cannot drift.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import click

from core.messages import parse_queues


@dataclass(frozen=True)
class WorkerOptions:
    queues: tuple[str, ...]  # checked against core.messages.QUEUES
    gpu: int | None = None  # the GPU this worker owns (CUDA_VISIBLE_DEVICES)
    name: str | None = None  # node name; None: gpuN@host or cpu@host
    threads: int | None = None  # CPU threads per job; None: PyTorch's default, one per core
    loglevel: str = "INFO"

    @classmethod
    def parse(cls, queues: str, gpu: int | None, name: str | None, threads: int | None, loglevel: str) -> WorkerOptions:
        """From the parsed command line; ConfigError in one line for a queue that does not exist."""
        return cls(tuple(parse_queues(queues)), gpu, name, threads, loglevel)

    def argv(self) -> list[str]:
        """These options as the worker entry point's arguments (what `atelier worker` execs it with)."""
        args = ["--queues", ",".join(self.queues), "--loglevel", self.loglevel]
        for flag, value in (("--gpu", self.gpu), ("--name", self.name), ("--threads", self.threads)):
            if value is not None:
                args += [flag, str(value)]
        return args


def worker_options(command: Callable) -> Callable:
    """Add --queues, --gpu, --name, --threads and --loglevel to a click command (its parameters, by name)."""
    options = [
        click.option("--queues", default="gpu,cpu", show_default=True, help="Comma-separated queues to consume."),
        click.option(
            "--gpu",
            type=click.IntRange(0),
            default=None,
            help="GPU index this worker owns (sets CUDA_VISIBLE_DEVICES).",
        ),
        click.option("--name", default=None, help="Worker node name [default: gpuN@host or cpu@host]."),
        click.option(
            "--threads",
            type=click.IntRange(1),
            default=None,
            help="CPU threads per job [default: PyTorch's, one per core]. Several workers on one box: cores / workers.",
        ),
        click.option("--loglevel", default="INFO", show_default=True),
    ]
    for option in reversed(options):  # applied bottom-up, so --help lists them in the order above
        command = option(command)
    return command
