"""Trial accounting for a walk-forward record: which seed each fold tests, how many trials that
selection chose among (N) and the variance of their Sharpes (V), the inputs of the deflated
Sharpe ratio (significance.py) of an instrument's chained test returns.

A trial is one candidate the selection could have kept: one validation evaluation of one seed
in one fold, and flat where it is a candidate (a run keeps flat unless the agent beats it on
validation). Sharpes come in annualized, as runs log them, and V is per period. The DSR is
applied to one instrument's chained returns, so V is the variance of the trials' Sharpes on
that same instrument's validation part, not of their medians over a universe's markets: a
median over M markets varies about M times less and would understate V.

    N        = max over folds k of (sum over seeds s of E[k][s], + 1 with flat a candidate)
    V_m      = var (ddof=1) over every fold, seed and evaluation of sharpe[k][s][e][m] / sqrt(P)
    seed(k)  = argmax over s of best validation Sharpe[k][s] (None counts as -inf; ties: the
               first seed)

with E[k][s] the validation evaluations of seed s in fold k and P the periods per year.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class SeedTrials:
    """One seed's training of one fold: its best validation Sharpe (None: never evaluated)
    and every validation evaluation's annualized Sharpe on each validation market, [E][M]."""

    best_sharpe: float | None
    sharpes_by_market: Sequence[Sequence[float]]

    @property
    def evaluations(self) -> int:
        return len(self.sharpes_by_market)


def select_seed(best_sharpes: Sequence[float | None]) -> int:
    """The seed (an index) with the highest best validation Sharpe; None never wins, ties go
    to the first. ValueError when there is no seed."""
    if not best_sharpes:
        raise ValueError("select_seed needs at least one seed")
    return max(range(len(best_sharpes)), key=lambda s: (
        -math.inf if best_sharpes[s] is None else best_sharpes[s], -s))


def select_seeds(folds: Sequence[Sequence[SeedTrials]]) -> list[int]:
    """select_seed of each fold: folds[k][s] is seed s's training of fold k."""
    return [select_seed([seed.best_sharpe for seed in seeds]) for seeds in folds]


def num_trials(folds: Sequence[Sequence[SeedTrials]], flat_candidate: bool = False) -> int:
    """N: the most candidates any fold's selection chose among (at least 1)."""
    if not folds:
        raise ValueError("num_trials needs at least one fold")
    counts = [sum(seed.evaluations for seed in seeds) + int(flat_candidate) for seeds in folds]
    return max(1, max(counts))


def per_period_variance(sharpes: Sequence[float], periods_per_year: float) -> float:
    """The variance (ddof=1) of annualized Sharpes made per period; 0 for fewer than two."""
    if not periods_per_year > 0:
        raise ValueError(f"periods_per_year={periods_per_year!r}: expected a number > 0")
    values = np.asarray(sharpes, dtype=np.float64) / math.sqrt(periods_per_year)
    if not np.isfinite(values).all():
        raise ValueError(f"the trials' Sharpes must be finite, got {list(sharpes)}")
    return float(np.var(values, ddof=1)) if len(values) > 1 else 0.0


def trials_sharpe_variance(folds: Sequence[Sequence[SeedTrials]], market: int,
                           periods_per_year: float) -> float:
    """V of instrument `market`: every trial's Sharpe on that market's validation part."""
    sharpes = []
    for seeds in folds:
        for seed in seeds:
            for by_market in seed.sharpes_by_market:
                if not 0 <= market < len(by_market):
                    raise ValueError(f"market {market}: a trial has Sharpes of {len(by_market)} "
                                     "validation markets")
                sharpes.append(by_market[market])
    return per_period_variance(sharpes, periods_per_year)


def agent_trials(folds: Sequence[Sequence[SeedTrials]], market: int, periods_per_year: float,
                 flat_candidate: bool = False) -> tuple[int, float]:
    """(N, V of `market`) of the selection across the seeds of every fold."""
    return (num_trials(folds, flat_candidate),
            trials_sharpe_variance(folds, market, periods_per_year))


def rule_trials(training_sharpes: Sequence[Mapping[str, float]],
                periods_per_year: float) -> tuple[int, float]:
    """(N, V) of a rule whose parameters were chosen by Sharpe on each fold's training part of
    one instrument: N the grid's size, V the mean over folds of the variance of the grid's
    per-period Sharpes; (1, 0) for a rule without parameters. training_sharpes[k]: fold k's
    {candidate: annualized Sharpe}."""
    if not training_sharpes:
        raise ValueError("rule_trials needs at least one fold")
    sizes = {len(grid) for grid in training_sharpes}
    if len(sizes) != 1:
        raise ValueError(f"every fold needs the same grid, got sizes {sorted(sizes)}")
    size = sizes.pop()
    if size == 0:
        return 1, 0.0
    variances = [per_period_variance(list(grid.values()), periods_per_year)
                 for grid in training_sharpes]
    return size, float(np.mean(variances))
