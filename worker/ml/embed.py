"""A t-SNE map of bottleneck features (seed 002: "bottleneck features visualization, created by
tsne"), and new points placed into the same map.

openTSNE rather than scikit-learn's TSNE: it can ``transform`` points that were not fitted, so
stylized works land in the map of the real test images they came from instead of reshaping it.
Exact nearest neighbours make the map a function of (features, seed) alone: the approximate
index is faster on tens of thousands of points but draws its own random projections.

Perplexity is capped at (N - 1) / 3 (``effective_perplexity``): openTSNE takes 3 x perplexity nearest
neighbours per point and cannot take more than the N - 1 others. Capping here, rather than letting
openTSNE lower it with a printed warning, makes the value that drew the map known, so it is recorded.
Fewer than ``MIN_TSNE_POINTS`` points cannot be embedded at all; ``fit_map`` then falls back to their
first two principal axes (``LinearMap``), which place new points the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

MIN_TSNE_POINTS = 4  # below this openTSNE has no neighbourhood to fit
PLACE_PERPLEXITY = 5.0  # openTSNE's default for placing new points, capped like the fit's


def effective_perplexity(asked: float, n: int) -> float:
    """The perplexity a t-SNE of ``n`` points is drawn with: ``asked``, capped at (n - 1) / 3."""
    return float(min(asked, (n - 1) / 3))


@dataclass
class FeatureMap:
    """The fitted 2-D map (``points``: (N, 2)) and what it needs to place new features."""

    points: np.ndarray
    embedding: object  # openTSNE.TSNEEmbedding
    perplexity: float | None = None  # what the map was drawn with (``effective_perplexity``)
    method = "t-SNE"

    def place(self, features: torch.Tensor | np.ndarray) -> np.ndarray:
        """(M, D) features of new images -> (M, 2) positions in this map; the fitted points do not move."""
        if len(features) == 0:
            return np.zeros((0, 2))
        # openTSNE's transform translates the fitted embedding in place (it re-centres it, a pure shift):
        # undo the shift on both, so maps drawn before and after agree and new points sit in that frame.
        fitted = np.array(self.embedding, copy=True)
        perplexity = effective_perplexity(PLACE_PERPLEXITY, len(fitted))
        placed = np.asarray(self.embedding.transform(_as_array(features), perplexity=perplexity))
        shift = (np.asarray(self.embedding) - fitted).mean(0)
        self.embedding[:] = fitted
        return placed - shift


def _as_array(features: torch.Tensor | np.ndarray) -> np.ndarray:
    x = features.detach().cpu().float().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    if x.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {x.shape}")
    return x.astype(np.float32, copy=False)


def tsne_map(features: torch.Tensor | np.ndarray, seed: int = 0, perplexity: float = 30.0) -> FeatureMap:
    """A 2-D t-SNE of (N, D) features; the same features and seed give the same map.

    Perplexity is capped at (N - 1) / 3 (``effective_perplexity``), so a tiny test split still gets a map.
    """
    import openTSNE  # imported when a map is drawn: it brings scikit-learn and numba-free C code with it

    x = _as_array(features)
    if len(x) < MIN_TSNE_POINTS:
        raise ValueError(f"a t-SNE map needs at least {MIN_TSNE_POINTS} points, got {len(x)}")
    used = effective_perplexity(perplexity, len(x))
    tsne = openTSNE.TSNE(
        n_components=2,
        perplexity=used,
        neighbors="exact",
        random_state=seed,
        n_jobs=1,
        verbose=False,
    )
    embedding = tsne.fit(x)
    return FeatureMap(np.array(embedding, copy=True), embedding, used)


@dataclass
class LinearMap:
    """Points too few for t-SNE on their first two principal axes; new points projected onto the same axes."""

    points: np.ndarray
    mean: np.ndarray  # (D,)
    axes: np.ndarray  # (2, D)
    perplexity: float | None = None
    method = "PCA"

    def place(self, features: torch.Tensor | np.ndarray) -> np.ndarray:
        if len(features) == 0:
            return np.zeros((0, 2))
        return (_as_array(features).astype(np.float64) - self.mean) @ self.axes.T


def pca_map(features: torch.Tensor | np.ndarray) -> LinearMap:
    """The first two principal axes of (N >= 1, D) features, each signed so its largest component is positive
    (an SVD's signs are arbitrary); missing axes (N or D below 3) stay zero."""
    x = _as_array(features).astype(np.float64)
    if len(x) == 0:
        raise ValueError("a map needs at least one point")
    mean = x.mean(0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    axes = np.zeros((2, x.shape[1]))
    axes[: min(2, len(vt))] = vt[:2]
    signs = np.sign(axes[np.arange(2), np.abs(axes).argmax(1)])
    axes *= np.where(signs == 0, 1.0, signs)[:, None]
    return LinearMap((x - mean) @ axes.T, mean, axes)


def fit_map(features: torch.Tensor | np.ndarray, seed: int = 0, perplexity: float = 30.0) -> FeatureMap | LinearMap:
    """``tsne_map``, or ``pca_map`` when there are fewer than ``MIN_TSNE_POINTS`` points."""
    if len(features) < MIN_TSNE_POINTS:
        return pca_map(features)
    return tsne_map(features, seed, perplexity)
