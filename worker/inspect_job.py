"""The `inspect` job: the cheap feature pass behind a report (what it writes: ``core.inspection``).

Nothing is trained or stylized. The run's classifier (a full model, or a grid cell's head on its frozen
backbone: ``residents.resident_classifier``) answers for

- the test split, from the uint8 cache at the run's image size, exactly as the run evaluated it;
- a style batch's sampled content images (the same cache) and all their stylized works, on the path the
  stylize job classified them (``Classifier.inputs``: the cache's crop of the saved PNG);

and the input of its last linear layer is read during those very forward passes (``worker.ml.bottleneck``),
so a point's position and its predicted artist come from one computation. The test features are fitted
(t-SNE, or PCA below 4 images: ``worker.ml.embed.fit_map``); everything else is placed into that map.
A few test images per artist get activation maps (``worker.ml.activations``) laid over the picture.

Every file is written under a temporary name and renamed, ``map.json`` last: a reader never sees half a
file, and the job's success in the store is what says the folder is complete.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from sqlalchemy import select
from torch import nn

from core.artifacts import write_atomic
from core.errors import ConfigError
from core.inspection import ACTIVATIONS_FILE, MAP_FILE
from corpus.imageio import ImageError, open_rgb
from db.models import Prediction, Run, StyleBatch, StyleBatchPair, Stylization
from worker.lifecycle import JobContext, require_row
from worker.ml.activations import conv_blocks, grad_cam, mean_activation
from worker.ml.augment import make_augment
from worker.ml.bottleneck import bottleneck_features, bottleneck_layer
from worker.ml.classify import Classifier
from worker.ml.embed import fit_map
from worker.ml.overlay import overlay
from worker.ml.train import pick_device
from worker.residents import DatasetImages, load_dataset_images, resident_classifier, resident_images

CHUNK = 256  # images per forward pass: progress is written and a cancel noticed between them
MAP_CHUNK = 32  # images per activation-map pass (one call per block and chunk): Grad-CAM keeps a graph


@dataclass
class Subject:
    """What the store says the job inspects, read in one session."""

    dataset_id: int
    data: DatasetImages
    classify: Classifier
    contents: list[int]  # the sampled content image ids of the batch (empty without a batch)
    works: list[dict]  # all their stylizations in the batch, by stylization id
    predictions: dict[int, str]  # the run's stored prediction (artist name) of each test image, by image id


def run_inspect(ctx: JobContext) -> None:
    p = ctx.params
    subject = read_subject(ctx)
    data, classify = subject.data, subject.classify
    ctx.progress(0.0, f"caching {len(data.ids)} images at {classify.cfg.image_size}px")
    images = resident_images(ctx, subject.dataset_id, data, classify.cfg.image_size)
    test = [k for k, split in enumerate(data.splits) if split == "test"]
    if not test:
        raise ConfigError(f"the dataset of run {p['run_id']} has no test images to map")
    layer_name, layer = bottleneck_layer(classify.model, head_alone=classify.backbone is not None)
    feats, logits = features_of(ctx, layer, classify, len(test), lambda a, b: images[test[a:b]], (0.05, 0.4), "test")
    ctx.progress(0.4, f"mapping {len(test)} test images")
    fmap = fit_map(feats, p["seed"], p["perplexity"])
    predicted = stored_or(subject.predictions, data, test, logits)
    points = [
        point("test", xy, data.classes[data.labels[k]], data.classes[predicted[k]], image_id=data.ids[k])
        for k, xy in zip(test, fmap.points)
    ]
    points += batch_points(ctx, subject, layer, images, fmap, set(test))
    folder = ctx.artifact(p["output"])
    picks = per_artist(data, test, p["per_artist"], p["seed"])
    write_json(folder / ACTIVATIONS_FILE, activation_maps(ctx, classify, data, images, picks, predicted, folder))
    document = {
        "run_id": p["run_id"],
        "batch_id": p["batch_id"],
        "seed": p["seed"],
        "perplexity": p["perplexity"],  # as asked; what drew the map is perplexity_used
        "perplexity_used": fmap.perplexity,
        "method": fmap.method,
        "layer": f"input of {layer_name} ({feats.shape[1]} features)",
        "classes": data.classes,
        "points": points,
    }
    write_json(folder / MAP_FILE, document)


def read_subject(ctx: JobContext) -> Subject:
    p = ctx.params
    with ctx.sessions() as s:
        run = require_row(s, Run, p["run_id"], "run")
        data = load_dataset_images(s, run.dataset_id)
        classify = resident_classifier(s, run, data.classes, ctx.artifacts, pick_device())
        contents, works = batch_works(s, p, run.id) if p["batch_id"] else ([], [])
        stored = s.execute(select(Prediction.image_id, Prediction.predicted).where(Prediction.run_id == run.id))
        return Subject(run.dataset_id, data, classify, contents, works, {i: name for i, name in stored})


def stored_or(stored: dict[int, str], data: DatasetImages, rows: list[int], logits: torch.Tensor) -> dict[int, int]:
    """{row: class index} of the dataset rows ``rows``: the run's stored prediction where the store has one
    (what its report tables say), else the argmax of ``logits`` (one row each, in order) computed here."""
    index = {name: c for c, name in enumerate(data.classes)}
    computed = logits.argmax(1).tolist()
    return {k: index.get(stored.get(data.ids[k], ""), c) for k, c in zip(rows, computed)}


def batch_works(session, p: dict, run_id: int) -> tuple[list[int], list[dict]]:
    """(sampled content image ids, every stylization of them in the batch). A batch's works include pairs
    an earlier batch stylized and it reused (``style_batch_pairs``), as its attribution tables do."""
    batch = require_row(session, StyleBatch, p["batch_id"], "style batch")
    if batch.classifier_run_id != run_id:
        raise ConfigError(f"style batch {batch.id} was classified by run {batch.classifier_run_id}, not run {run_id}")
    rows = session.scalars(
        select(Stylization)
        .join(StyleBatchPair, StyleBatchPair.pair_hash == Stylization.pair_hash)
        .where(StyleBatchPair.batch_id == batch.id)
        .order_by(Stylization.id)
    ).all()
    ids = sorted({r.content_image_id for r in rows})
    chosen = set(random.Random(p["seed"]).sample(ids, min(p["contents"], len(ids))))
    works = [
        {
            "stylization_id": r.id,
            "content_image_id": r.content_image_id,
            "style_image_id": r.style_image_id,
            "style_artist": r.style_artist,
            "beta": r.style_weight,
            "label": r.content_artist,
            "image_path": r.image_path,
            "predicted": r.predicted,  # as the stylize job stored it
        }
        for r in rows
        if r.content_image_id in chosen
    ]
    return sorted(chosen), works


def features_of(
    ctx: JobContext,
    layer: nn.Module,
    classify: Classifier,
    n: int,
    load: Callable[[int, int], torch.Tensor],
    span: tuple[float, float],
    what: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(bottleneck features (n, D), logits (n, K)) of ``n`` images, ``load(start, stop)`` giving them as
    uint8 (B, 3, S, S) a chunk at a time, through ``Classifier.logits``: the run's own evaluation path."""
    feats, logits = [], []
    for start in range(0, n, CHUNK):
        ctx.tick(span[0] + (span[1] - span[0]) * start / n, f"features of {what} images: {start}/{n}")
        f, out = bottleneck_features(layer, partial(classify.logits, load(start, min(start + CHUNK, n))))
        feats.append(f)
        logits.append(out)
    return torch.cat(feats), torch.cat(logits)


