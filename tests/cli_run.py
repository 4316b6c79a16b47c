"""Running the CLI in-process in a way a test can fail on.

click's ``CliRunner`` catches an exception the command lets escape, keeps it in ``result.exception`` and
prints nothing, so ``assert "Traceback" not in result.output`` passes whatever happened, and so does an
exit code of 1, which is also what an escaped exception gives. Only a ``SystemExit`` (click's own usage
errors, or the CLI's one-line error and its exit code) is a clean end. ``invoke`` checks that on every call;
``assert_clean_exit`` adds the exit code and the output.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping, Sequence

from click.testing import CliRunner, Result


def assert_no_exception(result: Result) -> None:
    """Fail, with its traceback, when the command ended by an exception other than ``SystemExit``."""
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        where = "".join(traceback.format_exception(*result.exc_info)) if result.exc_info else repr(exc)
        raise AssertionError(
            f"the command raised {type(exc).__name__}: {exc} (kept by CliRunner, absent from the output)\n"
            f"{where}\noutput:\n{result.output}"
        )


def assert_clean_exit(result: Result, code: int = 0) -> None:
    """The command exited with ``code`` of its own accord (no escaped exception, no traceback printed)."""
    assert_no_exception(result)
    assert "Traceback" not in result.output, result.output
    assert result.exit_code == code, f"exited {result.exit_code}, expected {code}:\n{result.output}"


def invoke(args: Sequence[str], env: Mapping[str, str] | None = None, **kwargs) -> Result:
    """``atelier *args`` in-process; fails at once if an exception escaped the command, whatever its exit code."""
    from orchestrator.cli import cli  # at call time, as the tests always did: collecting them imports no CLI

    result = CliRunner().invoke(cli, list(args), env=env, **kwargs)
    assert_no_exception(result)
    return result
