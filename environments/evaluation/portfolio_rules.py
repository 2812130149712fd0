"""A portfolio's metrics, and the baselines an agent trading a panel is judged against, on the
same bars and costs as its env (environments.envs.accounting.rebalance, from bar `window` to the
last, as PortfolioEnv walks in mode "eval").

Each rule is a matrix of position levels [T, N] (what the env's actions choose, +1 long, or
any real level: weights are levels / instruments holdable at the bar), walked by `walk_levels`:
    equal_weight         all +1: the equally weighted portfolio rebalanced every bar (1/N,
                         DeMiguel, Garlappi and Uppal 2009)
    ts_momentum          sign of each instrument's own trailing return (time-series momentum)
    xs_momentum          long the top, short the bottom `fraction` of trailing returns
                         (cross-sectional momentum)
    minimum_variance     the long-only minimum-variance weights w ~ inv(cov) 1 of the
                         training part's step returns, held every bar
    random_levels        a uniformly random position of the env's list per instrument and bar
    oracle               the synthetic panel's (environments.data.synthetic_panel)
and `basket_buy_and_hold`: 1/N bought at the first bar and left to drift (costs once).
"""

from __future__ import annotations

import numpy as np

from environments.data.panel import PanelData
from environments.envs.accounting import rebalance
from environments.envs.config import EnvConfig
from environments.evaluation.metrics import infer_periods_per_year, trading_metrics


def portfolio_metrics(values: np.ndarray, weights: np.ndarray, periods_per_year: float) -> dict:
    """trading_metrics of a portfolio walk (values [L + 1], weights [L, N]); its turnover is the
    mean of sum_i |w_i(t) - w_i(t - 1)| per bar and `exposure` the mean of sum_i |w_i|."""
    weights = np.asarray(weights, np.float64)
    exposure = np.abs(weights).sum(axis=1)
    metrics = trading_metrics(values, exposure, periods_per_year)
    changes = np.abs(np.diff(weights, axis=0, prepend=np.zeros((1, weights.shape[1])))).sum(axis=1)
    metrics.update(turnover=float(changes.mean()), exposure=float(exposure.mean()))
    return metrics


def walk_levels(panel: PanelData, levels: np.ndarray, config: EnvConfig,
                periods_per_year: float | None = None) -> dict:
    """The env's eval walk of `panel` holding `levels` [T, N] (level at bar t held to t + 1):
    run_episode's result keys (portfolio_values [L + 1], weights [L, N], timestamps, metrics at
    the top level and under "metrics", periods_per_year, annualization)."""
    levels = np.asarray(levels, np.float64)
    if levels.shape != panel.close.shape:
        raise ValueError(f"{panel.source}: levels have shape {levels.shape}, expected "
                         f"{panel.close.shape} [bars, instruments]")
    bars = slice(config.window, len(panel) - 1)
    can_hold, returns = panel.can_hold[bars], panel.step_returns[bars]
    step_levels = np.where(can_hold, levels[bars], 0.0)
    args = (can_hold, returns, config.trade_cost_rate, config.borrow_rate, np)
    weights = rebalance(1.0, np.zeros_like(step_levels), step_levels, *args)[4]  # [L, N]
    before = np.concatenate([np.zeros((1, weights.shape[1])), weights[:-1]])
    growth = rebalance(1.0, before, step_levels, *args)[1]  # [L]: V(t + 1) / V(t), 0 when bankrupt
    values = config.initial_value * np.concatenate([[1.0], np.cumprod(growth)])
    return walk_result(panel, values, weights, periods_per_year)


def walk_result(panel: PanelData, values: np.ndarray, weights: np.ndarray,
                periods_per_year: float | None) -> dict:
    """run_episode's result of a walk of `panel` (values [L + 1], weights [L, N]) ending at its
    last bar: the arrays, their timestamps, the metrics, the annualization and the count of
    forced closes (held positions closed because their instrument lost its next bar)."""
    if periods_per_year is None:
        periods_per_year, annualization = infer_periods_per_year(panel.timestamps)
    else:
        annualization = f"{periods_per_year:g} periods per year (given)"
    first = len(panel) - 1 - len(weights)
    metrics = portfolio_metrics(values, weights, periods_per_year)
    # A forced close at step k: a weight held into bar first + k that cannot be held from it.
    lost = ~panel.can_hold[first + 1:first + len(weights)]
    forced_closes = int(np.sum((weights[:-1] != 0) & lost))
    return {"portfolio_values": values, "weights": weights, "positions": np.abs(weights).sum(axis=1),
            "timestamps": panel.timestamps[first:first + len(values)], "metrics": metrics,
            "periods_per_year": periods_per_year, "annualization": annualization,
            "forced_closes": forced_closes, **metrics}


