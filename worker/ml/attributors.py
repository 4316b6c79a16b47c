"""Nearest-centroid attribution in a feature space: pure PyTorch, no store, no Celery.

The interface is one callable: ``Embedding``, 8-bit pictures in, one feature vector each out. Three live here
(the style space, the content space, and whatever a user registers through ``load_embedding``); ``Centroids``
turns any of them into an attributor: each artist's centroid over the dataset's training images, a picture
named after the nearest one.

- Style space (``GramEmbedding``): each layer's Gram matrix (relu1_1 ... relu5_1, normalised by C·H·W as the
  transfer's ``gram_matrix``), scaled so that the squared Euclidean distance between two vectors *is* the
  transfer's style loss between the two pictures (``losses.style_loss``, gatys or tutorial as the batch). The
  centroid is each artist's mean Gram, so the distance to it is the style loss against the artist's mean style:
  the very quantity the optimisation lowers toward one painting's Grams.
- Content space (``PooledEmbedding``): relu4_2 averaged over positions (a C-vector: which parts are present,
  wherever they are, so a copied motif counts wherever it lands), centred on the training images' mean and
  compared by cosine; centring keeps the shared all-positive part of ReLU features from making every picture
  look alike.
- Probabilities: softmax(−d / mean d) over the artists. The rank, hence the named artist, is the distances'; the
  temperature (the picture's own mean distance) only makes them scale-free, so they are a rough confidence, not
  a calibrated one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import torch
from PIL import Image

from core.errors import ConfigError
from worker.ml.style import from_pil
from worker.ml.style.losses import CONTENT_LAYER, STYLE_LAYERS, gram_matrix


class Embedding(Protocol):
    """Images in, one feature vector each out: ``(pictures: list of 8-bit RGB PIL images) -> (N, D) float tensor``.

    A registered embedding is built by a factory ``build(state: dict[str, Tensor], device) -> Embedding`` from its
    safetensors file (tests/tiny_embedding.py is a worked example)."""

    def __call__(self, pictures: list[Image.Image]) -> torch.Tensor: ...


class GramEmbedding:
    """A picture's Grams at relu1_1 ... relu5_1 as one vector whose squared distances are style losses."""

    def __init__(self, vgg, device, loss: str = "gatys"):
        self.vgg, self.device, self.loss = vgg, device, loss

    def _weight(self, channels: int) -> float:
        # gatys: 1/4 Σ_ij (G − A)² per layer, mean over the 5 layers; tutorial: Σ over layers of the mean over C².
        return 0.25 / len(STYLE_LAYERS) if self.loss == "gatys" else 1.0 / channels**2

    @torch.no_grad()
    def __call__(self, pictures: list[Image.Image]) -> torch.Tensor:
        out = []
        for picture in pictures:  # each at its own aspect, as the transfer sees it
            feats = self.vgg(from_pil(picture).to(self.device)[None])
            parts = [gram_matrix(feats[n])[0].flatten() * self._weight(feats[n].shape[1]) ** 0.5 for n in STYLE_LAYERS]
            out.append(torch.cat(parts).float().cpu())
        return torch.stack(out)


class PooledEmbedding:
    """relu4_2 (the transfer's content layer) averaged over positions: one C-vector per picture."""

    def __init__(self, vgg, device):
        self.vgg, self.device = vgg, device

    @torch.no_grad()
    def __call__(self, pictures: list[Image.Image]) -> torch.Tensor:
        return torch.stack(
            [self.vgg(from_pil(p).to(self.device)[None])[CONTENT_LAYER][0].float().mean((1, 2)).cpu() for p in pictures]
        )


@dataclass
class Centroids:
    """Each artist's centroid in one space, and how a picture is compared with them."""

    classes: list[str]
    centroids: torch.Tensor  # (K, D)
    metric: str  # sqeuclidean (the style space: the style loss) | cosine (after subtracting ``center``)
    center: torch.Tensor | None = None  # (D,) the training images' mean, for cosine

    def unit(self, feats: torch.Tensor) -> torch.Tensor:
        """Centred and scaled to unit length (cosine spaces)."""
        centred = feats.float() - (self.center if self.center is not None else 0)
        return centred / centred.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def distances(self, feats: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N, K) distances to each artist's centroid."""
        if self.metric == "sqeuclidean":
            return torch.cdist(feats.double(), self.centroids.double()).pow(2).float()
        return 1 - self.unit(feats) @ self.centroids.T

    def probabilities(self, distances: torch.Tensor) -> torch.Tensor:
        """softmax(−d / mean d) per picture: the nearest artist is the most probable (module docstring)."""
        scale = distances.mean(1, keepdim=True).clamp_min(1e-12)
        return (-distances / scale).softmax(1)

    def to_state(self) -> dict[str, torch.Tensor]:
        state = {"centroids": self.centroids.contiguous()}
        return state | ({"center": self.center.contiguous()} if self.center is not None else {})

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], classes: list[str], metric: str) -> Centroids:
        return cls(list(classes), state["centroids"], metric, state.get("center"))


def fit_centroids(
    embed: Embedding, batches: Iterable[tuple[list[Image.Image], list[int]]], classes: list[str], metric: str
) -> Centroids:
    """Each artist's centroid over ``batches`` of (pictures, class indices). The style space sums as it goes (a
    vector of Grams is ~600k floats); a cosine space keeps its (small) vectors to centre them first."""
    k = len(classes)
    sums, counts, kept = None, torch.zeros(k), []
    for pictures, labels in batches:
        feats, idx = embed(pictures).float(), torch.tensor(labels)
        if metric == "cosine":
            kept.append((feats, idx))
            continue
        sums = sums if sums is not None else torch.zeros(k, feats.shape[1])
        sums.index_add_(0, idx, feats)
        counts += torch.bincount(idx, minlength=k).float()
    if metric == "sqeuclidean":
        if sums is None or (counts == 0).any():
            raise ConfigError(f"no training image for {', '.join(c for c, n in zip(classes, counts) if n == 0)}")
        return Centroids(list(classes), sums / counts[:, None], metric)
    feats, idx = torch.cat([f for f, _ in kept]), torch.cat([i for _, i in kept])
    space = Centroids(list(classes), torch.empty(0), metric, feats.mean(0))
    unit = space.unit(feats)
    missing = [c for j, c in enumerate(classes) if not (idx == j).any()]
    if missing:
        raise ConfigError(f"no training image for {', '.join(missing)}")
    means = torch.stack([unit[idx == j].mean(0) for j in range(k)])
    space.centroids = means / means.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return space


def cosine(a: torch.Tensor, b: torch.Tensor, space: Centroids) -> torch.Tensor:
    """Row-wise cosine of two (N, D) feature sets in ``space`` (centred as its centroids are)."""
    return (space.unit(a) * space.unit(b)).sum(1)


def load_embedding(factory: str, state: dict[str, torch.Tensor], device) -> Embedding:
    """A registered embedding: ``factory`` ('package.module:function') called with its weights and the device."""
    module, _, name = factory.partition(":")
    try:
        build: Callable = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"embedding factory {factory!r} cannot be imported on this worker: {err}") from None
    return build(state, device)
