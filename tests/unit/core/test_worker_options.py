"""`atelier worker` and the worker entry it execs take the same options, and what one passes the other reads back."""

import pytest

from core.errors import ConfigError
from core.worker_options import WorkerOptions
from orchestrator.commands.worker import worker_cmd
from worker.__main__ import main as worker_main


def described(command) -> list[tuple]:
    return [(p.name, p.opts, p.default, str(p.type), getattr(p, "help", None)) for p in command.params]


def test_both_entry_points_declare_the_same_options():
    assert described(worker_cmd) == described(worker_main)
    assert [p.name for p in worker_main.params] == ["queues", "gpu", "name", "threads", "loglevel"]


@pytest.mark.parametrize(
    "options",
    [
        WorkerOptions(("gpu", "cpu")),
        WorkerOptions(("cpu",), gpu=0, name="cpu@box", threads=2, loglevel="DEBUG"),
        WorkerOptions(("gpu",), gpu=3),
    ],
)
def test_the_exec_line_parses_back_to_the_same_options(options):
    ctx = worker_main.make_context("atelier-worker", options.argv())
    assert WorkerOptions.parse(**ctx.params) == options


def test_an_unknown_queue_is_refused_before_any_exec():
    with pytest.raises(ConfigError, match="unknown queue"):
        WorkerOptions.parse("gpu,nope", None, None, None, "INFO")
