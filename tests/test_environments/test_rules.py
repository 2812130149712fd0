"""The practitioner baselines on hand-built price paths: momentum and crossover targets, their
PnL through TradingEnv's accounting, selection on a training part, and the OU oracle."""

import math

import numpy as np
import pytest

from environments import TradingEnv, buy_and_hold, synthetic_market
from environments.data.folds import FoldSizes, fold_parts
from environments.evaluation.rules import (baselines, constant, momentum, moving_average_crossover,
                                           ou_mean_reversion, random_rule, run_rule, select_by_sharpe)
from tests.test_environments.conftest import market_from_closes

CLOSES = [10.0, 11.0, 12.0, 11.0, 10.0, 10.0, 12.0]


def test_momentum_targets_by_hand():
    targets = momentum(2)(market_from_closes(CLOSES))
    # t=2: 12/10 up; t=3: 11/11 flat; t=4: 10/12 down; t=5: 10/11 down; t=6: 12/10 up
    assert targets.tolist() == [0, 0, 1, 0, -1, -1, 1]
    with pytest.raises(ValueError, match="lookback=0"):
        momentum(0)


def test_crossover_targets_by_hand():
    targets = moving_average_crossover(2, 3)(market_from_closes(CLOSES))
    # fast (2 bars) vs slow (3 bars): t=2 11.5 > 11; t=3 11.5 > 11.33; t=4 10.5 < 11;
    # t=5 10 < 10.33; t=6 11 > 10.67
    assert targets.tolist() == [0, 0, 1, 1, -1, -1, 1]
    with pytest.raises(ValueError, match="fast=3, slow=3"):
        moving_average_crossover(3, 3)


def test_a_rule_trades_through_the_env_accounting():
    env = TradingEnv(market_from_closes(CLOSES), window=2, mode="eval", commission_bps=0,
                     spread_bps=0, borrow_bps_per_step=0)
    result = run_rule(env, momentum(2), periods_per_year=252)
    # decisions at bars 2..5: +1, 0, -1, -1 on returns 11/12-1, 10/11-1, 10/10-1, 12/10-1
    assert result["positions"].tolist() == [1, 0, -1, -1]
    assert result["final_value"] == pytest.approx((11 / 12) * 1 * 1 * (1 - 0.2), rel=1e-12)
    # with costs: trade rate c = (1 + 1) bp, borrow b = 0.4 bp a step on a short position
    env = TradingEnv(market_from_closes(CLOSES), window=2, mode="eval")
    c, b = 2e-4, 0.4e-4
    changes = [1 * (11 / 12 - 1) - 1 * c, 0 - 1 * c, -1 * 0 - 1 * c - b, -1 * 0.2 - b]
    result = run_rule(env, momentum(2), periods_per_year=252)
    assert result["final_value"] == pytest.approx(math.prod(1 + x for x in changes), rel=1e-12)
    # buy-and-hold as a rule is metrics.buy_and_hold
    np.testing.assert_array_equal(run_rule(env, constant(1.0))["portfolio_values"],
                                  buy_and_hold(env)["portfolio_values"])


def test_targets_go_to_the_nearest_position():
    env = TradingEnv(market_from_closes(CLOSES), window=2, mode="eval", positions=(0.0, 0.5))
    # -1 -> 0, 0.25 (a tie between 0 and 0.5) -> 0, 1 -> 0.5
    rule = lambda market: np.array([0, 0, -1.0, 0.25, 1.0, 1.0, 0])  # noqa: E731
    assert run_rule(env, rule)["positions"].tolist() == [0, 0, 0.5, 0.5]


def test_with_history_a_rule_sees_the_bars_before_the_part():
    history = market_from_closes(CLOSES)
    part = history.rows(2, 7)  # bars 2..6; window=2: decisions at bars 4, 5
    env = TradingEnv(part, window=2, mode="eval", commission_bps=0, spread_bps=0,
                     borrow_bps_per_step=0)
    # momentum(2) on the whole market at bars 4, 5: -1, -1
    assert run_rule(env, momentum(2), history=history)["positions"].tolist() == [-1, -1]
    # on the part alone, bars 4, 5 are its rows 2, 3: 10/12 and 10/11: also down
    assert run_rule(env, momentum(2))["positions"].tolist() == [-1, -1]
    # the rows 0..1 of the part have no lookback of their own: momentum(3) on the part is
    # flat at its row 2 (bar 4), on the whole market 10/11 is down
    assert run_rule(env, momentum(3))["positions"].tolist() == [0, -1]
    assert run_rule(env, momentum(3), history=history)["positions"].tolist() == [-1, -1]
    with pytest.raises(ValueError, match="is not a run of rows"):
        run_rule(env, momentum(2), history=market_from_closes([1.0] * 7))


def test_selection_by_sharpe_on_the_training_part():
    rising = TradingEnv(market_from_closes(100 * 1.01 ** np.arange(20) * (1 + 0.001 * (
        np.arange(20) % 3))), window=2, mode="eval")
    candidates = {"short": constant(-1.0), "flat": constant(0.0), "long": constant(1.0)}
    best, sharpes = select_by_sharpe(rising, candidates, periods_per_year=252)
    assert best == "long" and sharpes["long"] > 0 > sharpes["short"]
    assert select_by_sharpe(rising, {"a": constant(0.0), "b": constant(0.0)})[0] == "a"


def test_random_rule_is_seeded():
    market = market_from_closes(CLOSES * 10)
    assert np.array_equal(random_rule(3)(market), random_rule(3)(market))
    assert not np.array_equal(random_rule(3)(market), random_rule(4)(market))
    assert set(random_rule(3)(market).tolist()) == {-1.0, 0.0, 1.0}


def test_the_ou_oracle_by_hand():
    stationary_std = 0.01 / math.sqrt(1 - 0.95**2)
    closes = 100 * np.exp(np.array([-1.0, 0.0, 1.0, -0.4, 0.6]) * stationary_std)
    assert ou_mean_reversion(0.5)(market_from_closes(closes)).tolist() == [1, 0, -1, 0, -1]


def test_baselines_on_a_fold_choose_on_training_and_test_once():
    market = synthetic_market("gbm", 1200, seed=5)
    window = 8
    train, _, test = fold_parts(market, FoldSizes(2), 1, lookback=window)
    kwargs = dict(window=window, mode="eval")
    train_env, test_env = TradingEnv(train, **kwargs), TradingEnv(test, **kwargs)
    results = baselines(train_env, test_env, history=market, seed=1, oracle=True,
                        periods_per_year=252)
    assert list(results) == ["buy_and_hold", "flat", "random", "momentum", "ma_crossover",
                             "ou_mean_reversion"]
    assert results["flat"]["final_value"] == 1.0
    lookback = int(results["momentum"]["rule"].split("=")[1].rstrip(")"))
    best = max((run_rule(train_env, momentum(n), market, 252)["sharpe"], -i, n)
               for i, n in enumerate((5, 10, 21, 63, 126, 252)))
    assert lookback == best[2]
    assert len(results["momentum"]["training_sharpes"]) == 6
    assert len(results["ma_crossover"]["training_sharpes"]) == 4
    assert results["flat"]["training_sharpes"] == {}
    np.testing.assert_array_equal(results["momentum"]["portfolio_values"],
                                  run_rule(test_env, momentum(lookback), market, 252)[
                                      "portfolio_values"])
    for result in results.values():
        assert result["num_steps"] == len(test) - window - 1
