"""The training loop on tiny tensors: phases, early stopping, exact resume."""

import pytest
import torch

from core.config import TrainConfig
from core.errors import ConfigError
from worker.ml.checkpoint import SavedState, save_state
from worker.ml.train import Split, fit


def toy_split(n: int, seed: int) -> Split:
    """Two classes told apart by brightness: learnable in a couple of epochs."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    base = torch.where(labels[:, None, None, None] == 1, 180, 60)
    images = (base + torch.randint(-40, 40, (n, 3, 16, 16), generator=g)).clamp(0, 255).to(torch.uint8)
    return Split(images, labels)


def config(**kw) -> TrainConfig:
    base = dict(
        arch="baseline-cnn", num_classes=2, epochs=3, batch_size=8, lr=1e-3, image_size=16, augment="none", head="gap"
    )
    return TrainConfig(**{**base, **kw})


def test_learns_above_chance():
    _, result = fit(config(epochs=4), toy_split(32, 0), toy_split(16, 1), device=torch.device("cpu"))
    assert result.epochs_run == 4 and len(result.history) == 4
    assert result.best_val.top1 > 0.7


def test_staged_runs_every_phase_with_its_lr():
    cfg = config(mode="staged", epochs=1, head_epochs=1, finetune_epochs=2, finetune_lr_scale=1e-2)
    seen = []
    fit(
        cfg,
        toy_split(16, 0),
        toy_split(8, 1),
        lambda r, t: seen.append((r.epoch, r.stage, r.lr)),
        device=torch.device("cpu"),
    )
    assert [(e, s) for e, s, _ in seen] == [(1, "main"), (2, "head"), (3, "finetune"), (4, "finetune")]
    assert seen[2][2] == pytest.approx(1e-3 * 1e-2)


def test_staged_without_extra_phases_is_refused():
    with pytest.raises(ConfigError, match="staged"):
        config(mode="staged")


def test_early_stopping_ends_the_phase():
    cfg = config(epochs=20, early_stop_patience=1, lr=1e-9)  # a tiny LR: nothing improves after epoch 1
    _, result = fit(cfg, toy_split(16, 0), toy_split(8, 1), device=torch.device("cpu"))
    assert result.stopped_early and result.epochs_run < 20


def test_resume_continues_exactly(tmp_path):
    cfg = config(epochs=4, augment="crop-flip")
    train, val = toy_split(24, 0), toy_split(8, 1)
    cpu = torch.device("cpu")
    straight, _ = fit(cfg, train, val, device=cpu)

    class Interrupt(Exception):
        pass

    def stop_after_two(result, trainer):
        save_state(trainer, tmp_path / "last.safetensors", {})
        if result.epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(cfg, train, val, stop_after_two, device=cpu)
    epochs = []
    resumed, _ = fit(
        cfg,
        train,
        val,
        lambda r, t: epochs.append(r.epoch),
        device=cpu,
        resume=SavedState.load(tmp_path / "last.safetensors"),
    )
    assert epochs == [3, 4]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), name


DEVICES = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_resume_restores_the_streams_dropout_draws_from(tmp_path, device):
    """Dropout draws from torch's global stream (the device's on a GPU), not the trainer's generator:
    epoch 3 after a resume matches epoch 3 of an uninterrupted run, even if the process drew in between."""
    cfg = config(epochs=3, dense=(16,), dropout=0.5, augment="crop-flip")
    train, val = toy_split(24, 0), toy_split(8, 1)
    straight = []
    fit(cfg, train, val, lambda r, t: straight.append(r), device=device)

    def stop_after_two(result, trainer):
        if result.epoch == 2:
            save_state(trainer, tmp_path / "last.safetensors", {})
            raise Crash

    class Crash(Exception):
        pass

    with pytest.raises(Crash):
        fit(cfg, train, val, stop_after_two, device=device)
    state = SavedState.load(tmp_path / "last.safetensors")
    assert state.tensors["rng.cpu"].dtype == torch.uint8
    assert ("rng.cuda" in state.tensors) == (device.type == "cuda")

    def resume(saved):
        torch.manual_seed(1234)  # another job ran in this process meanwhile
        if device.type == "cuda":
            torch.cuda.manual_seed(1234)
        out = []
        fit(cfg, train, val, lambda r, t: out.append(r), device=device, resume=saved)
        return out

    (again,) = resume(state)
    expected = straight[2]
    exact = device.type == "cpu"  # one thread on the CPU is bitwise deterministic; cuDNN kernels need not be
    close = (lambda a, b: a == b) if exact else (lambda a, b: abs(a - b) < 1e-4)
    assert again.epoch == 3
    assert close(again.train_loss, expected.train_loss) and close(again.val_loss, expected.val_loss)
    assert close(again.train.macro_f1, expected.train.macro_f1) and close(again.val.top1, expected.val.top1)

    # The same resume without the saved global streams (a state written before they were) drifts:
    # the check above is what tells the two apart.
    legacy = SavedState({k: v for k, v in state.tensors.items() if k not in ("rng.cpu", "rng.cuda")}, state.metadata)
    (drifted,) = resume(legacy)
    assert abs(drifted.train_loss - expected.train_loss) > 1e-4
