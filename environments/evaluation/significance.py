"""Whether a Sharpe ratio could be luck: the probabilistic Sharpe ratio (Bailey & López de Prado
2012, "The Sharpe Ratio Efficient Frontier") against zero, the deflated Sharpe ratio (Bailey &
López de Prado 2014) given how many trials were selected from, and whether it beats a
benchmark traded on the same periods (Jobson & Korkie 1981 with Memmel's 2003 correction).

Every Sharpe ratio here is per period and not annualized (divide an annualized one by
sqrt(periods per year)). Of n per-period returns r with mean m and standard deviation s:
    SR   = m / s                       (s with ddof=1, as environments.evaluation.metrics; 0 if s = 0)
    skew = E[(r - m)^3] / sigma^3,  kurt = E[(r - m)^4] / sigma^4   (population moments,
           sigma^2 = E[(r - m)^2]; kurt is 3 for normal returns, not the excess)
    PSR(SR*) = Phi((SR - SR*) sqrt(n - 1) / sqrt(1 - skew SR + (kurt - 1) / 4 SR^2))
    SR*_N = sqrt(V) ((1 - gamma) Phi^-1(1 - 1/N) + gamma Phi^-1(1 - 1/(N e)))
           the expected maximum Sharpe of N trials of true Sharpe 0 whose Sharpes have
           variance V (gamma: the Euler-Mascheroni constant); SR*_1 = 0 (nothing was selected)
    DSR  = PSR(SR*_N)
Against a benchmark b on the same n periods (Memmel 2003, "Performance hypothesis testing with
the Sharpe ratio"; rho: the correlation of the two return series, 0 when either is constant):
    theta = (2 - 2 rho + (SR^2 + SR_b^2 - 2 SR SR_b rho^2) / 2) / n
    z     = (SR - SR_b) / sqrt(theta),   P(SR > SR_b) = Phi(z)
so the benchmark's own estimation noise and the series' correlation are both counted (PSR
against SR_b would treat SR_b as a known constant).
"""

from __future__ import annotations

import math
import statistics
from typing import Sequence

import numpy as np

EULER_GAMMA = 0.5772156649015329
_NORMAL = statistics.NormalDist()


def return_moments(returns: Sequence[float]) -> tuple[float, float, float, int]:
    """(SR, skew, kurt, n) of per-period returns (module docstring); ValueError for fewer
    than 2 returns or non-finite ones."""
    values = np.asarray(returns, dtype=np.float64)
    if values.ndim != 1 or len(values) < 2 or not np.isfinite(values).all():
        raise ValueError(f"returns must be at least 2 finite numbers, got shape {values.shape}")
    deviations = values - values.mean()
    variance = float(np.mean(deviations**2))
    if variance == 0.0:  # constant returns: no risk taken, no evidence either way
        return 0.0, 0.0, 3.0, len(values)
    sharpe = float(values.mean() / values.std(ddof=1))
    skew = float(np.mean(deviations**3) / variance**1.5)
    kurt = float(np.mean(deviations**4) / variance**2)
    return sharpe, skew, kurt, len(values)


def psr_from_moments(sharpe: float, num_returns: int, skew: float = 0.0, kurt: float = 3.0,
                     benchmark_sharpe: float = 0.0) -> float:
    """PSR(benchmark_sharpe) of a per-period Sharpe estimated on `num_returns` returns."""
    if num_returns < 2:
        raise ValueError(f"num_returns={num_returns}: expected at least 2")
    variance_term = 1.0 - skew * sharpe + (kurt - 1.0) / 4.0 * sharpe**2
    if variance_term <= 0.0:  # >= (1 - skew SR / 2)^2 >= 0 for moments of real returns
        raise ValueError(f"skew={skew}, kurt={kurt} and sharpe={sharpe} give a non-positive "
                         "variance of the Sharpe estimate (kurt >= 1 + skew^2 for real returns)")
    z = (sharpe - benchmark_sharpe) * math.sqrt(num_returns - 1) / math.sqrt(variance_term)
    return _NORMAL.cdf(z)


def probabilistic_sharpe_ratio(returns: Sequence[float], benchmark_sharpe: float = 0.0) -> float:
    """The probability that the true per-period Sharpe of `returns` exceeds `benchmark_sharpe`."""
    sharpe, skew, kurt, n = return_moments(returns)
    return psr_from_moments(sharpe, n, skew, kurt, benchmark_sharpe)


def expected_max_sharpe(num_trials: int, trials_sharpe_variance: float) -> float:
    """SR*_N: the per-period Sharpe the best of `num_trials` luck-only trials is expected to
    reach, given the variance of the trials' per-period Sharpes."""
    if not (isinstance(num_trials, (int, np.integer)) and num_trials >= 1):
        raise ValueError(f"num_trials={num_trials!r}: expected an integer >= 1")
    if not (math.isfinite(trials_sharpe_variance) and trials_sharpe_variance >= 0):
        raise ValueError(f"trials_sharpe_variance={trials_sharpe_variance!r}: expected a "
                         "finite number >= 0")
    if num_trials == 1:
        return 0.0
    quantiles = ((1.0 - EULER_GAMMA) * _NORMAL.inv_cdf(1.0 - 1.0 / num_trials)
                 + EULER_GAMMA * _NORMAL.inv_cdf(1.0 - 1.0 / (num_trials * math.e)))
    return math.sqrt(trials_sharpe_variance) * quantiles


