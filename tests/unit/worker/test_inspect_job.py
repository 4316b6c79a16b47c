"""The inspect job's pieces (bottleneck hook, perplexity cap, overlay, conv blocks) and ``run_inspect`` end to end
on a SQLite file store, for a full model and for a grid cell's head on its frozen backbone. No Celery."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from torch import nn

from core.inspection import inspect_key, read_inspection
from core.params import inspect_params
from corpus.imageio import decode_all, load_resized, open_rgb
from corpus.synth import write_synthetic
from db import jobs
from db.models import Image, Job, Run, StyleBatch, StyleBatchPair, Stylization
from tests.unit.worker.fakes import add_dataset, add_job, make_settings, sqlite_store, tiny_config
from worker.inspect_job import per_artist, run_inspect, stored_or
from worker.lifecycle import execute
from worker.ml.activations import conv_blocks
from worker.ml.augment import make_augment
from worker.ml.backbones import build_backbone
from worker.ml.bottleneck import bottleneck_features, bottleneck_layer
from worker.ml.checkpoint import atomic_save, save_model
from worker.ml.embed import effective_perplexity, fit_map, tsne_map
from worker.ml.models import build_model
from worker.ml.overlay import jet, overlay
from worker.residents import DatasetImages, load_classifier

# --- the pure pieces -------------------------------------------------------------------------------------------


class TwoHeads(nn.Module):
    """A head registered before an auxiliary classifier, as Inception's aux head sits beside the main one."""

    def __init__(self):
        super().__init__()
        self.head = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
        self.aux = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(x)


def test_the_bottleneck_is_the_input_of_the_heads_last_linear_layer_in_every_forward_call():
    torch.manual_seed(0)
    model = TwoHeads().eval()
    name, layer = bottleneck_layer(model)
    assert (name, layer) == ("head.2", model.head[2])  # not the auxiliary classifier registered after it
    x = torch.randn(5, 4)
    feats, logits = bottleneck_features(layer, lambda: torch.cat([model(x[:3]), model(x[3:])]))  # two batches
    assert feats.shape == (5, 6) and feats.dtype == torch.float32
    assert torch.allclose(feats, torch.relu(model.head[0](x)))  # the manual computation
    assert torch.allclose(logits, model(x))
    assert not layer._forward_pre_hooks  # the hook is gone afterwards


def test_the_bottleneck_of_a_classifier_and_of_a_bare_head():
    model = build_model(tiny_config(num_classes=3, dense=(8,)).model_config())
    assert bottleneck_layer(model) == ("head.classifier", model.head.classifier)
    assert bottleneck_layer(model.head) == ("classifier", model.head.classifier)  # a grid cell's model
    # ... named as in the full classifier when the caller says it is a head alone
    assert bottleneck_layer(model.head, head_alone=True) == ("head.classifier", model.head.classifier)
    with pytest.raises(ValueError, match="no linear layer"):
        bottleneck_layer(nn.Conv2d(3, 3, 1))
    with pytest.raises(ValueError, match="did not run"):
        bottleneck_features(model.head.classifier, lambda: None)


def test_perplexity_is_capped_so_a_tiny_test_split_still_gets_a_map():
    assert effective_perplexity(30.0, 1000) == 30.0
    assert effective_perplexity(30.0, 9) == pytest.approx(8 / 3)  # 3 x perplexity neighbours of the 8 others
    x = torch.randn(9, 16, generator=torch.Generator().manual_seed(0))
    fitted = tsne_map(x, seed=0, perplexity=30.0)
    assert fitted.method == "t-SNE" and fitted.perplexity == pytest.approx(8 / 3)
    assert np.isfinite(fitted.place(x[:2] + 0.01)).all()


def test_fewer_than_four_points_are_mapped_on_their_principal_axes():
    x = torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    first, again = fit_map(x), fit_map(x.clone())
    assert first.method == "PCA" and first.perplexity is None
    assert np.array_equal(first.points, again.points) and first.points.shape == (3, 2)
    assert np.allclose(first.place(x), first.points)  # a fitted point placed again lands on itself
    assert fit_map(x[:1]).points.tolist() == [[0.0, 0.0]]  # one image: the origin
    assert fit_map(x[:2]).place(torch.zeros(0, 3)).shape == (0, 2)


