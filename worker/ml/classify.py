"""A trained classifier answering for pictures exactly as its run was evaluated.

A run's test predictions come from ``worker.ml.train.predict`` on the uint8
cache (``square_crop`` at the run's image size, its eval normalisation, bf16
autocast on CUDA). A grid cell trained on cached features was evaluated on
``worker.ml.features.extract``'s plain view of the frozen backbone, stored in
bf16, then its head. Whatever is classified later (stylized works, their
controls) goes through the same functions, so a difference in answers is the
picture's, not the pipeline's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from core.config import TrainConfig
from corpus.imageio import square_crop
from worker.ml.features import extract, plain_view
from worker.ml.train import Split, predict


@dataclass
class Classifier:
    model: torch.nn.Module  # a full classifier, or a grid cell's head
    cfg: TrainConfig  # the run's configuration: image size, normalisation, batch size
    classes: list[str]
    device: torch.device
    backbone: torch.nn.Module | None = None  # a grid cell: the frozen backbone its features job ran
    sha256: str | None = None  # of the checkpoint file it was loaded from

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, S, S) at the run's image size -> fp32 logits (N, K) on the CPU."""
        dummy = torch.zeros(images.shape[0], dtype=torch.long)
        if self.backbone is None:
            return predict(self.model, Split(images, dummy), self.cfg, self.device)
        feats = extract(self.backbone, images, self.cfg.image_size, "none", 1, self.device)  # (N, 1, C, H, W) bf16
        return predict(self.model, Split(feats, dummy), self.cfg, self.device, transform=plain_view)

    def inputs(self, pictures: list[Image.Image]) -> torch.Tensor:
        """8-bit pictures (at least one) -> uint8 (N, 3, S, S): the cache's crop at the run's image size."""
        size = self.cfg.image_size
        return torch.stack([torch.from_numpy(square_crop(im, size)).permute(2, 0, 1) for im in pictures])

    def probabilities(self, pictures: list[Image.Image]) -> torch.Tensor:
        """8-bit pictures (at least one) -> fp32 softmax probabilities (N, K), columns in ``classes`` order."""
        return self.logits(self.inputs(pictures)).softmax(1)

    def __call__(self, pictures: list[Image.Image]) -> list[list]:
        """8-bit pictures -> [[label, p], ...] top-3 per picture, best first."""
        return top3(self.probabilities(pictures), self.classes) if pictures else []


def top3(probs: torch.Tensor, classes: list[str]) -> list[list]:
    """(N, K) probabilities -> [[label, p], ...] the three most probable per row, best first."""
    p, i = probs.topk(min(3, probs.shape[1]), dim=1)
    return [[[classes[k], round(v, 6)] for k, v in zip(ki, pi)] for ki, pi in zip(i.tolist(), p.tolist())]
