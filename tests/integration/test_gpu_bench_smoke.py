"""`python -m bench.gpu --smoke`: the GPU benchmark script runs end to end in CI-sized shapes on the CPU and
produces every figure it would report on a GPU (its targets are judged only there)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.services import ROOT

pytestmark = pytest.mark.integration


def test_the_gpu_benchmark_produces_every_figure(tmp_path):
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.gpu", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["smoke"] and set(report["figures"]) >= {"train", "grid", "stylize", "answers", "load", "bf16"}
    from bench.gpu import TARGETS

    assert [t["target"] for t in report["targets"]] == [t[0] for t in TARGETS]
    for t in report["targets"]:
        assert isinstance(t["value"], (int, float)) and t["value"] > 0, t
        assert t["holds"] is None  # a CPU judges no GPU target
    assert report["figures"]["load"]["exactly_once"] is True
    answers = report["figures"]["answers"]  # on a CPU the bf16 run is fp32, and the smoke's optimiser fp32's
    same = answers["bf16 lbfgs"]["vs_fp32"]
    assert same["same"] == same["of"] == answers["stylizations"] == 4 and answers["bf16 lbfgs"]["holds"]