def batch_points(ctx: JobContext, subject: Subject, layer, images: torch.Tensor, fmap, in_test: set[int]) -> list:
    """The batch's sampled content images outside the test split (those inside are test points already) and
    their stylized works, placed into the fitted map. A sampled content image outside the run's dataset is not
    drawn (its stylizations are). A work's ``predicted`` is the one its stylization row holds."""
    data, classify = subject.data, subject.classify
    index = {image_id: k for k, image_id in enumerate(data.ids)}
    outside = [index[i] for i in subject.contents if i in index and index[i] not in in_test]
    points = []
    if outside:
        feats, logits = features_of(
            ctx, layer, classify, len(outside), lambda a, b: images[outside[a:b]], (0.5, 0.55), "content"
        )
        for k, xy, c in zip(outside, fmap.place(feats), logits.argmax(1).tolist()):
            points.append(point("content", xy, data.classes[data.labels[k]], data.classes[c], image_id=data.ids[k]))
    works = subject.works
    if works:
        load = lambda a, b: classify.inputs([stylized_picture(ctx, w) for w in works[a:b]])  # noqa: E731
        feats, logits = features_of(ctx, layer, classify, len(works), load, (0.55, 0.7), "stylized")
        for w, xy, c in zip(works, fmap.place(feats), logits.argmax(1).tolist()):
            extra = {k: v for k, v in w.items() if k not in ("label", "predicted")}
            points.append(point("stylized", xy, w["label"], w["predicted"] or data.classes[c], **extra))
    return points


