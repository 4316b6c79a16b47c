"""torch.compile on request: which devices, in place (state dicts unchanged), and eager when it fails."""

from __future__ import annotations

import pytest
import torch

from worker.ml.compiled import compile_in_place, wanted


def test_auto_compiles_on_cuda_only():
    assert wanted("auto", torch.device("cuda")) and not wanted("auto", torch.device("cpu"))
    assert wanted("on", torch.device("cpu")) and not wanted("off", torch.device("cuda"))
    with pytest.raises(ValueError):
        wanted("sometimes", torch.device("cpu"))


def test_compiled_in_place_gives_the_same_outputs_and_state_dict_keys():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    x = torch.randn(5, 4)
    before, keys = net(x), list(net.state_dict())
    assert not compile_in_place(net, "auto", "cpu")  # auto on a CPU: left eager
    assert compile_in_place(net, "on", "cpu", backend="eager")
    assert torch.equal(net(x), before) and list(net.state_dict()) == keys
    assert not compile_in_place(net, "on", "cpu", backend="eager")  # once per module


def test_a_backend_that_fails_runs_eager():
    def broken(gm, example_inputs):
        raise RuntimeError("this backend cannot compile anything")

    net = torch.nn.Linear(3, 2)
    x = torch.randn(2, 3)
    expected = net(x)
    assert compile_in_place(net, "on", "cpu", backend=broken)
    assert torch.equal(net(x), expected)
