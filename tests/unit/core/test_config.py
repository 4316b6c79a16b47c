"""TrainConfig: its schedule of phases (what the trainer runs) and its JSON round trip (what rows hold)."""

import json

import pytest

from core.config import TrainConfig
from core.errors import ConfigError


def config(**kw) -> TrainConfig:
    return TrainConfig(**{"arch": "resnet18", "num_classes": 3, **kw})


def test_one_phase_unless_staged():
    assert config(mode="fine-tune", epochs=7, lr=1e-3).phases() == [("main", "fine-tune", 7, 1e-3)]
    assert config(mode="feature-extract", epochs=2).phases() == [("main", "feature-extract", 2, 1e-4)]
    assert config(epochs=7).total_epochs == 7


def test_staged_phases():
    staged = config(mode="staged", epochs=10, head_epochs=40, finetune_epochs=30, lr=1e-4)
    assert staged.phases() == [
        ("main", "fine-tune", 10, 1e-4),
        ("head", "feature-extract", 40, 1e-4),
        ("finetune", "fine-tune", 30, pytest.approx(1e-7)),  # lr x the default finetune_lr_scale 1e-3
    ]
    assert staged.total_epochs == 80
    # Empty phases are left out; the fine-tune lr follows the scale.
    short = config(mode="staged", epochs=5, finetune_epochs=2, lr=1e-3, finetune_lr_scale=0.1)
    assert [(p[0], p[3]) for p in short.phases()] == [("main", 1e-3), ("finetune", pytest.approx(1e-4))]
    assert [p[0] for p in config(mode="staged", head_epochs=1).phases()] == ["main", "head"]


@pytest.mark.parametrize(
    "fields,match",
    [
        ({"mode": "staged"}, "needs --head-epochs"),
        ({"epochs": 0}, "--epochs must be at least 1"),
        ({"mode": "staged", "head_epochs": -1, "finetune_epochs": 1}, "--head-epochs must be at least 0"),
        ({"finetune_epochs": -2}, "--finetune-epochs must be at least 0"),
        ({"finetune_lr_scale": 0.0}, "--finetune-lr-scale"),
        ({"finetune_lr_scale": 2.0}, "--finetune-lr-scale"),
        ({"lr": float("nan")}, "--lr"),
    ],
)
def test_a_schedule_that_cannot_run_is_refused(fields, match):
    with pytest.raises(ConfigError, match=match):
        config(**fields)


def test_from_json_round_trips():
    cfg = config(dense=(384, 128), mode="staged", head_epochs=2, weights="imagenet", views=4, features_seed=3)
    stored = json.loads(json.dumps(cfg.to_json()))  # what a JSON column gives back: dense is a list
    assert isinstance(stored["dense"], list)
    assert TrainConfig.from_json(stored) == cfg
    assert TrainConfig.from_json(config().to_json()).dense == ()


def test_from_json_reads_older_rows_and_refuses_strangers():
    old = config().to_json()
    del old["views"], old["features_seed"]  # rows from before feature views were recorded
    assert (TrainConfig.from_json(old).views, TrainConfig.from_json(old).features_seed) == (1, 0)
    with pytest.raises(ConfigError, match="unknown training config field.*colour"):
        TrainConfig.from_json({**config().to_json(), "colour": "red"})
    with pytest.raises(ConfigError, match="bad training config"):
        TrainConfig.from_json({"arch": "resnet18"})
    with pytest.raises(ConfigError, match="must be an object"):
        TrainConfig.from_json(["resnet18"])
    with pytest.raises(ConfigError, match="views"):
        TrainConfig.from_json({**config().to_json(), "views": 0})
