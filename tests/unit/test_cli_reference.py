"""docs/cli.md is what the CLI's --help says today: generated from the click commands, checked here."""

from __future__ import annotations

from scripts import cli_reference


def test_the_cli_reference_is_the_clis_help():
    page = cli_reference.render()
    assert cli_reference.PAGE.exists(), f"docs/cli.md is missing: run `{cli_reference.REGENERATE}`"
    assert cli_reference.PAGE.read_text() == page, (
        f"docs/cli.md differs from the CLI's --help (a command or option changed): run `{cli_reference.REGENERATE}`"
    )


def test_every_command_has_a_section_and_an_entry_in_the_contents():
    page = cli_reference.render()
    for name in ("atelier", "atelier stylize", "atelier results attribution", "atelier weights import"):
        assert f"\n## {name}\n" in page
        assert f"(#{name.replace(' ', '-')})" in page
