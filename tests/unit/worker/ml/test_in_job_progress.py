"""Progress and cancel inside a long step of work: training batches, style optimiser evaluations,
and the device batch a style job picks from free memory."""

from __future__ import annotations

import pytest
import torch

from core.config import StyleConfig
from tests.unit.worker.ml.test_train import config, toy_split
from worker.ml.style import build_vgg, device_batch_for, stylize_batch
from worker.ml.train import fit


class Stop(Exception):
    pass


def test_every_training_step_is_reported_in_order_and_a_raise_stops_mid_epoch():
    seen = []
    fit(config(epochs=2), toy_split(32, 0), toy_split(8, 1), device=torch.device("cpu"),
        on_batch=lambda epoch, done, total: seen.append((epoch, done, total)))  # fmt: skip
    assert seen == [(e, d, 32) for e in (1, 2) for d in (8, 16, 24, 32)]

    def cancel_at_second_batch(epoch, done, total):
        if done == 16:
            raise Stop

    epochs = []
    with pytest.raises(Stop):
        fit(config(epochs=2), toy_split(32, 0), toy_split(8, 1), lambda r, t: epochs.append(r.epoch),
            device=torch.device("cpu"), on_batch=cancel_at_second_batch)  # fmt: skip
    assert epochs == []  # stopped inside the first epoch, not at its end


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_every_objective_evaluation_is_reported(optimizer):
    torch.manual_seed(0)
    vgg = build_vgg("vgg19")
    content, style = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    calls = []
    result = stylize_batch(content, style, StyleConfig(optimizer=optimizer, steps=3), vgg, on_eval=calls.append)
    assert calls == list(range(1, result.evaluations + 1))
    with pytest.raises(Stop):
        stylize_batch(content, style, StyleConfig(optimizer=optimizer, steps=3), vgg,
                      on_eval=lambda n: (_ for _ in ()).throw(Stop()))  # fmt: skip


def test_device_batch_grows_with_free_memory_and_shrinks_with_size():
    gib = 1 << 30
    at_256 = device_batch_for(40 * gib, 256, 256)
    assert 1 < at_256 < device_batch_for(80 * gib, 256, 256)
    assert device_batch_for(40 * gib, 512, 512) < at_256
    assert device_batch_for(1, 256, 256) == 1  # never zero: the OOM retry halves from there
    assert device_batch_for(10**15, 32, 32) == 256  # capped
    assert device_batch_for(40 * gib, 256, 256, "vgg16") > at_256  # fewer conv layers, more pairs
