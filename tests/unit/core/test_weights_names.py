"""What a run's backbone started from, for rows written before and after the weights registry."""

from core.weights import RANDOM, started_from


def test_the_recorded_name_wins_then_the_config_then_random_init():
    assert started_from("imagenet", {"weights": "other"}) == "imagenet"
    assert started_from(None, {"weights": "imagenet"}) == "imagenet"  # a run older than the registry
    assert started_from(None, {}) == started_from(None, None) == RANDOM
