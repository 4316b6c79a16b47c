"""Paint a dataset, train a tiny classifier: the one recipe behind every test that needs a trained classifier.

Shared by the integration fixtures (tests/integration/conftest.py), the report pages in a browser
(tests/browser.py) and scripts/screenshots.py, so each trains the same small model in the same way: a
baseline CNN at 32 px for 2 epochs on 3 synthetic artists, a few seconds on a CPU.
``stack`` is a tests.conftest.Stack: a store, a broker and a running worker.
"""

from __future__ import annotations

ARTISTS = 3
MODEL = ["--arch", "baseline-cnn", "--image-size", "32", "--batch-size", "8"]
CLASSIFIER = [*MODEL, "--lr", "1e-3"]


def tiny_dataset(stack, name: str, per_artist: int = 9) -> str:
    """``ARTISTS`` synthetic artists of ``per_artist`` 40 px paintings each, registered as ``name``."""
    stack.atelier("dataset", "synth", name, "--artists", str(ARTISTS), "--per-artist", str(per_artist), "--size", "40")
    return name


def tiny_training(stack, dataset: str) -> dict:
    """A baseline CNN trained for 2 epochs on ``dataset``, waited for: what ``atelier train --json`` said
    (its job and run ids)."""
    out = stack.json("train", "--dataset", dataset, *CLASSIFIER, "--epochs", "2")
    job = stack.wait_job(out["job"])
    assert job["status"] == "succeeded", job
    return out


def tiny_run(stack, dataset: str) -> int:
    """The run id of a ``tiny_training`` on ``dataset``."""
    return tiny_training(stack, dataset)["run"]
