"""The contract of the `inspect` job: what the feature pass behind a report computes and where it puts it.

A report never trains or stylizes; the only model work it needs is cheap, so it runs as one job on a
worker (``worker/inspect_job.py``) and is cached by its params like every other job: a second report of
the same run (and batch) reads the files again. The orchestrator reads them with ``read_inspection``;
it never imports torch.

Everything lands in one folder under the artifacts root, ``inspect/<params hash>/``:

``map.json``
    ``{"run_id", "batch_id", "seed", "perplexity", "layer", "classes", "points": [...]}``; ``layer`` says
    which activations were embedded (the input of the classifier's last linear layer, its bottleneck).
    Each point is ``{"kind", "x", "y", "label", "predicted", ...}`` with ``kind``:

    - ``"test"``: a test image of the run's dataset (``image_id``); these alone are fitted by t-SNE.
    - ``"content"``: a sampled content image of the batch (``image_id``) that is not in the test split,
      placed into the fitted map without moving it.
    - ``"stylized"``: a stylization of one of the sampled content images (``stylization_id``,
      ``content_image_id``, ``style_artist``, ``beta``), placed likewise. ``label`` is its content artist.

``activations.json``
    ``[{"image_id", "label", "predicted", "path", "maps": [{"what", "file"}, ...]}, ...]``: a few test
    images per artist, each with the mean activation of chosen conv blocks and a Grad-CAM heat map for
    the predicted class, every map a PNG in the same folder (the picture with the map laid over it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.artifacts import artifact_path

MAP_FILE = "map.json"
ACTIVATIONS_FILE = "activations.json"
POINT_KINDS = ("test", "content", "stylized")


def inspect_key(run_id: int, batch_id: str | None, per_artist: int, contents: int, seed: int, perplexity: float) -> dict:
    """The params that decide what an inspect job computes (its output folder is named by their hash)."""
    return {
        "run_id": run_id,
        "batch_id": batch_id,
        "per_artist": per_artist,  # test images per artist with activation maps
        "contents": contents,  # content images of the batch whose stylizations are placed in the map
        "seed": seed,
        "perplexity": perplexity,
    }


def inspect_folder(params_hash: str) -> Path:
    return Path("inspect") / params_hash


def read_inspection(artifacts: Path, output: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(map, activations) as an inspect job wrote them under ``output`` (relative to the artifacts root)."""
    folder = artifact_path(artifacts, output)
    return (
        json.loads((folder / MAP_FILE).read_text(encoding="utf-8")),
        json.loads((folder / ACTIVATIONS_FILE).read_text(encoding="utf-8")),
    )
