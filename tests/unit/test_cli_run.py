"""The CLI tests' checks can fail: an exception click's runner keeps out of the output is caught."""

import click
import pytest
from click.testing import CliRunner

from tests.cli_run import assert_clean_exit, assert_no_exception


@click.command()
@click.argument("how")
def toy(how: str) -> None:
    if how == "raise":
        raise ValueError("escaped")  # exit code 1 and no traceback in the output, like a one-line error
    if how == "fail":
        raise click.ClickException("one line")
    click.echo("fine")


def test_an_escaped_exception_fails_even_with_the_expected_code_and_a_clean_output():
    result = CliRunner().invoke(toy, ["raise"])
    assert result.exit_code == 1 and "Traceback" not in result.output  # what the old assertions checked
    with pytest.raises(AssertionError, match="ValueError: escaped"):
        assert_clean_exit(result, 1)
    with pytest.raises(AssertionError, match="ValueError"):
        assert_no_exception(result)


def test_a_clean_exit_passes_and_a_wrong_code_fails():
    assert_clean_exit(CliRunner().invoke(toy, ["fail"]), 1)
    assert_clean_exit(CliRunner().invoke(toy, ["ok"]))
    assert_clean_exit(CliRunner().invoke(toy, []), 2)  # a usage error is click's own SystemExit
    with pytest.raises(AssertionError, match="exited 1, expected 0"):
        assert_clean_exit(CliRunner().invoke(toy, ["fail"]), 0)
