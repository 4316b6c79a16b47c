"""Imports run one way: core <- corpus, db <- worker, analysis <- orchestrator.

Every import statement of every module is read (function-level ones too: a lazy import
is still a dependency), so the layering cannot drift unnoticed. The second test runs
the commands a researcher types most, in a fresh interpreter, and checks that none of
them loads torch.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import ROOT

PACKAGES = ("core", "corpus", "db", "worker", "analysis", "orchestrator")
# What each of our packages may import of the others (its own modules always).
ALLOWED = {
    "core": set(),
    "corpus": {"core"},
    "db": {"core"},
    "worker": {"core", "corpus", "db"},
    "analysis": {"core", "corpus", "db"},
    "orchestrator": {"core", "corpus", "db", "analysis"},
}
# Third-party imports a package must never make (at any depth of its own code).
FORBIDDEN = {
    "core": {"torch", "torchvision", "sqlalchemy"},
    "corpus": {"torch", "torchvision", "sqlalchemy", "celery"},
    "db": {"torch", "torchvision", "celery"},
    # the ML code knows nothing of Celery or the ORM (docs/architecture.md, rule 2)
    "worker.ml": {"celery", "sqlalchemy", "db"},
    "analysis": {"torch", "torchvision", "click", "celery"},  # a pure library: notebooks, the CLI and reports
    "orchestrator": {"torch", "torchvision"},
}


def imports_of(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, top-level-qualified module) of every import in ``path``, relative imports resolved."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = ".".join(path.relative_to(root).with_suffix("").parts[: -node.level])
                found.append((node.lineno, f"{package}.{node.module}" if node.module else package))
            else:
                found.append((node.lineno, node.module))
    return found


def modules(root: Path):
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            yield package, ".".join(path.relative_to(root).with_suffix("").parts), path


def violations(root: Path = ROOT) -> list[str]:
    bad = []
    for package, module, path in modules(root):
        for line, name in imports_of(path, root):
            top = name.split(".")[0]
            where = f"{path.relative_to(root)}:{line} imports {name}"
            if top in PACKAGES and top != package and top not in ALLOWED[package]:
                bad.append(f"{where} ({package} may import only {sorted(ALLOWED[package]) or 'none of ours'})")
            for scope, banned in FORBIDDEN.items():
                if (module == scope or module.startswith(scope + ".")) and top in banned:
                    bad.append(f"{where} ({scope} never imports {top})")
    return bad


def test_every_import_runs_one_way():
    assert violations() == []


# No function body runs past MAX_BODY lines anywhere in the house (issues 21 and 29): a long one is split into
# helpers whose names say what each step is for. The commands stay thin: they parse, call a library and print.
MAX_BODY = 60
NOT_YET_THIN: set[tuple[str, str]] = set()  # (path in its package, function) allowed past MAX_BODY for now


def long_functions(folder: Path) -> list[str]:
    """Functions (methods and nested ones too) under ``folder``, at any depth, whose body (docstring included)
    runs past MAX_BODY lines."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        where = path.relative_to(folder).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.body[0].lineno + 1
                if lines > MAX_BODY and (where, node.name) not in NOT_YET_THIN:
                    found.append(f"{where}:{node.lineno} {node.name} has {lines} lines (at most {MAX_BODY})")
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_no_function_runs_past_the_limit(package):
    assert long_functions(ROOT / package) == []


def test_the_length_checker_sees_a_long_function_at_any_depth(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_BODY + 1))
    (tmp_path / "fat.py").write_text(f"def fat():\n{body}\n")
    (tmp_path / "inner").mkdir()
    method = "\n".join(f"        x{i} = {i}" for i in range(MAX_BODY + 1))  # a method, one folder down
    (tmp_path / "inner" / "nested.py").write_text(f"class C:\n    def method(self):\n{method}\n")
    thin = "\n".join(f"    x{i} = {i}" for i in range(MAX_BODY))  # exactly at the limit: allowed
    (tmp_path / "inner" / "thin.py").write_text(f"def thin():\n{thin}\n")
    assert long_functions(tmp_path) == [
        f"fat.py:1 fat has {MAX_BODY + 1} lines (at most {MAX_BODY})",
        f"inner/nested.py:2 method has {MAX_BODY + 1} lines (at most {MAX_BODY})",
    ]


def test_the_checker_sees_a_lazy_import_that_breaks_the_rules(tmp_path):
    # The rule test must be able to fail: a function-level import of orchestrator inside db is caught.
    for package in PACKAGES:
        (tmp_path / package).mkdir()
    (tmp_path / "db" / "x.py").write_text("def f():\n    from orchestrator.cli import main\n    import torch\n")
    (tmp_path / "worker" / "y.py").write_text("from . import z\nfrom .ml import models\n")
    found = violations(tmp_path)
    assert any("db/x.py:2 imports orchestrator.cli" in v for v in found)
    assert any("db/x.py:3 imports torch" in v for v in found)
    assert len(found) == 2, found  # relative imports inside a package are its own


PROBE = """
import json, sys
from click.testing import CliRunner
from orchestrator.cli import cli

for args in json.loads(sys.argv[1]):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, (args, result.output)
print("torch" in sys.modules)
"""

# The dataset is made first (PIL and numpy only), so the grid's dry run expands real cells.
SETUP = [["dataset", "synth", "tiny", "--artists", "2", "--per-artist", "3", "--size", "32"]]


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["flower", "--help"],
        ["query", "SELECT count(*) AS n FROM jobs"],
        ["grid", "--dataset", "tiny", "--arch", "resnet18", "--lr", "0.1,0.01", "--dry-run"],
        ["results", "runs"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_everyday_commands_never_import_torch(args, cli_env):
    # A fresh interpreter per command: this test process has long imported torch.
    env = {**os.environ, **cli_env}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps([*SETUP, args])],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False", f"atelier {' '.join(args)} imported torch"
