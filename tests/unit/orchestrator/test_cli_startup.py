"""The CLI starts without PyTorch or matplotlib: submitting a job or reading status must
not pay seconds of imports that only workers and plots need."""

import subprocess
import sys

from tests.services import ROOT

HEAVY = ("torch", "torchvision", "matplotlib")

PROBE = """
import sys
from click.testing import CliRunner
from orchestrator.cli import cli

def helps(group, path):
    for name, command in getattr(group, "commands", {}).items():
        result = CliRunner().invoke(cli, [*path, name, "--help"])
        assert result.exit_code == 0, (path, name, result.output)
        helps(command, [*path, name])

helps(cli, [])
print(" ".join(m for m in HEAVY if m in sys.modules))
""".replace("HEAVY", repr(HEAVY))


def test_importing_the_cli_and_every_help_page_loads_no_heavy_library():
    # A fresh interpreter: this test process has long imported torch.
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"the CLI imported {out.stdout.strip()}"
