"""The probabilistic and deflated Sharpe ratios against values computed by hand from the papers'
formulas on fixed returns, the numerical example of Bailey & López de Prado (2014), and the
Jobson-Korkie-Memmel test of a Sharpe difference on hand-computed moments."""

import math
import statistics

import numpy as np
import pytest

from environments.evaluation.significance import (EULER_GAMMA, deflated_sharpe_ratio,
                                                  expected_max_sharpe, probabilistic_sharpe_ratio,
                                                  psr_from_moments, return_moments,
                                                  sharpe_difference_test, sharpe_difference_z,
                                                  significance, verdict)

RETURNS = [0.03, -0.01, 0.0, 0.01, -0.01, 0.04, -0.02, 0.005]
PHI = statistics.NormalDist().cdf


def by_hand(returns):
    """SR (ddof=1), skew and kurt (population moments) with plain sums."""
    n = len(returns)
    mean = sum(returns) / n
    deviations = [r - mean for r in returns]
    variance = sum(d * d for d in deviations) / n
    sharpe = mean / math.sqrt(sum(d * d for d in deviations) / (n - 1))
    return (sharpe, sum(d**3 for d in deviations) / n / variance**1.5,
            sum(d**4 for d in deviations) / n / variance**2)


def test_moments_of_fixed_returns():
    sharpe, skew, kurt, n = return_moments(RETURNS)
    # mean 0.045 / 8 = 0.005625, s = 0.0206047 (ddof=1)
    assert n == 8
    assert sharpe == pytest.approx(0.005625 / 0.020604697799981718, rel=1e-12)
    assert (sharpe, skew, kurt) == pytest.approx(by_hand(RETURNS), rel=1e-12)
    assert (skew, kurt) == pytest.approx((0.5333613067420303, 2.084257978485208), rel=1e-12)


def test_psr_by_hand_against_zero_and_a_benchmark():
    sharpe, skew, kurt = by_hand(RETURNS)
    for benchmark in (0.0, 0.1, -0.05):
        z = (sharpe - benchmark) * math.sqrt(8 - 1) / math.sqrt(
            1 - skew * sharpe + (kurt - 1) / 4 * sharpe**2)
        assert probabilistic_sharpe_ratio(RETURNS, benchmark) == pytest.approx(PHI(z), rel=1e-12)
    assert probabilistic_sharpe_ratio(RETURNS) == pytest.approx(0.7800397787791167, rel=1e-9)
    # against its own Sharpe: a coin toss
    assert probabilistic_sharpe_ratio(RETURNS, sharpe) == pytest.approx(0.5, abs=1e-12)


def test_psr_of_normal_moments_is_lo_2002():
    # skew 0, kurt 3: the variance of the Sharpe estimate is (1 + SR^2 / 2) / (n - 1)
    z = 0.1 * math.sqrt(99) / math.sqrt(1 + 0.1**2 / 2)
    assert psr_from_moments(0.1, 100) == pytest.approx(PHI(z), rel=1e-12)


def test_constant_returns_have_no_sharpe():
    assert return_moments([0.0] * 5) == (0.0, 0.0, 3.0, 5)
    assert probabilistic_sharpe_ratio([0.0] * 5) == 0.5
    with pytest.raises(ValueError, match="at least 2 finite"):
        return_moments([0.01])


def test_expected_max_sharpe_by_hand():
    assert expected_max_sharpe(1, 0.3) == 0.0
    # N = 2: Phi^-1(1/2) = 0 and Phi^-1(1 - 1/(2e)) = 0.9004525966 (scipy.stats.norm.ppf)
    assert expected_max_sharpe(2, 0.04) == pytest.approx(0.2 * EULER_GAMMA * 0.9004525966377902,
                                                         rel=1e-9)
    # N = 100: Phi^-1(0.99) = 2.3263478740, Phi^-1(1 - 1/(100e)) = 2.6802104450
    assert expected_max_sharpe(100, 1.0) == pytest.approx(
        (1 - EULER_GAMMA) * 2.3263478740408408 + EULER_GAMMA * 2.6802104449668875, rel=1e-9)
    with pytest.raises(ValueError, match="num_trials=0"):
        expected_max_sharpe(0, 1.0)


def test_the_papers_example():
    # Bailey & López de Prado (2014), section 4: best of N = 100 trials at annualized SR 2.5,
    # V[SR_n] = 1/2 (annualized), T = 1250 daily returns (250 a year), skew -3, kurt 10:
    # SR*_N = 0.1132 per day and DSR = 0.9004.
    threshold = expected_max_sharpe(100, 0.5 / 250)
    assert threshold == pytest.approx(0.1132, abs=1e-4)
    dsr = psr_from_moments(2.5 / math.sqrt(250), 1250, skew=-3.0, kurt=10.0,
                           benchmark_sharpe=threshold)
    assert dsr == pytest.approx(0.9004, abs=1e-4)


def test_deflated_sharpe_falls_with_more_trials():
    returns = np.random.default_rng(0).normal(0.001, 0.01, 1000)
    values = [deflated_sharpe_ratio(returns, n, 0.03**2) for n in (1, 10, 100, 1000)]
    assert values[0] == pytest.approx(probabilistic_sharpe_ratio(returns), rel=1e-12)
    assert values == sorted(values, reverse=True) and values[-1] < values[0]