def deflated_sharpe_ratio(returns: Sequence[float], num_trials: int,
                          trials_sharpe_variance: float) -> float:
    """PSR of `returns` against the Sharpe the best of `num_trials` luck-only trials reaches."""
    return probabilistic_sharpe_ratio(
        returns, expected_max_sharpe(num_trials, trials_sharpe_variance))


def sharpe_difference_z(sharpe: float, benchmark_sharpe: float, correlation: float,
                        num_returns: int) -> float:
    """Jobson-Korkie-Memmel z of SR - SR_b, two per-period Sharpes measured on the same
    `num_returns` periods with return correlation `correlation` (module docstring)."""
    if num_returns < 2:
        raise ValueError(f"num_returns={num_returns}: expected at least 2")
    if not -1.0 <= correlation <= 1.0:
        raise ValueError(f"correlation={correlation}: expected a number in [-1, 1]")
    theta = (2.0 - 2.0 * correlation + 0.5 * (sharpe**2 + benchmark_sharpe**2
                                              - 2.0 * sharpe * benchmark_sharpe * correlation**2)
             ) / num_returns
    if theta <= 0.0:  # the same series (rho = 1, equal Sharpes): no difference to test
        return 0.0
    return (sharpe - benchmark_sharpe) / math.sqrt(theta)


def sharpe_difference_test(returns: Sequence[float], benchmark_returns: Sequence[float]) -> dict:
    """The paired test of `returns` against `benchmark_returns` on the same periods: each
    per-period Sharpe, their correlation, the Jobson-Korkie-Memmel z and P(SR > SR_b) = Phi(z)."""
    sharpe, _, _, n = return_moments(returns)
    benchmark, _, _, n_benchmark = return_moments(benchmark_returns)
    if n != n_benchmark:
        raise ValueError(f"the paired test needs returns on the same periods: {n} returns "
                         f"against {n_benchmark} of the benchmark")
    values = np.asarray(returns, dtype=np.float64)
    others = np.asarray(benchmark_returns, dtype=np.float64)
    spread = values.std() * others.std()
    correlation = 0.0 if spread == 0.0 else float(np.clip(
        np.mean((values - values.mean()) * (others - others.mean())) / spread, -1.0, 1.0))
    z = sharpe_difference_z(sharpe, benchmark, correlation, n)
    return {"sharpe_per_period": sharpe, "benchmark_sharpe_per_period": benchmark,
            "correlation": correlation, "z": z, "p_above_benchmark": _NORMAL.cdf(z)}


def significance(returns: Sequence[float], benchmark_returns: Sequence[float] | None = None,
                 num_trials: int = 1, trials_sharpe_variance: float = 0.0) -> dict:
    """Per-period Sharpe and its tests: psr_vs_zero, expected_max_sharpe, the deflated Sharpe
    ratio `dsr`, and against a benchmark on the same periods (e.g. buy-and-hold; None without
    one) `vs_benchmark` (sharpe_difference_test) and its `p_above_benchmark`."""
    sharpe, skew, kurt, n = return_moments(returns)
    threshold = expected_max_sharpe(num_trials, trials_sharpe_variance)
    paired = (None if benchmark_returns is None
              else sharpe_difference_test(returns, benchmark_returns))
    versus = {} if paired is None else paired
    return {
        "sharpe_per_period": sharpe, "skew": skew, "kurt": kurt, "num_returns": n,
        "psr_vs_zero": psr_from_moments(sharpe, n, skew, kurt, 0.0),
        "benchmark_sharpe_per_period": versus.get("benchmark_sharpe_per_period"),
        "vs_benchmark": paired, "p_above_benchmark": versus.get("p_above_benchmark"),
        "num_trials": int(num_trials), "trials_sharpe_variance": float(trials_sharpe_variance),
        "expected_max_sharpe": threshold,
        "dsr": psr_from_moments(sharpe, n, skew, kurt, threshold),
    }


def verdict(result: dict, level: float = 0.95) -> str:
    """One line: whether significance()'s `result` shows an edge distinguishable from luck."""
    dsr, versus = result["dsr"], result["p_above_benchmark"]
    trials = f"{result['num_trials']} trial{'s' if result['num_trials'] != 1 else ''}"
    if dsr < level:
        return (f"not distinguishable from luck: DSR {dsr:.2f} < {level:.2f} ({trials}; PSR vs 0 "
                f"{result['psr_vs_zero']:.2f})")
    if versus is not None and versus < level:
        return (f"an edge over zero beyond luck (DSR {dsr:.2f} >= {level:.2f}, {trials}), but not "
                f"over the benchmark: P(Sharpe > benchmark's) {versus:.2f} < {level:.2f} "
                "(Jobson-Korkie-Memmel)")
    against = "" if versus is None else f", P(Sharpe > benchmark's) {versus:.2f}"
    return f"distinguishable from luck: DSR {dsr:.2f} >= {level:.2f} ({trials}{against})"
