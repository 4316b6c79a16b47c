"""Nearest-centroid attribution (worker.ml.attributors): the style space's distance is the transfer's own style
loss, the nearest centroid is the answer, a registered embedding is built through its factory (a tiny random
network: no real embedding's weights exist offline here)."""

import numpy as np
import pytest
import torch
from PIL import Image

from core.errors import ConfigError
from tests.tiny_embedding import build, weights
from worker.ml.attributors import Centroids, GramEmbedding, PooledEmbedding, cosine, fit_centroids, load_embedding
from worker.ml.style import build_vgg, from_pil
from worker.ml.style.losses import gram_matrix, style_loss


def picture(seed: int, size=(40, 32), tint=(0, 0, 0)) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.integers(0, 200, (size[1], size[0], 3)) + np.array(tint), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def vgg():
    torch.manual_seed(0)
    return build_vgg("vgg19", None, "cpu", "avg")


@pytest.mark.parametrize("loss", ["gatys", "tutorial"])
def test_the_style_space_distance_is_the_transfers_style_loss(vgg, loss):
    a, b = picture(1), picture(2, size=(32, 40))  # other sizes: each Gram is a mean over its own positions
    embed = GramEmbedding(vgg, "cpu", loss)
    va, vb = embed([a]), embed([b])
    fa, fb = vgg(from_pil(a)[None]), vgg(from_pil(b)[None])
    expected = style_loss(fa, {k: gram_matrix(v) for k, v in fb.items()}, loss)
    assert float((va - vb).pow(2).sum()) == pytest.approx(float(expected), rel=1e-4)


def test_the_nearest_centroid_names_the_artist_and_is_the_most_probable(vgg):
    tints = {"dark": (0, 0, 0), "red": (55, -60, -60), "blue": (-60, -60, 55)}
    classes = list(tints)
    batches = [([picture(10 * k + i, tint=tints[c]) for i in range(3)], [k] * 3) for k, c in enumerate(classes)]
    for embed, metric in ((GramEmbedding(vgg, "cpu"), "sqeuclidean"), (PooledEmbedding(vgg, "cpu"), "cosine")):
        space = fit_centroids(embed, batches, classes, metric)
        again = Centroids.from_state(space.to_state(), classes, metric)
        test = [picture(100 + k, tint=tints[c]) for k, c in enumerate(classes)]
        d = again.distances(embed(test))
        probs = again.probabilities(d)
        assert d.argmin(1).tolist() == probs.argmax(1).tolist()
        assert torch.allclose(probs.sum(1), torch.ones(3))
        assert d.argmin(1).tolist() == [0, 1, 2]
        if metric == "cosine":
            feats = embed(test)
            assert float(cosine(feats[:1], feats[:1], space)[0]) == pytest.approx(1.0, abs=1e-5)


def test_a_registered_embedding_is_built_by_its_factory_and_refused_in_one_line_when_it_cannot_be():
    embed = load_embedding("tests.tiny_embedding:build", weights(), "cpu")
    assert embed([picture(1), picture(2)]).shape == (2, 6)
    assert torch.equal(embed([picture(1)]), build(weights(), "cpu")([picture(1)]))
    with pytest.raises(ConfigError, match="cannot be imported") as err:
        load_embedding("tests.no_such_module:build", {}, "cpu")
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="no training image for b"):
        fit_centroids(embed, [([picture(1), picture(2)], [0, 0])], ["a", "b"], "cosine")