def test_overlay_is_the_picture_upscaled_with_the_map_blended_over_it():
    picture = np.full((32, 16, 3), 200, dtype=np.uint8)
    heat = np.zeros((2, 1))
    heat[0, 0] = 1.0
    image = overlay(picture, heat)
    assert image.mode == "RGB" and image.size == (80, 160)  # long side 160, aspect kept
    assert image.tobytes() == overlay(picture.copy(), heat.copy()).tobytes()  # deterministic
    pixels = np.asarray(image, dtype=int)
    assert pixels[0, 40, 0] > pixels[0, 40, 2]  # hot (red) at the top
    assert pixels[-1, 40, 2] > pixels[-1, 40, 0]  # cold (blue) at the bottom
    assert np.allclose(jet(np.array([0.0, 0.5, 1.0])), [[0, 0, 0.5], [0.5, 1, 0.5], [0.5, 0, 0]])
    with pytest.raises(ValueError, match="picture"):
        overlay(picture[..., 0], heat)


def test_conv_blocks_are_the_first_and_last_block_holding_a_convolution():
    assert [n for n, _ in conv_blocks(build_backbone("baseline-cnn"))] == ["features.0", "features.9"]
    assert [n for n, _ in conv_blocks(build_backbone("resnet18"))] == ["conv1", "layer4"]
    assert conv_blocks(build_backbone("logistic")) == []
    assert [n for n, _ in conv_blocks(nn.Sequential(nn.Conv2d(3, 3, 1)))] == ["0"]


