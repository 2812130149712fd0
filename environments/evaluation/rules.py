"""The rules a practitioner tries first, traded like the agent (same TradingEnv, costs and
positions, through run_episode: no second accounting): buy-and-hold, flat, random (seeded),
time-series momentum and a moving-average crossover with their parameters chosen by Sharpe on a
fold's training part, and on the OU process the mean-reversion rule that knows the generator.

A rule is a causal target series over a whole market: targets[t] is decided at the close of
bar t from close[0..t] only, and is traded at the nearest of the env's positions.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import numpy as np

from environments.data.market import MarketData
from environments.evaluation.metrics import run_episode

# Lookbacks in bars (a week, two weeks, a month, a quarter, half a year, a year of daily bars)
MOMENTUM_LOOKBACKS = (5, 10, 21, 63, 126, 252)
CROSSOVERS = ((5, 20), (10, 50), (20, 100), (50, 200))  # (fast, slow) moving averages
OU_DEFAULTS = dict(mean_reversion=0.05, volatility=0.01, mean_price=100.0)  # ou_market's

Rule = Callable[[MarketData], np.ndarray]  # market -> float64 [T] target positions


def constant(position: float) -> Rule:
    """Holds `position` throughout: 1.0 is buy-and-hold, 0.0 is flat."""
    return lambda market: np.full(len(market), float(position))


def random_rule(seed: int, positions: Sequence[float] = (-1.0, 0.0, 1.0)) -> Rule:
    """A uniformly random position at every bar, the same for a seed and a market length."""
    levels = np.asarray(positions, dtype=np.float64)
    return lambda market: np.random.default_rng(seed).choice(levels, size=len(market))


def momentum(lookback: int) -> Rule:
    """Time-series momentum: the sign of the trailing return close[t] / close[t - lookback] - 1
    (long after a rise, short after a fall); flat for the first `lookback` bars."""
    if not (isinstance(lookback, int) and lookback >= 1):
        raise ValueError(f"lookback={lookback!r}: expected an integer >= 1")

    def targets(market: MarketData) -> np.ndarray:
        close = market.close
        result = np.zeros(len(close))
        result[lookback:] = np.sign(close[lookback:] / close[:-lookback] - 1.0)
        return result

    return targets


def moving_average_crossover(fast: int, slow: int) -> Rule:
    """Long while the `fast`-bar simple moving average of the close is above the `slow`-bar one,
    short while below; flat for the first slow - 1 bars (the slow average needs `slow` bars)."""
    if not (isinstance(fast, int) and isinstance(slow, int) and 1 <= fast < slow):
        raise ValueError(f"fast={fast!r}, slow={slow!r}: expected integers 1 <= fast < slow")

    def targets(market: MarketData) -> np.ndarray:
        sums = np.concatenate([[0.0], np.cumsum(market.close)])  # [T + 1]
        t = np.arange(slow - 1, len(market))  # bars where both averages exist
        fast_mean = (sums[t + 1] - sums[t + 1 - fast]) / fast
        slow_mean = (sums[t + 1] - sums[t + 1 - slow]) / slow
        result = np.zeros(len(market))
        result[slow - 1:] = np.sign(fast_mean - slow_mean)
        return result

    return targets


def ou_mean_reversion(threshold: float = 0.5, mean_reversion: float = OU_DEFAULTS[
        "mean_reversion"], volatility: float = OU_DEFAULTS["volatility"],
        mean_price: float = OU_DEFAULTS["mean_price"]) -> Rule:
    """The oracle on the OU process (it knows the generator's parameters, environments.data.synthetic
    .ou_market): z = (log close - log mean) / stationary std; long below -threshold, short above
    +threshold, flat between. The rule benchmarks/runs.py's mean_reversion_rule plays."""
    stationary_std = volatility / math.sqrt(1.0 - (1.0 - mean_reversion) ** 2)

    def targets(market: MarketData) -> np.ndarray:
        z = (np.log(market.close) - math.log(mean_price)) / stationary_std  # [T]
        return np.where(z < -threshold, 1.0, np.where(z > threshold, -1.0, 0.0))

    return targets


