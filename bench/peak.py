"""The ceiling a "fraction of the compute floor" is taken against, and the fraction, which can never exceed 1.

A fraction of a peak is a figure only when the peak is one: the device's data-sheet rate for the run's
precision, named, or a measurement of large dense work (a big matmul and a big VGG-shaped convolution, best of
a few repetitions, each several seconds' worth on a CPU). A peak measured on work too small to be a peak (a 1024^2
matmul timed once on a busy CPU: 0.0008 TFLOP/s in bench/results/cpu-stylize-bf16-16-300.json) gave fractions
of 2.65 to 6.95; ``fraction`` refuses anything above 1, so such a peak stops the run instead of printing a figure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Dense (no sparsity) bf16 tensor-core TFLOP/s from NVIDIA's data sheets, matched in this order against
# torch.cuda.get_device_name(): the H100 PCIe and NVL parts are slower than the SXM part the plain name is; the
# H200 is the H100 SXM's chip with more memory.
DATASHEET_BF16_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),
    ("H200", 989.0),
)


class PeakExceeded(ValueError):
    """A fraction of the peak above 1: the peak was no ceiling for the work it is compared with."""


@dataclass(frozen=True)
class Peak:
    flops: float  # FLOP/s
    source: str  # where it comes from, printed beside every fraction

    def __str__(self) -> str:
        return f"{self.flops / 1e12:.4g} TFLOP/s ({self.source})"


def datasheet(device_name: str) -> Peak | None:
    """The data sheet's dense bf16 peak of a known device, or None."""
    for fragment, tflops in DATASHEET_BF16_TFLOPS:
        if fragment.lower() in device_name.lower():
            return Peak(tflops * 1e12, f"data sheet: {fragment} bf16 dense {tflops:g} TFLOPS")
    return None


def fraction(flops: float, seconds: float, peak: Peak) -> float:
    """The share of ``peak`` that ``flops`` of work done in ``seconds`` achieved; PeakExceeded above 1."""
    if not (flops >= 0 and seconds > 0 and peak.flops > 0):
        raise ValueError(
            f"a fraction needs flops >= 0, seconds > 0 and a positive peak, got {flops}, {seconds}, {peak}"
        )
    share = flops / seconds / peak.flops
    if share > 1:
        raise PeakExceeded(
            f"{share:.3g} of the peak {peak}: the peak is no ceiling for this work; "
            "give the device's data-sheet figure with --peak-tflops"
        )
    return share


def best_rate(work: Callable[[], object], flops: float, sync: Callable[[], None], seconds: float, reps: int) -> float:
    """FLOP/s of ``work`` (``flops`` per call): the best of ``reps`` repetitions, each calling it for at least
    ``seconds`` after a warm-up call. The best, not the mean: a busy machine only ever slows a repetition down."""
    work()
    sync()
    best = 0.0
    for _ in range(reps):
        calls, t0 = 0, time.perf_counter()
        while True:
            work()
            calls += 1
            sync()
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds:
                break
        best = max(best, flops * calls / elapsed)
    return best


def dense_works(device: torch.device, dtype: torch.dtype) -> dict[str, tuple[Callable[[], object], float]]:
    """Large dense work in ``dtype``: name -> (one call, its FLOPs): a square matmul and a 3x3 convolution of
    VGG19's conv3 shape (256 -> 256 channels), sized so that one call is milliseconds on a GPU and tenths of a
    second on a CPU core."""
    cuda = device.type == "cuda"
    n = 8192 if cuda else 2048
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    batch, side, ch = (64, 64, 256) if cuda else (4, 32, 256)
    x = torch.randn(batch, ch, side, side, device=device, dtype=dtype)
    w = torch.randn(ch, ch, 3, 3, device=device, dtype=dtype)
    conv_flops = 2.0 * batch * ch * ch * 9 * side * side
    return {
        f"{n}^2 matmul": (lambda: a @ b, 2.0 * n**3),
        f"3x3 conv {ch}ch {side}px x{batch}": (lambda: F.conv2d(x, w, padding=1), conv_flops),
    }


def measured(device: torch.device, dtypes: tuple[torch.dtype, ...], seconds: float = 2.0, reps: int = 3) -> Peak:
    """The best rate of large dense work over ``dtypes`` (the run's precision, and fp32 where a CPU may compute
    its bf16 convolutions in fp32), named with the work and dtype that reached it."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    best = Peak(0.0, "none measured")
    with torch.no_grad():
        for dtype in dtypes:
            for name, (work, flops) in dense_works(device, dtype).items():
                rate = best_rate(work, flops, sync, seconds, reps)
                if rate > best.flops:
                    kind = str(dtype).removeprefix("torch.")
                    best = Peak(rate, f"measured: {name} {kind}, best of {reps} x {seconds:g} s")
    return best
