"""The optimisers of the painted image: per-pair L-BFGS (with or without a line search per iteration) and Adam.

Each minimises B independent problems in the box [0, 1]^D at once: row b of the iterate only ever sees row b's
numbers, so a pair's result does not depend on its batch-mates (``torch.optim.LBFGS`` shares one history, step
length and line search across the whole tensor, hence these). Pixels are kept in [0, 1] by projection; L-BFGS
freezes, for a step, the pixels at a bound that its direction pushes further out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Objective = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]  # (B, D) -> loss (B,), grad (B, D)

# Why a pair stopped. None of the optimisers has a tolerance test: a pair runs its steps unless its line search
# finds no decrease even for a small steepest-descent step (one that moves no pixel by more than 0.1 / 2^9
# after the halvings), which is convergence to the arithmetic's rounding or a pair stuck there; the record says
# what happened, not which of the two it was. Without a line search (lbfgs-unit) a pair stops only when its loss
# was not finite at every trial.
STEPS_DONE = "steps done"
GAVE_UP = "line search gave up"
NOT_FINITE = "loss not finite"
STOP_REASONS = (STEPS_DONE, GAVE_UP, NOT_FINITE)


@dataclass
class Stops:
    """Per pair, on the record: the iterations it ran (the one in which it gave up included) and whether it
    stopped before its steps ran out, with the one reason its optimiser can stop a pair for."""

    steps_done: torch.Tensor  # (B,) int64; a pair that never stopped ran every step
    stopped: torch.Tensor  # (B,) bool
    reason: str  # why a stopped pair stopped (GAVE_UP or NOT_FINITE)

    def reasons(self) -> list[str]:
        """One of STOP_REASONS per pair."""
        return [self.reason if s else STEPS_DONE for s in self.stopped.tolist()]

    @classmethod
    def none_stopped(cls, b: int, steps: int) -> Stops:
        """Every pair of ``b`` ran its ``steps`` (Adam: nothing stops it)."""
        return cls(torch.full((b,), steps, dtype=torch.int64), torch.zeros(b, dtype=torch.bool), GAVE_UP)


def _frozen(x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Pixels at a bound of [0, 1] that ``d`` pushes further out: moving them is undone by the clamp."""
    return ((x <= 0) & (d < 0)) | ((x >= 1) & (d > 0))


def _two_loop(
    g: torch.Tensor, hist: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], gamma: torch.Tensor
) -> torch.Tensor:
    """L-BFGS two-loop recursion, every dot product per sample: H g, (B, D). An entry with rho 0 is skipped."""
    q = g.clone()
    alphas = []
    for s, y, rho in reversed(hist):
        a = rho * (s * q).sum(1)  # (B,)
        q -= a[:, None] * y
        alphas.append(a)
    q *= gamma[:, None]  # initial Hessian: gamma I, gamma = s'y / y'y of the newest usable pair
    for (s, y, rho), a in zip(hist, reversed(alphas)):
        beta = rho * (y * q).sum(1)
        q += (a - beta)[:, None] * s
    return q


@dataclass
class _PairMemory:
    """What L-BFGS remembers of each pair between iterations, vectorised over the batch."""

    history: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # newest last; each (s, y, rho), rho 0 = skip
    gamma: torch.Tensor  # (B,) initial inverse Hessian scale
    fresh: torch.Tensor  # (B,) no usable history: take a small steepest-descent step
    done: torch.Tensor  # (B,) converged: stays where it is

    @classmethod
    def empty(cls, f: torch.Tensor) -> _PairMemory:
        fresh = torch.ones_like(f, dtype=torch.bool)
        return cls([], torch.ones_like(f), fresh, torch.zeros_like(fresh))

    def update(self, s: torch.Tensor, y: torch.Tensor, failed: torch.Tensor, small: torch.Tensor, keep: int) -> None:
        """Remember the step ``s`` and gradient change ``y`` (B, D) of every pair; ``failed`` pairs (their line
        search found no decrease) forget their history, and are done if even a small step failed."""
        sy = (s * y).sum(1)
        # Keep the pair only with clearly positive curvature (keeps H positive definite); scale-free test,
        # since losses range from 1e-4 (random VGG) to 1e6 (ImageNet VGG, large beta).
        usable = sy > 1e-8 * s.norm(dim=1) * y.norm(dim=1)
        rho = torch.where(usable, 1.0 / torch.where(usable, sy, 1.0), 0.0)
        gamma = torch.where(usable, sy / torch.where(usable, (y * y).sum(1), 1.0), self.gamma)
        history = [(hs, hy, hr.masked_fill(failed, 0)) for hs, hy, hr in self.history]
        self.history = (history + [(s, y, rho)])[-keep:]
        self.gamma = gamma.masked_fill(failed, 1.0)
        self.done = self.done | (failed & small)
        self.fresh = (self.fresh & ~usable) | failed