def equal_weight(panel: PanelData) -> np.ndarray:
    return np.ones(panel.close.shape)


def trailing_returns(panel: PanelData, lookback: int) -> np.ndarray:
    """float64 [T, N]: log(close_t / close_{t - lookback}) where both bars exist, else NaN."""
    log_close = np.log(panel.close)
    past = np.full_like(log_close, np.nan)
    past[lookback:] = log_close[:-lookback]
    return log_close - past


def ts_momentum(panel: PanelData, lookback: int = 20) -> np.ndarray:
    return np.nan_to_num(np.sign(trailing_returns(panel, lookback)))


def xs_momentum(panel: PanelData, lookback: int = 20, fraction: float = 0.3) -> np.ndarray:
    """+1 for the top `fraction` of each bar's trailing returns, -1 for the bottom, 0 between
    (instruments without a trailing return are left out of the ranking)."""
    past = trailing_returns(panel, lookback)
    levels = np.zeros(past.shape)
    for t, row in enumerate(past):
        known = np.flatnonzero(~np.isnan(row))
        count = int(len(known) * fraction)
        if count:
            order = known[np.argsort(row[known])]
            levels[t, order[-count:]], levels[t, order[:count]] = 1.0, -1.0
    return levels


def minimum_variance(panel: PanelData, train: PanelData, shrinkage: float = 0.1) -> np.ndarray:
    """The minimum-variance weights w ~ inv(S) 1 of `train`'s step returns (S shrunk towards
    its diagonal by `shrinkage`), long-only (negative weights clipped), held at every bar of
    `panel` as levels (w * N: the env divides levels by the holdable count)."""
    returns = np.where(train.can_hold, train.step_returns, np.nan)[:-1]
    if panel.names != train.names:
        raise ValueError(f"{panel.source}: instruments {panel.names} differ from the training "
                         f"part's {train.names}")
    covariance = np.ma.cov(np.ma.masked_invalid(returns), rowvar=False).filled(0.0)
    covariance = (1 - shrinkage) * covariance + shrinkage * np.diag(np.diag(covariance))
    weights = np.linalg.solve(covariance + 1e-12 * np.eye(len(covariance)), np.ones(len(covariance)))
    weights = np.clip(weights, 0.0, None)
    weights /= weights.sum()
    return np.broadcast_to(weights * panel.num_instruments, panel.close.shape).copy()


def random_levels(panel: PanelData, config: EnvConfig, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.asarray(config.positions)[rng.integers(0, len(config.positions), panel.close.shape)]


def basket_buy_and_hold(panel: PanelData, config: EnvConfig,
                        periods_per_year: float | None = None) -> dict:
    """1/N of the instruments that can be held at bar `window`, bought there (paying costs)
    and left to drift; an instrument that loses its next bar is sold into cash (paying costs)."""
    bars = slice(config.window, len(panel))
    close, can_hold = panel.close[bars], panel.can_hold[bars]
    held = can_hold[0] / max(can_hold[0].sum(), 1)  # weights at the start
    cost = (held * config.trade_cost_rate).sum()
    shares = np.where(can_hold[0], held * (1 - cost) / np.where(can_hold[0], close[0], 1.0), 0.0)
    values = np.empty(len(close))
    weights = np.zeros((len(close) - 1, panel.num_instruments))
    balance, traded = 0.0, held.sum()  # traded: weight bought or sold, as a fraction of V
    for t in range(len(close)):
        prices = np.where(np.isnan(close[t]), 0.0, close[t])
        worth = shares * prices
        values[t] = balance + worth.sum()
        if t < len(close) - 1:
            sold = (shares > 0) & ~can_hold[t]  # its next bar is missing: sold at this bar's price
            balance += (worth[sold] * (1 - config.trade_cost_rate)).sum()
            traded += worth[sold].sum() / max(values[t], 1e-300)
            shares = np.where(sold, 0.0, shares)
            weights[t] = shares * prices / max(values[t], 1e-300)
    result = walk_result(panel, config.initial_value * values, weights, periods_per_year)
    result["turnover"] = result["metrics"]["turnover"] = float(traded / len(weights))  # not drift
    return result
