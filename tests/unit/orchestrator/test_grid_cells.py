"""What a grid cell records and trains: feature views in its config, and the ranking by the sweep's metric."""

from types import SimpleNamespace

import pytest

from core.config import TrainConfig, check_feature_views
from core.errors import ConfigError
from db.jobs import params_hash
from orchestrator.commands.grid import FEATURES_SEED, cell_config, check_views
from worker.followups import rank_cells

VALUES = {
    "epochs": 1,
    "batch_size": 8,
    "lr": 1e-3,
    "head": "gap",
    "dense1": None,
    "dense2": None,
    "dropout": 0.5,
    "optimizer": "adam",
    "weight_decay": 0.0,
    "augment": "keras",
    "seed": 0,
}


def cell(mode="feature-extract", views=4, **values) -> TrainConfig:
    return cell_config("resnet18", 3, 32, mode, "macro_f1", None, {**VALUES, **values}, views)


@pytest.mark.parametrize("augment,views", [("keras", 1), ("crop-flip", 1), ("rotate-zoom-flip", 0)])
def test_augmented_features_with_one_view_are_refused(augment, views):
    with pytest.raises(ConfigError, match=r"needs --views >= 2") as err:
        check_feature_views(augment, views)
    assert "\n" not in str(err.value) and augment in str(err.value)


def test_check_views_per_mode():
    check_feature_views("none", 1)
    check_views("feature-extract", ["none", "keras"], 2)
    check_views("fine-tune", ["keras"], 1)  # augmented on the fly: no views needed
    with pytest.raises(ConfigError, match="needs --views"):
        check_views("feature-extract", ["none", "keras"], 1)
    with pytest.raises(ConfigError, match="feature-extract only"):
        check_views("fine-tune", ["keras"], 4)


def test_views_and_features_seed_are_in_the_config_and_its_hash():
    cfg = cell().to_json()
    assert (cfg["views"], cfg["features_seed"]) == (4, FEATURES_SEED)
    assert cell(augment="none").views == 1  # the features job stores only the plain view then
    assert cell(mode="fine-tune", views=1).views == 1
    hashes = {params_hash("train", {"config": cell(views=v).to_json()}) for v in (2, 4)}
    assert len(hashes) == 2  # a cell is never reused for one that saw another number of views
    assert TrainConfig.from_json(cfg).views == 4
    with pytest.raises(ConfigError, match="views"):
        TrainConfig.from_json({**cfg, "views": 0})


def test_rank_cells_follows_the_metric():
    def pair(i, top1, top2, f1):
        return SimpleNamespace(cell_index=i), SimpleNamespace(
            best_val_top1=top1, best_val_top2=top2, best_val_macro_f1=f1
        )

    cells = [pair(0, 0.9, 0.9, 0.2), pair(1, 0.5, 1.0, 0.8), pair(2, 0.9, 0.95, None), pair(3, None, None, None)]
    order = {m: [c.cell_index for c, _ in rank_cells(cells, m)] for m in ("macro_f1", "top1", "top2")}
    assert order == {"macro_f1": [1, 0], "top1": [0, 2, 1], "top2": [1, 2, 0]}
