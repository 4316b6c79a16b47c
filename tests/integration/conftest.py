"""Fixtures the integration tests of style batches share."""

import pytest

from tests.conftest import unique


@pytest.fixture(scope="module")
def classifier(sqlite_stack):
    """A dataset of 3 synthetic artists and a small classifier trained on it."""
    stack = sqlite_stack
    name = unique("style")
    stack.atelier("dataset", "synth", name, "--artists", "3", "--per-artist", "9", "--size", "40")
    run = stack.json(
        "train",
        "--dataset",
        name,
        "--arch",
        "baseline-cnn",
        "--epochs",
        "2",
        "--image-size",
        "32",
        "--lr",
        "1e-3",
        "--batch-size",
        "8",
    )
    assert stack.wait_job(run["job"])["status"] == "succeeded"
    return name, run["run"]