def _offset_in(history: MarketData, market: MarketData) -> int:
    """Where `market`'s rows start in `history` (the market they were cut from)."""
    offset = int(np.searchsorted(history.timestamps, market.timestamps[0]))
    end = offset + len(market)
    if end > len(history) or not (
            np.array_equal(history.timestamps[offset:end], market.timestamps)
            and np.array_equal(history.close[offset:end], market.close)):
        raise ValueError(f"{market.source} is not a run of rows of {history.source}")
    return offset


def run_rule(env, rule: Rule, history: MarketData | None = None,
             periods_per_year: float | None = None) -> dict:
    """run_episode on an eval-mode TradingEnv with the rule's targets, each traded at the
    nearest of the env's positions (on a tie the one nearer 0, then the lower). With
    `history`, the market the env's rows were cut from, the rule sees the bars before them
    too (as features do)."""
    trading_env = env.unwrapped
    market = trading_env.market
    source = market if history is None else history
    offset = 0 if history is None else _offset_in(history, market)
    targets = np.asarray(rule(source), dtype=np.float64)  # [T of source]
    if targets.shape != (len(source),):
        raise ValueError(f"a rule must give one target per bar ({len(source)}), got shape "
                         f"{targets.shape}")
    levels = np.asarray(trading_env.positions)  # [K]
    order = np.lexsort((levels, np.abs(levels)))  # ties: the smaller |level|, then the lower
    distance = np.abs(targets[:, None] - levels[order][None, :])  # [T, K]
    actions = order[np.argmin(distance, axis=1)]  # [T]: the first nearest in that order
    first_bar = int(trading_env.setup.offsets[0])  # 0: an eval env walks one market

    def policy(obs: np.ndarray) -> int:
        return int(actions[offset + trading_env.step_index - first_bar])

    return run_episode(env, policy, periods_per_year=periods_per_year)


def select_by_sharpe(env, candidates: Mapping[str, Rule], history: MarketData | None = None,
                     periods_per_year: float | None = None) -> tuple[str, dict[str, float]]:
    """(name of the candidate with the highest Sharpe on `env`'s part, every candidate's
    Sharpe); ties go to the first in `candidates`' order."""
    sharpes = {name: run_rule(env, rule, history, periods_per_year)["sharpe"]
               for name, rule in candidates.items()}
    best = max(sharpes, key=lambda name: (sharpes[name], -list(sharpes).index(name)))
    return best, sharpes


def momentum_candidates(lookbacks: Sequence[int] = MOMENTUM_LOOKBACKS) -> dict[str, Rule]:
    return {f"momentum(lookback={lookback})": momentum(lookback) for lookback in lookbacks}


def crossover_candidates(pairs: Sequence[tuple[int, int]] = CROSSOVERS) -> dict[str, Rule]:
    return {f"ma_crossover(fast={fast},slow={slow})": moving_average_crossover(fast, slow)
            for fast, slow in pairs}


def baselines(train_env, test_env, history: MarketData | None = None, seed: int = 0,
              oracle: bool = False, periods_per_year: float | None = None) -> dict[str, dict]:
    """Every baseline's run_episode result on `test_env` ({name: result}, each with "rule":
    the chosen parameters, and "training_sharpes": every candidate's Sharpe on training, {} for
    a rule without parameters): buy_and_hold, flat, random (seeded), momentum and ma_crossover
    with their parameters chosen by Sharpe on `train_env` (an eval-mode env of the fold's
    training part), and ou_mean_reversion when `oracle`. `history`: the whole market both
    envs' rows were cut from."""
    positions = tuple(test_env.unwrapped.positions)
    rules: dict[str, tuple[str, Rule]] = {
        "buy_and_hold": ("constant(1)", constant(1.0)),
        "flat": ("constant(0)", constant(0.0)),
        "random": (f"random(seed={seed})", random_rule(seed, positions)),
    }
    training_sharpes = {}
    for name, candidates in (("momentum", momentum_candidates()),
                             ("ma_crossover", crossover_candidates())):
        chosen, training_sharpes[name] = select_by_sharpe(train_env, candidates, history,
                                                          periods_per_year)
        rules[name] = (chosen, candidates[chosen])
    if oracle:
        rules["ou_mean_reversion"] = ("ou_mean_reversion(threshold=0.5)", ou_mean_reversion())
    results = {}
    for name, (description, rule) in rules.items():
        results[name] = run_rule(test_env, rule, history, periods_per_year)
        results[name]["rule"] = description
        results[name]["training_sharpes"] = training_sharpes.get(name, {})
    return results
