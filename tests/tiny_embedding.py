"""A tiny random network registered as an attributor through ``worker.ml.attributors.Embedding`` (issue 31):
pictures in, one vector each out. No real embedding's weights exist offline here; this stands in for one."""

from __future__ import annotations

import numpy as np
import torch

SIZE = 16  # the square crop the network sees


def weights(seed: int = 0) -> dict[str, torch.Tensor]:
    """The network's state: one 3x3 conv (3 -> 8 channels) and a linear map to 6 dimensions."""
    g = torch.Generator().manual_seed(seed)
    return {
        "conv.weight": torch.randn(8, 3, 3, 3, generator=g),
        "conv.bias": torch.randn(8, generator=g),
        "proj.weight": torch.randn(6, 8, generator=g),
    }


class TinyEmbedding(torch.nn.Module):
    def __init__(self, state: dict[str, torch.Tensor], device):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.proj = torch.nn.Linear(8, 6, bias=False)
        self.load_state_dict(state)
        self.device = device
        self.to(device).eval()

    @torch.no_grad()
    def forward(self, pictures) -> torch.Tensor:
        x = torch.stack(
            [
                torch.from_numpy(np.asarray(p.resize((SIZE, SIZE)), dtype=np.float32) / 255).permute(2, 0, 1)
                for p in pictures
            ]
        ).to(self.device)
        return self.proj(torch.relu(self.conv(x)).mean((2, 3))).cpu()


def build(state: dict[str, torch.Tensor], device) -> TinyEmbedding:
    """The factory `atelier attribute --embedding NAME --factory tests.tiny_embedding:build --weights FILE` names."""
    return TinyEmbedding(state, device)
