"""A t-SNE map of bottleneck features (seed 002: "bottleneck features visualization, created by
tsne"), and new points placed into the same map.

openTSNE rather than scikit-learn's TSNE: it can ``transform`` points that were not fitted, so
stylized works land in the map of the real test images they came from instead of reshaping it.
Exact nearest neighbours make the map a function of (features, seed) alone: the approximate
index is faster on tens of thousands of points but draws its own random projections.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class FeatureMap:
    """The fitted 2-D map (``points``: (N, 2)) and what it needs to place new features."""

    points: np.ndarray
    embedding: object  # openTSNE.TSNEEmbedding

    def place(self, features: torch.Tensor | np.ndarray) -> np.ndarray:
        """(M, D) features of new images -> (M, 2) positions in this map; the fitted points do not move."""
        if len(features) == 0:
            return np.zeros((0, 2))
        # openTSNE's transform translates the fitted embedding in place (it re-centres it, a pure shift):
        # undo the shift on both, so maps drawn before and after agree and new points sit in that frame.
        fitted = np.array(self.embedding, copy=True)
        placed = np.asarray(self.embedding.transform(_as_array(features)))
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

    Perplexity is capped below N / 3 (openTSNE refuses a perplexity the neighbourhoods cannot hold),
    so a tiny test split still gets a map.
    """
    import openTSNE  # imported when a map is drawn: it brings scikit-learn and numba-free C code with it

    x = _as_array(features)
    if len(x) < 4:
        raise ValueError(f"a t-SNE map needs at least 4 points, got {len(x)}")
    tsne = openTSNE.TSNE(
        n_components=2,
        perplexity=min(perplexity, (len(x) - 1) / 3),
        neighbors="exact",
        random_state=seed,
        n_jobs=1,
        verbose=False,
    )
    embedding = tsne.fit(x)
    return FeatureMap(np.array(embedding, copy=True), embedding)