def test_significance_and_its_verdict():
    rng = np.random.default_rng(1)
    strong = rng.normal(0.002, 0.01, 2000)  # per-period SR ~ 0.2: beyond luck
    weak = rng.normal(0.0, 0.01, 2000)
    result = significance(strong, benchmark_returns=weak, num_trials=20,
                          trials_sharpe_variance=0.01**2)
    sharpe, skew, kurt, n = return_moments(strong)
    assert result["psr_vs_zero"] == psr_from_moments(sharpe, n, skew, kurt)
    assert result["vs_benchmark"] == sharpe_difference_test(strong, weak)
    assert result["p_above_benchmark"] == result["vs_benchmark"]["p_above_benchmark"] > 0.95
    assert result["dsr"] == deflated_sharpe_ratio(strong, 20, 0.01**2)
    assert verdict(result).startswith("distinguishable from luck")
    lucky = significance(weak[:500], num_trials=50, trials_sharpe_variance=0.05**2)
    assert lucky["vs_benchmark"] is None and lucky["p_above_benchmark"] is None
    assert verdict(lucky).startswith("not distinguishable from luck")
    # beyond luck, but not beyond a benchmark that does as well on the same periods
    level = significance(strong, benchmark_returns=strong[::-1], num_trials=1)
    assert level["p_above_benchmark"] == pytest.approx(0.5, abs=1e-9)
    assert "but not over the benchmark" in verdict(level)


def test_sharpe_difference_z_by_hand():
    # SR = 0.1, SR_b = 0.05, rho = 0.5, n = 100:
    # theta = (2 - 1 + (0.01 + 0.0025 - 2 x 0.1 x 0.05 x 0.25) / 2) / 100 = 1.005 / 100
    assert sharpe_difference_z(0.1, 0.05, 0.5, 100) == pytest.approx(0.05 / math.sqrt(0.01005),
                                                                     rel=1e-12)
    assert sharpe_difference_z(0.1, 0.05, 0.5, 100) == pytest.approx(0.49875466805, rel=1e-9)
    # uncorrelated, Sharpes 0 and 0: theta = 2 / n, the variance of a difference of two
    # independent Sharpe estimates of variance 1 / n each
    assert sharpe_difference_z(0.2, 0.0, 0.0, 50) == pytest.approx(
        0.2 / math.sqrt((2 + 0.02) / 50), rel=1e-12)
    # the higher the correlation, the smaller the noise of the difference
    assert sharpe_difference_z(0.1, 0.05, 0.9, 100) > sharpe_difference_z(0.1, 0.05, 0.0, 100)
    assert sharpe_difference_z(0.1, 0.1, 1.0, 100) == 0.0  # the same series
    assert sharpe_difference_z(0.05, 0.1, 0.5, 100) == -sharpe_difference_z(0.1, 0.05, 0.5, 100)
    with pytest.raises(ValueError, match="correlation=1.5"):
        sharpe_difference_z(0.1, 0.0, 1.5, 100)


def test_sharpe_difference_test_on_fixed_returns_by_hand():
    agent = [0.01, 0.02, -0.01, 0.03]
    hold = [0.02, 0.01, 0.0, 0.01]
    # agent: mean 0.0125, deviations -0.0025 0.0075 -0.0225 0.0175, sum of squares 8.75e-4
    # hold:  mean 0.01,   deviations  0.01   0      -0.01    0,      sum of squares 2e-4
    # cross products: -2.5e-5 + 0 + 2.25e-4 + 0 = 2e-4
    sharpe = 0.0125 / math.sqrt(8.75e-4 / 3)
    benchmark = 0.01 / math.sqrt(2e-4 / 3)
    rho = 2e-4 / math.sqrt(8.75e-4 * 2e-4)
    theta = (2 - 2 * rho + (sharpe**2 + benchmark**2 - 2 * sharpe * benchmark * rho**2) / 2) / 4
    result = sharpe_difference_test(agent, hold)
    assert result["correlation"] == pytest.approx(rho, rel=1e-12)
    assert result["correlation"] == pytest.approx(0.47809144373375745, rel=1e-12)
    assert (result["sharpe_per_period"], result["benchmark_sharpe_per_period"]) == pytest.approx(
        (sharpe, benchmark), rel=1e-12)
    assert result["z"] == pytest.approx((sharpe - benchmark) / math.sqrt(theta), rel=1e-12)
    assert result["p_above_benchmark"] == pytest.approx(PHI(result["z"]), rel=1e-12)
    assert result["z"] < 0  # the agent's Sharpe 0.73 is below buy-and-hold's 1.22
    with pytest.raises(ValueError, match="same periods"):
        sharpe_difference_test(agent, hold[:3])
    # a constant benchmark (flat): rho = 0, its Sharpe 0
    flat = sharpe_difference_test(agent, [0.0] * 4)
    assert flat["correlation"] == 0.0
    assert flat["z"] == pytest.approx(sharpe / math.sqrt((2 + sharpe**2 / 2) / 4), rel=1e-12)
