"""Trading metrics on hand-computed series, run_episode, baselines and the equity plot."""

import math

import numpy as np
import pytest

from environments import (TradingEnv, buy_and_hold, evaluate_with_baselines, flat, plot_equity,
                          run_episode, trading_metrics)

CLOSES = [100.0, 110.0, 99.0, 99.0, 108.9]  # returns from bar 1: -10%, 0%, +10%


def test_metrics_of_a_hand_computed_series():
    # step returns +10%, -10%, +10%; 3 periods per "year" so annualizing is the identity
    metrics = trading_metrics([1.0, 1.1, 0.99, 1.089], [1.0, 1.0, -1.0], periods_per_year=3)
    assert metrics["total_return"] == pytest.approx(0.089)
    assert metrics["annualized_return"] == pytest.approx(0.089)
    # mean 1/30, sample std sqrt(0.04/3) -> sharpe (1/30) / 0.11547 * sqrt(3) = 0.5
    assert metrics["sharpe"] == pytest.approx(0.5)
    # downside deviation sqrt(0.01 / 3) -> sortino (1/30) / 0.057735 * sqrt(3) = 1
    assert metrics["sortino"] == pytest.approx(1.0)
    assert metrics["max_drawdown"] == pytest.approx(0.1)
    assert metrics["turnover"] == pytest.approx((1 + 0 + 2) / 3)
    assert metrics["hit_rate"] == pytest.approx(2 / 3)
    assert metrics["num_steps"] == 3 and metrics["final_value"] == 1.089


def test_annualizing_and_degenerate_series():
    metrics = trading_metrics([1.0, 1.01, 1.0201], [1.0, 1.0], periods_per_year=252)
    assert metrics["annualized_return"] == pytest.approx(1.01**252 - 1)
    assert metrics["sortino"] == math.inf and metrics["sharpe"] == 0.0  # constant +1%: std 0
    still = trading_metrics([1.0, 1.0, 1.0], [0.0, 0.0])
    assert (still["sharpe"], still["sortino"], still["max_drawdown"], still["hit_rate"],
            still["turnover"]) == (0.0, 0.0, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="one entry per step"):
        trading_metrics([1.0, 1.1], [1.0, 1.0])


def test_run_episode_and_baselines_on_a_hand_market(make_market, tmp_path):
    market = make_market(CLOSES)
    env = TradingEnv(market, window=1, mode="eval", commission_bps=0.0, spread_bps=0.0,
                     borrow_bps_per_step=0.0)
    actions = iter([0, 1, 2])  # short, flat, long
    result = run_episode(env, lambda obs: next(actions))
    np.testing.assert_allclose(result["portfolio_values"], [1.0, 1.1, 1.1, 1.21])
    np.testing.assert_array_equal(result["positions"], [-1.0, 0.0, 1.0])
    np.testing.assert_array_equal(result["timestamps"], market.timestamps[1:])
    assert result["total_return"] == result["metrics"]["total_return"] == pytest.approx(0.21)
    np.testing.assert_allclose(buy_and_hold(env)["portfolio_values"], [1.0, 0.9, 0.9, 0.99])
    np.testing.assert_allclose(flat(env)["portfolio_values"], [1.0, 1.0, 1.0, 1.0])
    results = evaluate_with_baselines(env, lambda obs: 2, plot_path=tmp_path / "plots/equity.png")
    assert results["agent"]["total_return"] == results["buy_and_hold"]["total_return"]
    assert (tmp_path / "plots/equity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_episode_refuses_train_mode(make_market):
    env = TradingEnv(make_market(np.linspace(100, 120, 50)), window=4, episode_length=8)
    with pytest.raises(ValueError, match="mode='eval'"):
        run_episode(env, lambda obs: 1)
    with pytest.raises(ValueError, match="position 1.0"):
        buy_and_hold(TradingEnv(make_market(CLOSES), window=1, mode="eval", positions=(-1.0, 0.0)))


def test_plot_equity_writes_a_png(tmp_path):
    path = plot_equity(tmp_path / "curve.png", {"a": [1.0, 1.2, 1.1], "b": [1.0, 0.9, 1.0]})
    assert open(path, "rb").read(4) == b"\x89PNG"
    with pytest.raises(ValueError, match="timestamps"):
        plot_equity(tmp_path / "bad.png", {"a": [1.0, 2.0]}, timestamps=np.arange(3))
