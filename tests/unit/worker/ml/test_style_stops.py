"""Stopping on the record: every optimiser reports, per pair, the iterations it ran and why it stopped."""

import pytest
import torch

from core.config import StyleConfig
from worker.ml.style import STOP_REASONS, adam, batched_lbfgs, build_vgg, lbfgs_one_pass, stylize_batch
from worker.ml.style.optimisers import GAVE_UP, NOT_FINITE, STEPS_DONE

STEPS = 6


def _quadratic_and_stuck(stuck_loss: float):
    """Row 0: an ill-conditioned 8-D quadratic, float64, far from its minimum after STEPS iterations (so it has
    no reason to stop); row 1: a loss of ``stuck_loss`` whatever x, with a gradient that promises a decrease it
    never shows (1.0: every line search fails; NaN: every trial's loss is not finite)."""
    gen = torch.Generator().manual_seed(0)
    scales = torch.logspace(0, 3, 8, dtype=torch.float64)  # curvatures 1 .. 1000
    centre = torch.rand(8, generator=gen).double() * 0.8 + 0.1

    def objective(x):
        r = x[0] - centre
        f = torch.stack([0.5 * (scales * r * r).sum(), torch.tensor(stuck_loss, dtype=torch.float64)])
        return f, torch.stack([scales * r, torch.ones(8, dtype=torch.float64)])

    return objective, torch.full((2, 8), 0.5, dtype=torch.float64)


@pytest.mark.parametrize(
    ("run", "stuck_loss", "stuck_steps", "reason"),
    [
        # batched_lbfgs backtracks the stuck pair max_backtracks times inside its first iteration, then gives up
        (lambda x, f: batched_lbfgs(x, f, STEPS, max_backtracks=4), 1.0, 1, GAVE_UP),
        # the one-pass loop spreads those backtracks over iterations: the 4th failed trial ends the pair
        (lambda x, f: lbfgs_one_pass(x, f, STEPS, max_backtracks=4), 1.0, 4, GAVE_UP),
        # no line search: only a loss that is not finite at every trial stops a pair
        (lambda x, f: lbfgs_one_pass(x, f, STEPS, max_backtracks=4, guard=False), float("nan"), 4, NOT_FINITE),
    ],
    ids=["lbfgs", "lbfgs-onepass", "lbfgs-unit"],
)
def test_a_pair_that_stops_early_is_on_the_record_beside_one_that_ran_its_steps(run, stuck_loss, stuck_steps, reason):
    objective, x0 = _quadratic_and_stuck(stuck_loss)
    _, trace, _, stops = run(x0, objective)
    assert stops.steps_done.tolist() == [STEPS, stuck_steps]
    assert stops.reasons() == [STEPS_DONE, reason]
    assert trace[-1, 0] < 0.5 * trace[0, 0]  # the quadratic was still being optimised: it ran, it did not stop


def test_with_the_guard_a_pair_stopped_after_the_loop_looked_still_records_its_own_step():
    """The one-pass loop looks whether every pair is done only every ``check_every`` iterations; a pair's record
    is the iteration it stopped at, not the loop's."""

    def stuck(x):  # one pair whose loss never shows the decrease its gradient promises
        return torch.ones(1), torch.ones_like(x)

    _, _, calls, stops = lbfgs_one_pass(torch.full((1, 4), 0.5), stuck, 20, max_backtracks=3, check_every=10)
    assert calls == 10 + 1 and stops.steps_done.tolist() == [3] and stops.reasons() == [GAVE_UP]


def test_adam_runs_every_step_of_every_pair():
    objective, x0 = _quadratic_and_stuck(1.0)
    _, _, _, stops = adam(x0, objective, STEPS, lr=0.01)
    assert stops.steps_done.tolist() == [STEPS, STEPS] and stops.reasons() == [STEPS_DONE, STEPS_DONE]


@pytest.mark.parametrize("optimizer", ["lbfgs", "lbfgs-onepass", "lbfgs-unit", "adam"])
def test_stylize_batch_returns_every_pairs_record(optimizer):
    torch.manual_seed(0)
    vgg = build_vgg("vgg19")
    g = torch.Generator().manual_seed(1)
    content, style = torch.rand(2, 3, 16, 16, generator=g), torch.rand(2, 3, 16, 16, generator=g)
    cfg = StyleConfig(optimizer=optimizer, steps=3, init="noise")
    r = stylize_batch(content, style, cfg, vgg, pair_seeds=[0, 1])
    assert r.steps_done.dtype == torch.int64 and r.steps_done.shape == (2,)
    assert ((r.steps_done >= 1) & (r.steps_done <= cfg.steps)).all()
    assert len(r.stop_reason) == 2 and set(r.stop_reason) <= set(STOP_REASONS)
    assert all(n == cfg.steps for n, why in zip(r.steps_done.tolist(), r.stop_reason) if why == STEPS_DONE)