def _search_direction(
    x: torch.Tensor, f: torch.Tensor, g: torch.Tensor, memory: _PairMemory
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each pair's projected descent direction (B, D), first trial step length (B,), and whether that is a small
    steepest-descent step (B,)."""
    d = -_two_loop(g, memory.history, memory.gamma)
    d = d.masked_fill(_frozen(x, d), 0)
    # Projection can spoil a quasi-Newton direction; fall back to the projected gradient for those pairs.
    uphill = (g * d).sum(1) >= 0
    steepest = (-g).masked_fill(_frozen(x, -g), 0)
    d = torch.where(uphill[:, None], steepest, d).masked_fill(memory.done[:, None], 0)
    small = memory.fresh | uphill
    # Unit steps once curvature is known. Before, a step that moves no pixel by more than 0.1: torch's
    # LBFGS takes 1/|g|_1, which moves each of D pixels by ~1/D, so its first curvature pair (s, y) is a
    # difference of two nearly equal gradients, all rounding noise (and then slower, and batch-sensitive).
    t = torch.where(small, 0.1 / g.abs().amax(1).clamp(min=1e-30), torch.ones_like(f))
    return d, t, small


def _line_search(
    objective: Objective,
    x: torch.Tensor,
    f: torch.Tensor,
    g: torch.Tensor,
    d: torch.Tensor,
    t: torch.Tensor,
    pending: torch.Tensor,
    c1: float,
    max_backtracks: int,
):
    """Projected Armijo backtracking, per pair, for the ``pending`` pairs: halve each pair's step until its
    loss decreases enough. Returns the new (x, f, g), the pairs that found no decrease (they did not
    move) and the number of objective calls."""
    x_new, f_new, g_new = x, f, g
    calls = 0
    for _ in range(max_backtracks):
        trial = (x + t[:, None] * d).clamp(0, 1)
        f_t, g_t = objective(trial)
        calls += 1
        # Armijo on the projected step: the decrease promised by the move actually made.
        ok = pending & (f_t <= f + c1 * (g * (trial - x)).sum(1))
        x_new = torch.where(ok[:, None], trial, x_new)
        g_new = torch.where(ok[:, None], g_t, g_new)
        f_new = torch.where(ok, f_t, f_new)
        pending = pending & ~ok
        if not bool(pending.any()):  # only pairs still pending are affected by further trials
            break
        t = t * 0.5
    return x_new, f_new, g_new, pending, calls


def batched_lbfgs(
    x: torch.Tensor,
    objective: Objective,
    steps: int,
    history: int = 10,
    c1: float = 1e-4,
    max_backtracks: int = 10,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, int, Stops]:
    """Minimise B independent problems in the box [0, 1]^D at once; row b of x only ever sees row b's numbers.

    x: (B, D) start; objective: (B, D) -> (loss (B,), grad (B, D)), each row depending on its own row only.
    Per pair: (s, y, rho) history, direction, step length, projected Armijo backtracking.
    A pair whose line search fails stays put, forgets its history and restarts
    from a small steepest-descent step (as it started); if even that
    fails it is done (converged to rounding) and stops moving, so it cannot make
    every later step of its batch pay for backtracking.
    on_step(k, x): after iteration k (1-based), with the iterate (snapshots of the answer on the way).
    Returns (x, trace (steps + 1, B) of the loss at each iterate, number of objective calls, each pair's Stops).
    """
    f, g = objective(x)  # (B,), (B, D)
    calls = 1
    memory = _PairMemory.empty(f)
    ran = torch.zeros_like(f, dtype=torch.int64)  # iterations each pair entered still optimising
    trace = [f]
    for k in range(1, steps + 1):
        ran += ~memory.done
        d, t, small = _search_direction(x, f, g, memory)
        x_new, f_new, g_new, failed, tries = _line_search(objective, x, f, g, d, t, ~memory.done, c1, max_backtracks)
        calls += tries
        memory.update(x_new - x, g_new - g, failed, small, history)  # zero rows for pairs that did not move
        x, f, g = x_new, f_new, g_new
        trace.append(f)
        if on_step is not None:
            on_step(k, x)
        if bool(memory.done.all()):
            break
    return x, _hold(x, f, trace, steps, on_step), calls, Stops(ran, memory.done, GAVE_UP)


def lbfgs_one_pass(
    x: torch.Tensor,
    objective: Objective,
    steps: int,
    history: int = 10,
    c1: float = 1e-4,
    max_backtracks: int = 10,
    guard: bool = True,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
    check_every: int = 50,
) -> tuple[torch.Tensor, torch.Tensor, int, Stops]:
    """Per-pair L-BFGS at exactly one evaluation of the batch per iteration, with no host sync in the loop.

    ``batched_lbfgs`` re-evaluates the whole batch until every pair has accepted its step, so the batch pays
    the worst pair's backtracking at every iteration. Here each iteration evaluates every pair once, at its own
    trial point, and each pair decides alone, by a mask:
      - guard=True: the trial passes the projected Armijo test -> the pair moves there and takes a new
        direction at unit step; it fails -> the pair stays, and its next iteration tries half the step along
        the same direction. So a pair's sequence of trials is ``batched_lbfgs``'s own (same direction, same
        halvings, same restarts and "done" rule after ``max_backtracks`` failures), but its backtracks are spread
        over iterations instead of stalling its batch-mates;
      - guard=False: every trial is accepted, a fixed unit step and no line search, as in the public Gatys
        implementations (torch.optim.LBFGS with lr=1, neural-style, pystiche): the loss may rise on a step.
    The history is kept as (history, B, D) tensors in which a pair's newest usable curvature pair is shifted in
    only when that pair moved, so a pair that backtracks keeps its memory (a shared list would get a zero
    entry per iteration and lose it). Every branch is a ``torch.where``: nothing reads a tensor on the host,
    so the step can later be captured by CUDA graphs; ``check_every`` iterations apart (and only with the
    guard) the loop looks whether every pair is done.
    Same arguments and returns as ``batched_lbfgs``; the number of calls is steps + 1 unless every pair is done.
    A pair's Stops count the iterations it entered before it was done, not the loop's (which looks only every
    ``check_every``): without the guard a pair is done only after ``max_backtracks`` non-finite losses in a row.
    """
    f, g = objective(x)
    calls = 1
    memory, slots = _slot_memory(x, f, history)
    tries = torch.zeros_like(f, dtype=torch.int32)  # halvings so far along the current direction
    ran = torch.zeros_like(f, dtype=torch.int64)  # iterations each pair entered still optimising (no sync)
    d, t, small = _search_direction(x, f, g, memory)
    trace = [f]
    for k in range(1, steps + 1):
        ran += ~memory.done
        trial = (x + t[:, None] * d).clamp(0, 1)
        f_t, g_t = objective(trial)
        calls += 1
        step = trial - x
        if guard:
            ok = ~memory.done & (f_t <= f + c1 * (g * step).sum(1))
        else:
            ok = ~memory.done & torch.isfinite(f_t)
        failed = ~memory.done & ~ok & (tries + 1 >= max_backtracks)
        _remember_moves(memory, slots, step, g_t - g, ok, failed, small)
        x = torch.where(ok[:, None], trial, x)
        f = torch.where(ok, f_t, f)
        g = torch.where(ok[:, None], g_t, g)
        trace.append(f)
        # A pair that moved or gave up takes a new direction; one still backtracking halves its step.
        renew = ok | failed | memory.done
        d_new, t_new, small_new = _search_direction(x, f, g, memory)
        d = torch.where(renew[:, None], d_new, d)
        t = torch.where(renew, t_new, t * 0.5)
        small = torch.where(renew, small_new, small)
        tries = torch.where(renew, 0, tries + 1)
        if on_step is not None:
            on_step(k, x)
        if guard and k % check_every == 0 and bool(memory.done.all()):  # one sync per check_every iterations
            break
    return x, _hold(x, f, trace, steps, on_step), calls, Stops(ran, memory.done, GAVE_UP if guard else NOT_FINITE)


def _slot_memory(
    x: torch.Tensor, f: torch.Tensor, history: int
) -> tuple[_PairMemory, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """A fresh memory for ``lbfgs_one_pass`` whose history is three tensors of slots, (history, B, D) for s and y
    and (history, B) for rho, oldest first; ``memory.history`` holds views of the slots, so that
    ``_remember_moves`` updates both at once, in place. A slot with rho 0 is skipped by the two-loop."""
    b, dim = x.shape
    s_hist = x.new_zeros(history, b, dim)
    y_hist = x.new_zeros(history, b, dim)
    rho_hist = f.new_zeros(history, b)
    memory = _PairMemory.empty(f)
    memory.history = list(zip(s_hist, y_hist, rho_hist))
    return memory, (s_hist, y_hist, rho_hist)


def _remember_moves(
    memory: _PairMemory,
    slots: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    step: torch.Tensor,
    grad_change: torch.Tensor,
    ok: torch.Tensor,
    failed: torch.Tensor,
    small: torch.Tensor,
) -> None:
    """``_PairMemory.update`` for the one-pass loop, by masks: only the pairs that moved (``ok``) shift their
    step ``step`` and gradient change ``grad_change`` (B, D) into their slots, so a pair that is backtracking
    keeps its memory; ``failed`` pairs forget it, and are done if even a small step failed."""
    s_hist, y_hist, rho_hist = slots
    history = s_hist.shape[0]
    s = step * ok[:, None]
    y = grad_change * ok[:, None]
    sy = (s * y).sum(1)
    usable = ok & (sy > 1e-8 * s.norm(dim=1) * y.norm(dim=1))  # as _PairMemory.update: H stays positive
    # Shift the usable pairs' memories by one slot, slot by slot in place (oldest first, so each slot reads
    # its successor before that is overwritten): one (B, D) temporary, not a copy of the whole history.
    rho_new = torch.where(usable, 1.0 / torch.where(usable, sy, 1.0), 0.0)
    for j in range(history):
        newer = (s_hist[j + 1], y_hist[j + 1], rho_hist[j + 1]) if j + 1 < history else (s, y, rho_new)
        s_hist[j] = torch.where(usable[:, None], newer[0], s_hist[j])
        y_hist[j] = torch.where(usable[:, None], newer[1], y_hist[j])
        rho_hist[j] = torch.where(usable, newer[2], rho_hist[j])
    rho_hist.masked_fill_(failed[None], 0)  # a failed search forgets its history, as batched_lbfgs
    gamma = torch.where(usable, sy / torch.where(usable, (y * y).sum(1), 1.0), memory.gamma)
    memory.gamma = gamma.masked_fill(failed, 1.0)
    memory.done = memory.done | (failed & small)
    memory.fresh = (memory.fresh & ~usable) | failed


def _hold(
    x: torch.Tensor, f: torch.Tensor, trace: list[torch.Tensor], steps: int, on_step: Callable | None
) -> torch.Tensor:
    """The trace (steps + 1, B) of a run that may have stopped early, every pair done: the iterate and its loss
    stay for the remaining steps (reported to ``on_step`` too, so progress and snapshots reach ``steps``)."""
    if on_step is not None:
        for later in range(len(trace), steps + 1):
            on_step(later, x)
    trace += [f] * (steps + 1 - len(trace))
    return torch.stack(trace)


def adam(
    x: torch.Tensor,
    objective: Objective,
    steps: int,
    lr: float,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, int, Stops]:
    """Projected Adam on (B, D); elementwise, so pairs are independent. Same arguments and returns as
    ``batched_lbfgs``; every pair runs every step."""
    x = x.clone()
    opt = torch.optim.Adam([x], lr=lr)
    trace = []
    for k in range(1, steps + 1):
        f, g = objective(x)
        trace.append(f)
        x.grad = g
        opt.step()
        x.clamp_(0, 1)
        if on_step is not None:
            on_step(k, x.detach())
    f, _ = objective(x)
    return x, torch.stack(trace + [f]), steps + 1, Stops.none_stopped(x.shape[0], steps)