def stylized_picture(ctx: JobContext, work: dict):
    try:
        return open_rgb(ctx.artifact(work["image_path"]))
    except ImageError as err:
        raise ConfigError(f"stylization {work['stylization_id']} ({work['image_path']}): {err.reason}") from None


def point(kind: str, xy, label: str, predicted: str, **extra) -> dict:
    x, y = (round(float(v), 4) for v in xy)  # a tenth of a thousandth of a map's width is plenty
    return {"kind": kind, "x": x, "y": y, "label": label, "predicted": predicted, **extra}


def per_artist(data: DatasetImages, test: list[int], k: int, seed: int) -> list[int]:
    """``k`` test images of each artist (all it has if fewer), drawn with a generator seeded by the seed and
    the artist's name, so adding an artist never changes another's; in class then image order."""
    by_label: dict[int, list[int]] = defaultdict(list)
    for i in test:
        by_label[data.labels[i]].append(i)
    picks = []
    for label in sorted(by_label):
        pool = by_label[label]
        picks += sorted(random.Random(f"{seed}:{data.classes[label]}").sample(pool, min(k, len(pool))))
    return picks


def differentiable(classify: Classifier) -> tuple[nn.Module, nn.Module]:
    """(images -> logits as one module, its backbone): a grid cell's frozen backbone and head composed, so a
    gradient runs from the logits back to any block (its eval path stores bf16 features in between)."""
    if classify.backbone is None:
        return classify.model, classify.model.backbone
    backbone = classify.backbone.to(classify.device)
    return nn.Sequential(backbone, classify.model), backbone


def activation_maps(ctx: JobContext, classify, data, images, picks: list[int], predicted: dict, folder: Path):
    """activations.json's entries: for each picked test image, the mean activation of the first and last conv
    blocks and Grad-CAM on the last for the predicted class, each a PNG over the picture in ``folder``.
    A backbone without convolutions (``logistic``) has no maps to show: its entries list none.
    The maps are computed MAP_CHUNK images at a time (one call per block and chunk), in ``picks`` order."""
    model, backbone = differentiable(classify)
    blocks = conv_blocks(backbone)
    plain = make_augment("none", classify.cfg.image_size, train=False)  # the run's eval normalisation
    out = []
    for start in range(0, len(picks), MAP_CHUNK):
        ctx.tick(0.7 + 0.3 * start / len(picks), f"activation maps: {start}/{len(picks)} images")
        chunk = picks[start : start + MAP_CHUNK]
        x = plain(images[chunk].to(classify.device), None)
        means = [(name, mean_activation(model, block, x)) for name, block in blocks]
        classes = [predicted[k] for k in chunk]
        cams = grad_cam(model, blocks[-1][1], x, torch.tensor(classes)) if blocks else None
        for j, (k, c) in enumerate(zip(chunk, classes)):
            picture, image_id = images[k].permute(1, 2, 0).numpy(), data.ids[k]
            maps = [
                save_map(folder, f"{image_id}-mean-{name}.png", picture, heat[j], f"mean activation {name}")
                for name, heat in means
            ]
            if cams is not None:
                name = blocks[-1][0]
                what = f"Grad-CAM {name} for {data.classes[c]}"
                maps.append(save_map(folder, f"{image_id}-gradcam-{name}.png", picture, cams[j], what))
            out.append(
                {
                    "image_id": image_id,
                    "label": data.classes[data.labels[k]],
                    "predicted": data.classes[c],
                    "path": data.paths[k],
                    "maps": maps,
                }
            )
    return out


def save_map(folder: Path, name: str, picture: np.ndarray, heat: torch.Tensor, what: str) -> dict:
    image = overlay(picture, heat.detach().float().cpu().numpy())
    write_atomic(folder / name, lambda tmp: image.save(tmp, format="PNG"))
    return {"what": what, "file": name}


def write_json(path: Path, value) -> None:
    text = json.dumps(value, ensure_ascii=False, allow_nan=False)  # a NaN would make the file unreadable JSON
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
