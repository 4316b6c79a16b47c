"""``--weights`` at submit time: a spec resolved to a record every worker can load.

A recorded file is found with one query. Anything that needs tensors read (a
torch-cache copy, torchvision's download, a file given on the command line,
``atelier weights import``) runs the worker's weights program in a subprocess
(``python -m worker.weights_store``), so the CLI never imports torch; that happens
once per file, after which the record is found by the query.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from core import weights as names
from core.errors import ConfigError
from core.weights import IMAGENET, NAME, RANDOM, RANDOM_RECORD, WeightsRecord
from db import weights as registry


def resolve(lab, arch: str, spec: str, offline: bool | None = None) -> WeightsRecord:
    """The record ``spec`` names for ``arch`` (see ``worker.weights_store.resolve``); committed before it returns."""
    if spec == RANDOM:
        return RANDOM_RECORD
    names.check_arch(arch)
    if spec and (spec == IMAGENET or NAME.match(spec)):
        with lab.sessions() as s:
            found, _ = registry.recorded(s, lab.settings.artifacts, arch, spec)
        if found is not None:
            return found
    offline = lab.settings.offline if offline is None else offline
    return _worker_program(["resolve", arch, spec], offline)


def import_file(lab, file: Path, arch: str, name: str) -> WeightsRecord:
    """``atelier weights import``: FILE checked against ``arch`` and recorded under ``name``."""
    return _worker_program(["import", str(file), arch, name], lab.settings.offline)


def _worker_program(args: list[str], offline: bool) -> WeightsRecord:
    env = {**os.environ, "ATELIER_OFFLINE": "1" if offline else "0"}
    done = subprocess.run(
        [sys.executable, "-m", "worker.weights_store", *args], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise ConfigError(lines[-1] if lines else f"the weights program exited with {done.returncode}")
    return WeightsRecord.from_json(json.loads(done.stdout))
