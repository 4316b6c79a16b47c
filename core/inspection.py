"""The contract of the `inspect` job: what the feature pass behind a report computes and where it puts it.

A report never trains or stylizes; the only model work it needs is cheap, so it runs as one job on a
worker (``worker/inspect_job.py``) and is cached by its params like every other job: a second report of
the same run (and batch) reads the files again. The orchestrator reads them with ``read_inspection``;
it never imports torch.

Everything lands in one folder under the artifacts root, ``inspect/<params hash>/``:

``map.json``
    ``{"run_id", "batch_id", "seed", "perplexity", "perplexity_used", "method", "layer", "classes",
    "points": [...]}``; ``layer`` says which activations were embedded (the input of the classifier's last
    linear layer, its bottleneck), e.g. ``"input of head.classifier (512 features)"``. ``perplexity`` is the
    one asked for; ``perplexity_used`` the one that drew the map, capped at (N - 1) / 3 for N test images
    (``worker.ml.embed``). ``method`` is ``"t-SNE"``, or ``"PCA"`` (``perplexity_used`` null) for a test split
    of fewer than 4 images, which t-SNE cannot embed. Each point is ``{"kind", "x", "y", "label",
    "predicted", ...}`` (``label`` and ``predicted`` are artist names) with ``kind``:

    - ``"test"``: a test image of the run's dataset (``image_id``); these alone are fitted, in image id order.
    - ``"content"``: a sampled content image of the batch (``image_id``) that is not in the test split,
      placed into the fitted map without moving it.
    - ``"stylized"``: a stylization of one of the sampled content images (``stylization_id``,
      ``content_image_id``, ``style_image_id``, ``style_artist``, ``beta``, ``image_path`` relative to the
      artifacts root), placed likewise. ``label`` is its content artist.

    Content images are sampled with ``random.Random(seed)`` from the batch's content images (sorted ids);
    every stylization of theirs the batch holds is placed, reused pairs included (``style_batch_pairs``).
    A sampled content image that is not in the run's dataset has no ``"content"`` point (the job has no
    cached picture of it); its stylizations are still placed.

    ``predicted`` agrees with the store: a ``"test"`` point's is the run's row in ``predictions`` for that
    image, a ``"stylized"`` point's its ``stylizations.predicted``; only where no stored row exists (a
    ``"content"`` point outside the test split, a test image without a row) is it the argmax of the logits
    computed in the same forward pass that gave the point's position.

``activations.json``
    ``[{"image_id", "label", "predicted", "path", "maps": [{"what", "file"}, ...]}, ...]``: a few test
    images per artist, each with the mean activation of chosen conv blocks and a Grad-CAM heat map for
    the predicted class (``predicted``, as the image's ``"test"`` point has it), every map a PNG in the same folder (the picture with the map laid over it).
    ``path`` is the image's path in its dataset; ``what`` reads ``"mean activation <block>"`` (the first and
    the last conv block of the backbone) or ``"Grad-CAM <block> for <artist>"`` (the last block); ``file``
    is ``"<image_id>-mean-<block>.png"`` or ``"<image_id>-gradcam-<block>.png"``, 160 px on its long side.
    A backbone without convolutions (``logistic``) has no maps: its entries list none.

Every file is written under a temporary name and renamed, ``map.json`` last.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.artifacts import artifact_path

MAP_FILE = "map.json"
ACTIVATIONS_FILE = "activations.json"


def inspect_key(
    run_id: int,
    batch_id: str | None,
    per_artist: int,
    contents: int,
    seed: int,
    perplexity: float,
    works: int | None = None,
) -> dict:
    """The params that decide what an inspect job computes (its output folder is named by their hash).

    ``works``: how many stylizations the batch held when it was inspected (None without a batch). A run is
    inspected only once its job succeeded, so its checkpoint is final; a batch can still grow after it
    ended (a failed chunk retried), and those works must not be missing from a map read from the cache.
    """
    return {
        "run_id": run_id,
        "batch_id": batch_id,
        "per_artist": per_artist,  # test images per artist with activation maps
        "contents": contents,  # content images of the batch whose stylizations are placed in the map
        "seed": seed,
        "perplexity": perplexity,
        "works": works,
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
