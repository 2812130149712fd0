"""The folds' test episodes chained in time order: chained equity is the product of the folds'
growths, the record is contiguous, per market for a universe, and reported with significance."""

import numpy as np
import pytest

from environments import TradingEnv, buy_and_hold
from environments.evaluation.chaining import chain, chain_per_market, chained_report, plot_chained
from environments.data.folds import FoldSizes, fold_parts, walk_forward
from environments.evaluation.rules import momentum, run_rule
from environments.evaluation.significance import significance
from tests.test_environments.conftest import market_from_closes

SIZES = FoldSizes(3, test_bars=3, validation_bars=2, embargo=1)  # tests [11,14) [14,17) [17,20)
CLOSES = 100.0 * np.exp(np.cumsum(np.random.default_rng(3).normal(0.0, 0.02, 21)))


def fold_test_envs(market, window=2, **costs):
    return [TradingEnv(fold_parts(market, SIZES, k, lookback=window)[2], window=window,
                       mode="eval", **costs) for k in range(SIZES.folds)]


def test_chained_buy_and_hold_is_the_product_of_the_folds_growths():
    market = market_from_closes(CLOSES)
    free = dict(commission_bps=0, spread_bps=0, borrow_bps_per_step=0)
    chained = chain([buy_and_hold(env, 252) for env in fold_test_envs(market, **free)])
    # by hand: fold k grows close[end_k] / close[begin_k]; chained: close[20] / close[11]
    assert chained["fold_growths"] == pytest.approx(
        [CLOSES[14] / CLOSES[11], CLOSES[17] / CLOSES[14], CLOSES[20] / CLOSES[17]], rel=1e-12)
    assert chained["portfolio_values"][-1] == pytest.approx(CLOSES[20] / CLOSES[11], rel=1e-12)
    np.testing.assert_allclose(chained["portfolio_values"], CLOSES[11:] / CLOSES[11], rtol=1e-12)
    np.testing.assert_array_equal(chained["timestamps"], market.timestamps[11:21])
    assert len(chained["returns"]) == 9 and chained["metrics"]["num_steps"] == 9


def test_chained_rule_with_costs_keeps_each_folds_steps():
    market = market_from_closes(CLOSES)
    folds = [run_rule(env, momentum(2), history=market, periods_per_year=252)
             for env in fold_test_envs(market)]
    chained = chain(folds)
    growths = [fold["portfolio_values"][-1] / fold["portfolio_values"][0] for fold in folds]
    assert chained["portfolio_values"][-1] == pytest.approx(np.prod(growths), rel=1e-12)
    fold_returns = np.concatenate([fold["portfolio_values"][1:] / fold["portfolio_values"][:-1]
                                   - 1 for fold in folds])
    np.testing.assert_allclose(chained["returns"], fold_returns, rtol=1e-12)
    np.testing.assert_array_equal(chained["positions"],
                                  np.concatenate([fold["positions"] for fold in folds]))
    assert [m["total_return"] for m in chained["fold_metrics"]] == pytest.approx(
        [g - 1 for g in growths], rel=1e-12)


def test_a_gap_between_test_periods_is_refused():
    market = market_from_closes(CLOSES)
    envs = fold_test_envs(market)
    with pytest.raises(ValueError, match="fold 1's test starts at .* but fold 0's ended at"):
        chain([buy_and_hold(envs[0], 252), buy_and_hold(envs[2], 252)])


def test_after_a_bankrupt_fold_the_record_stays_at_zero():
    days = np.datetime64("2020-01-01", "ns") + np.arange(6) * np.timedelta64(1, "D")
    bankrupt = dict(portfolio_values=[1.0, 0.0], positions=[1.0], timestamps=days[:2],
                    periods_per_year=252)  # cut short at day 1 of a test ending at day 3
    later = dict(portfolio_values=[1.0, 1.1, 1.2], positions=[1.0, 1.0], timestamps=days[3:6],
                 periods_per_year=252)
    chained = chain([bankrupt, later])
    assert chained["portfolio_values"].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert chained["fold_growths"] == [0.0, pytest.approx(1.2)]


def test_a_universe_is_chained_per_market():
    markets = [market_from_closes(CLOSES), market_from_closes(CLOSES[::-1].copy())]
    envs = [fold_test_envs(market, commission_bps=0, spread_bps=0) for market in markets]
    per_fold = [[buy_and_hold(envs[m][k], 252) for m in range(2)] for k in range(SIZES.folds)]
    first, second = chain_per_market(per_fold)
    assert first["portfolio_values"][-1] == pytest.approx(CLOSES[20] / CLOSES[11], rel=1e-12)
    reversed_closes = CLOSES[::-1]
    assert second["portfolio_values"][-1] == pytest.approx(
        reversed_closes[20] / reversed_closes[11], rel=1e-12)
    with pytest.raises(ValueError, match="a result per market"):
        chain_per_market([per_fold[0], per_fold[1][:1]])


def test_report_and_plot(tmp_path):
    market = market_from_closes(CLOSES)
    envs = fold_test_envs(market)
    rule = chain([run_rule(env, momentum(2), history=market, periods_per_year=252)
                  for env in envs])
    hold = chain([buy_and_hold(env, 252) for env in envs])
    report = chained_report(rule, hold, num_trials=6, trials_sharpe_variance=0.01)
    assert len(report["folds"]) == 3
    assert report["folds"][1]["growth"] == rule["fold_growths"][1]
    assert report["chained"]["final_value"] == rule["portfolio_values"][-1]
    assert report["significance"] == significance(rule["returns"], hold["returns"], 6, 0.01)
    path = plot_chained(tmp_path / "chained.png", {"momentum": rule, "buy_and_hold": hold})
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="not on the same bars"):
        plot_chained(tmp_path / "bad.png", {"a": rule, "b": chain([buy_and_hold(envs[0], 252)])})


def test_walk_forward_matches_the_sizes_the_envs_were_cut_with():
    assert [fold.test for fold in walk_forward(21, SIZES)] == [(11, 14), (14, 17), (17, 20)]
