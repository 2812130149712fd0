"""Trial accounting of a walk-forward record against hand counts: the seed each fold tests, the
number of trials N, their Sharpes' variance V per instrument (not of the universe's medians)
and a rule's grid."""

import math

import pytest

from environments.evaluation.trials import (SeedTrials, agent_trials, num_trials,
                                            per_period_variance, rule_trials, select_seed,
                                            select_seeds, trials_sharpe_variance)

PERIODS = 4.0  # sqrt(4) = 2: a per-period Sharpe is half the annualized one

# 2 folds x 2 seeds, 2 validation markets; sharpes_by_market[e][m], annualized.
FOLDS = [
    [SeedTrials(1.0, [[0.0, 2.0], [1.0, 1.0]]),       # fold 0, seed 0: 2 evaluations
     SeedTrials(3.0, [[2.0, 4.0]])],                   # fold 0, seed 1: 1 evaluation
    [SeedTrials(None, []),                             # fold 1, seed 0: never evaluated
     SeedTrials(-1.0, [[-2.0, 0.0], [0.0, -2.0], [-1.0, -1.0]])],  # fold 1, seed 1: 3
]


def test_select_seed_by_best_validation_sharpe():
    assert select_seed([0.5, 1.5, 1.0]) == 1
    assert select_seed([None, -3.0]) == 1  # never evaluated loses to anything
    assert select_seed([2.0, 2.0]) == 0  # a tie: the first seed
    assert select_seed([None]) == 0
    assert select_seeds(FOLDS) == [1, 1]
    with pytest.raises(ValueError, match="at least one seed"):
        select_seed([])


def test_num_trials_is_the_largest_folds_candidates():
    # fold 0: 2 + 1 = 3 evaluations; fold 1: 0 + 3 = 3; with flat a candidate, one more each
    assert num_trials(FOLDS) == 3
    assert num_trials(FOLDS, flat_candidate=True) == 4
    assert num_trials([[SeedTrials(1.0, [[1.0]] * 5)], [SeedTrials(1.0, [[1.0]] * 2)]]) == 5
    assert num_trials([[SeedTrials(None, [])]]) == 1  # nothing evaluated: one candidate


def test_variance_per_instrument_by_hand():
    # market 0's Sharpes: 0, 1, 2, -2, 0, -1 (annualized) -> per period 0, .5, 1, -1, 0, -.5:
    # mean 0, sum of squares 0 + .25 + 1 + 1 + 0 + .25 = 2.5, ddof=1: 2.5 / 5 = 0.5
    assert trials_sharpe_variance(FOLDS, 0, PERIODS) == pytest.approx(0.5, rel=1e-12)
    # market 1's: 2, 1, 4, 0, -2, -1 -> 1, .5, 2, 0, -1, -.5: mean 1/3,
    # deviations 2/3, 1/6, 5/3, -1/3, -4/3, -5/6: squares sum 4/9 + 1/36 + 25/9 + 1/9 + 16/9
    # + 25/36 = 210/36, / 5 = 7/6
    assert trials_sharpe_variance(FOLDS, 1, PERIODS) == pytest.approx(7 / 6, rel=1e-12)
    assert agent_trials(FOLDS, 1, PERIODS, flat_candidate=True) == (4, pytest.approx(7 / 6))
    with pytest.raises(ValueError, match="market 2"):
        trials_sharpe_variance(FOLDS, 2, PERIODS)


def test_the_median_over_markets_understates_the_instruments_variance():
    # Issue 26: a trial's median over 8 markets with independent noise varies far less than
    # its Sharpe on one market, which is what the DSR of one instrument's returns is about.
    import numpy as np

    rng = np.random.default_rng(0)
    sharpes = rng.normal(0.0, 1.0, (200, 8))  # [trials, markets]
    folds = [[SeedTrials(1.0, sharpes.tolist())]]
    per_instrument = trials_sharpe_variance(folds, 3, 1.0)
    medians = per_period_variance(np.median(sharpes, axis=1), 1.0)
    assert per_instrument == pytest.approx(float(np.var(sharpes[:, 3], ddof=1)), rel=1e-12)
    assert medians < per_instrument / 3


def test_per_period_variance():
    assert per_period_variance([1.0], 252.0) == 0.0
    # 2 and 4 at 4 periods a year: per period 1 and 2, variance (ddof=1) 0.5
    assert per_period_variance([2.0, 4.0], 4.0) == pytest.approx(0.5, rel=1e-12)
    assert per_period_variance([2.0, 4.0], 1.0) == pytest.approx(2.0, rel=1e-12)
    with pytest.raises(ValueError, match="periods_per_year=0"):
        per_period_variance([1.0, 2.0], 0)
    with pytest.raises(ValueError, match="finite"):
        per_period_variance([1.0, math.nan], 1.0)


def test_rule_trials_by_hand():
    # fold 0's grid: 0, 2 -> per period 0, 1: variance 0.5; fold 1's: 2, 2 -> 0. Mean 0.25.
    grids = [{"a": 0.0, "b": 2.0}, {"a": 2.0, "b": 2.0}]
    assert rule_trials(grids, PERIODS) == (2, pytest.approx(0.25, rel=1e-12))
    assert rule_trials([{}, {}], PERIODS) == (1, 0.0)  # a rule without parameters
    with pytest.raises(ValueError, match="same grid"):
        rule_trials([{"a": 1.0}, {}], PERIODS)
