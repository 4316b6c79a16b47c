"""How many pairs one optimisation can hold on a device: an estimate from VGG's activation sizes."""

from __future__ import annotations

from core.config import MAX_DEVICE_BATCH

# VGG's conv outputs up to relu5_1 as channels per input pixel: (convs, channels, stride) per block.
_VGG_BLOCKS = {"vgg19": ((2, 64, 1), (2, 128, 2), (4, 256, 4), (4, 512, 8), (1, 512, 16)),
               "vgg16": ((2, 64, 1), (2, 128, 2), (3, 256, 4), (3, 512, 8), (1, 512, 16))}  # fmt: skip


def device_batch_for(free_bytes: int, height: int, width: int, vgg: str = "vgg19", history: int = 10,
                     cap: int = MAX_DEVICE_BATCH) -> int:  # fmt: skip
    """Pairs per optimisation that fit in ``free_bytes``: an estimate, with CUDA OOM halving as the net.

    Per pair: every conv output up to relu5_1 kept for the backward pass, its ReLU output and its gradient
    (3 fp32 copies; bf16 autocast needs less), plus L-BFGS' 2 x ``history`` vectors and ~6 image-sized
    buffers. 70 % of the free memory is planned for: the allocator's fragmentation and the Grams need slack.
    """
    per_pixel = sum(n * c / (s * s) for n, c, s in _VGG_BLOCKS[vgg])
    activations = 3 * 4 * per_pixel * height * width
    optimiser = (2 * history + 6) * 4 * 3 * height * width
    return max(1, min(cap, int(0.7 * free_bytes // (activations + optimiser))))