def test_a_stored_prediction_wins_over_the_computed_argmax():
    data = DatasetImages(
        root=Path("."),
        classes=["A", "B", "C"],
        ids=[10, 11, 12],
        paths=["a", "b", "c"],
        labels=[0, 1, 2],
        splits=["test"] * 3,
    )
    logits = torch.tensor([[5.0, 0.0, 0.0], [5.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
    stored = {10: "C", 12: "B"}  # image 11 has no stored row
    assert stored_or(stored, data, [0, 1, 2], logits) == {0: 2, 1: 0, 2: 1}


def test_activation_images_are_drawn_per_artist_with_a_seed():
    data = DatasetImages(None, ["a", "b"], list(range(10)), [""] * 10, [0] * 5 + [1] * 5, ["test"] * 10)
    picks = per_artist(data, list(range(10)), 2, seed=0)
    assert len(picks) == 4 and picks == per_artist(data, list(range(10)), 2, seed=0)
    assert [data.labels[k] for k in picks] == [0, 0, 1, 1]
    assert per_artist(data, [0, 5], 3, seed=0) == [0, 5]  # all an artist has when fewer


# --- run_inspect on a real store -------------------------------------------------------------------------------

ARTISTS = 3
SIZE = 32


def build_store(settings, sessions, root, *, grid: bool, tests: int) -> tuple[int, str, nn.Module]:
    """3 artists x (2 train + 1 val + ``tests`` test) paintings, a finished run of a random-init baseline CNN
    (a full model, or a grid cell's head on its features job's backbone), and a style batch of 2 content images
    (one train, one test) x 2 styles. Returns (run id, batch id, the classifier as a module)."""
    splits = ["train", "train", "val"] + ["test"] * tests
    artists = sorted(write_synthetic(root / "paintings", artists=ARTISTS, per_artist=len(splits), size=40))
    cfg = tiny_config(num_classes=ARTISTS, dense=(8,))
    torch.manual_seed(0)  # what load_classifier seeds with for a grid cell's backbone (its features seed)
    model = build_model(cfg.model_config()).eval()
    with sessions.begin() as s:
        ds = add_dataset(s, root / "paintings", tuple(artists))
        for artist in artists:
            for k, split in enumerate(splits):
                s.add(Image(dataset_id=ds.id, path=f"{artist}/{k:04d}.jpg", label=artist, split=split))
        train = {"dataset_id": ds.id, "config": cfg.to_json()}
        depends_on = None
        if grid:
            features = {"dataset_id": ds.id, "arch": cfg.arch, "image_size": SIZE, "augment": "none", "views": 1}
            depends_on = add_job(s, "succeeded", kind="features", params={**features, "weights": None, "seed": 0}).id
            train["features"] = "features/f.safetensors"
            atomic_save(dict(model.head.state_dict()), settings.artifacts / "best.safetensors", {})
        else:
            save_model(model, settings.artifacts / "best.safetensors", {})
        job = add_job(s, "succeeded", params=train, depends_on=depends_on)
        run = Run(
            job_id=job.id, dataset_id=ds.id, arch=cfg.arch, config=cfg.to_json(), checkpoint_path="best.safetensors"
        )
        s.add(run)
        s.flush()
        batch_id = add_batch(s, settings, root, ds.id, run.id, tests)
        return run.id, batch_id, model


def add_batch(s, settings, root, dataset_id: int, run_id: int, tests: int) -> str:
    images = s.query(Image).filter_by(dataset_id=dataset_id).order_by(Image.id).all()
    per = 3 + tests
    contents = [images[0], images[per + 3]]  # a train image of artist 0, a test image of artist 1
    styles = [images[2 * per], images[2 * per + 1]]
    batch = StyleBatch(dataset_id=dataset_id, classifier_run_id=run_id, spec={})
    s.add(batch)
    s.flush()
    chunk = add_job(s, "succeeded", kind="stylize", params={}, group_id=batch.id)
    for n, (c, st) in enumerate((c, st) for c in contents for st in styles):
        rel = f"stylized/{batch.id}/{n}.png"
        (settings.artifacts / rel).parent.mkdir(parents=True, exist_ok=True)
        mixed = load_resized(root / "paintings" / c.path, 24) // 2 + load_resized(root / "paintings" / st.path, 24) // 2
        PILImage.fromarray(mixed).save(settings.artifacts / rel)
        pair_hash = f"{n:064x}"
        s.add(StyleBatchPair(batch_id=batch.id, pair_hash=pair_hash, job_id=chunk.id))
        s.add(stylization(pair_hash, batch.id, chunk.id, run_id, c, st, float(10**n), rel))
    return batch.id


def stylization(pair_hash, batch_id, job_id, run_id, content, style, beta, rel) -> Stylization:
    return Stylization(
        pair_hash=pair_hash, batch_id=batch_id, job_id=job_id, content_image_id=content.id,
        content_artist=content.label, style_image_id=style.id, style_artist=style.label, content_weight=1.0,
        style_weight=beta, steps=3, size=24, optimizer="adam", vgg_weights="random", content_loss=0.0,
        style_loss=0.0, classifier_run_id=run_id, predicted=content.label, top3=[], outcome="content", image_path=rel,
    )  # fmt: skip


def store_predictions(sessions, settings, run_id: int) -> None:
    """Each stylization's ``predicted`` as the stylize job stores it: the run's classifier on the saved PNG
    (the map takes a work's ``predicted`` from its row)."""
    with sessions.begin() as s:
        classes = sorted({i.label for i in s.query(Image)})
        classify = load_classifier(s, s.get(Run, run_id), classes, settings.artifacts, torch.device("cpu"))
        for w in s.query(Stylization):
            w.predicted = classify([open_rgb(settings.artifacts / w.image_path)])[0][0][0]


def inspect_job(sessions, run_id: int, batch_id: str | None) -> tuple[str, dict]:
    params = inspect_params(inspect_key(run_id, batch_id, 2, 2, 0, 30.0), jobs.params_hash)
    with sessions.begin() as s:
        return jobs.create_job(s, "inspect", params).id, params


@pytest.mark.parametrize("grid, tests", [(False, 3), (True, 1)], ids=["full model, t-SNE", "grid cell, PCA"])
def test_run_inspect_maps_the_test_split_and_the_batch_and_draws_activation_maps(tmp_path, grid, tests):
    settings = make_settings(tmp_path)
    with sqlite_store(settings) as sessions:
        run_id, batch_id, model = build_store(settings, sessions, tmp_path, grid=grid, tests=tests)
        store_predictions(sessions, settings, run_id)
        job_id, params = inspect_job(sessions, run_id, batch_id)
        assert execute(settings, job_id, "inspect", run_inspect, sessions=sessions) == "succeeded"
        with sessions() as s:
            assert s.get(Job, job_id).status == "succeeded"
            test_rows = s.query(Image).filter_by(split="test").order_by(Image.id).all()
            classes = sorted({i.label for i in s.query(Image)})
            classify = load_classifier(s, s.get(Run, run_id), classes, settings.artifacts, torch.device("cpu"))
            works = s.query(Stylization).order_by(Stylization.id).all()
        first = (settings.artifacts / params["output"] / "map.json").read_bytes()
        again_id, _ = inspect_job(sessions, run_id, batch_id)
        assert execute(settings, again_id, "inspect", run_inspect, sessions=sessions) == "succeeded"
        assert (settings.artifacts / params["output"] / "map.json").read_bytes() == first  # deterministic
    doc, acts = read_inspection(settings.artifacts, params["output"])
    check_map(doc, test_rows, works, tmp_path, model, classify, grid, tests)
    check_activations(settings.artifacts / params["output"], acts, test_rows)


def check_map(doc, test_rows, works, root, model, classify, grid: bool, tests: int) -> None:
    assert doc["method"] == ("PCA" if tests == 1 else "t-SNE") and doc["perplexity"] == 30
    assert doc["layer"] == "input of head.classifier (8 features)" and len(doc["classes"]) == ARTISTS
    points = {kind: [p for p in doc["points"] if p["kind"] == kind] for kind in ("test", "content", "stylized")}
    assert [p["image_id"] for p in points["test"]] == [r.id for r in test_rows]
    assert all(np.isfinite([p["x"], p["y"]]).all() for p in doc["points"])
    # The test split exactly as the run evaluated it: the uint8 cache, its normalisation, the model (a grid cell:
    # its backbone's features rounded to bf16 as its features job stored them, then its head).
    x = torch.from_numpy(decode_all(root / "paintings", [r.path for r in test_rows], SIZE))
    expected = classify.logits(x).argmax(1).tolist()
    if not grid:
        with torch.no_grad():
            assert model(make_augment("none", SIZE, train=False)(x)).argmax(1).tolist() == expected
    assert [p["predicted"] for p in points["test"]] == [doc["classes"][c] for c in expected]
    assert [p["label"] for p in points["test"]] == [r.label for r in test_rows]
    # The train content image is placed as "content"; the test one is a test point already.
    assert [p["image_id"] for p in points["content"]] == [works[0].content_image_id]
    assert [p["stylization_id"] for p in points["stylized"]] == [w.id for w in works]  # all of both contents
    for p, w in zip(points["stylized"], works):
        assert (p["content_image_id"], p["style_artist"], p["beta"], p["label"]) == (
            w.content_image_id, w.style_artist, w.style_weight, w.content_artist,
        )  # fmt: skip
        assert p["predicted"] == classify([open_rgb(root / "artifacts" / w.image_path)])[0][0][0]  # the stylize path


def check_activations(folder, acts, test_rows) -> None:
    per_label = {}
    for entry in acts:
        per_label[entry["label"]] = per_label.get(entry["label"], 0) + 1
        assert entry["image_id"] in {r.id for r in test_rows} and entry["path"].endswith(".jpg")
        assert [m["what"] for m in entry["maps"]] == [
            "mean activation features.0",
            "mean activation features.9",
            f"Grad-CAM features.9 for {entry['predicted']}",
        ]
        for m in entry["maps"]:
            with PILImage.open(folder / m["file"]) as img:
                assert img.format == "PNG" and img.size == (160, 160)
    tests = len(test_rows) // ARTISTS
    assert per_label == {label: min(2, tests) for label in per_label} and len(per_label) == ARTISTS
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary file left behind
    json.loads((folder / "activations.json").read_text())
