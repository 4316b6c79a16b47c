"""Figures that cannot lie: the fraction of a peak on synthetic numbers, its refusal above 1, and where the peak
comes from (no timing is asserted: only that a measured rate is positive and named)."""

import pytest
import torch

from bench import peak


def test_the_fraction_is_the_work_rate_over_the_peak():
    ceiling = peak.Peak(1e12, "synthetic")
    assert peak.fraction(2e11, 0.5, ceiling) == pytest.approx(0.4)  # 4e11 FLOP/s of a 1e12 peak
    assert peak.fraction(1e12, 1.0, ceiling) == 1.0  # exactly at the peak is still a figure
    assert peak.fraction(0.0, 1.0, ceiling) == 0.0


def test_a_fraction_above_one_is_refused_naming_the_peak():
    with pytest.raises(peak.PeakExceeded, match=r"2\.65 of the peak 0\.0008 TFLOP/s \(measured: tiny\).*--peak-tflops"):
        peak.fraction(2.65 * 0.0008e12, 1.0, peak.Peak(0.0008e12, "measured: tiny"))


@pytest.mark.parametrize(("flops", "seconds", "rate"), [(-1.0, 1.0, 1e12), (1.0, 0.0, 1e12), (1.0, 1.0, 0.0)])
def test_a_fraction_of_nonsense_is_a_one_line_error(flops, seconds, rate):
    with pytest.raises(ValueError, match="a fraction needs"):
        peak.fraction(flops, seconds, peak.Peak(rate, "synthetic"))


@pytest.mark.parametrize(
    ("name", "tflops", "named"),
    [
        ("NVIDIA H100 80GB HBM3", 989.0, "H100 bf16 dense 989 TFLOPS"),
        ("NVIDIA H100 PCIe", 756.0, "H100 PCIe"),
        ("NVIDIA H200", 989.0, "H200"),
    ],
)
def test_a_known_gpu_takes_its_data_sheet_figure_named(name, tflops, named):
    sheet = peak.datasheet(name)
    assert sheet.flops == tflops * 1e12 and named in sheet.source and sheet.source.startswith("data sheet")


def test_an_unknown_device_has_no_data_sheet_figure():
    assert peak.datasheet("cpu (2 threads)") is None and peak.datasheet("NVIDIA A10") is None


def test_the_best_rate_is_the_best_repetition_of_calls_times_their_flops():
    calls = []
    rate = peak.best_rate(lambda: calls.append(1), 1e6, lambda: None, seconds=0.0, reps=3)
    assert len(calls) == 1 + 3 and rate > 0  # a warm-up call, then one call per repetition at 0 s


def test_a_measured_peak_names_its_work_and_dtype():
    measured = peak.measured(torch.device("cpu"), (torch.float32,), seconds=0.0, reps=1)
    assert measured.flops > 0 and "float32" in measured.source and "measured" in str(measured)
