"""Trading metrics for an evaluation episode, the buy-and-hold and flat baselines on the same
split, and an equity-curve plot (PNG).

Per-step returns are r_i = V_{i+1} / V_i - 1 from portfolio values V_0..V_N (net of costs).
    total_return      = V_N / V_0 - 1
    annualized_return = (V_N / V_0) ** (periods_per_year / N) - 1
    sharpe            = mean(r) / std(r, ddof=1) * sqrt(periods_per_year)        (0 if std is 0)
    sortino           = mean(r) / sqrt(mean(min(r, 0)^2)) * sqrt(periods_per_year)
                        (inf if mean(r) > 0 without a losing step, 0 if mean(r) <= 0 without one)
    max_drawdown      = max_i (1 - V_i / max_{j<=i} V_j), a positive fraction
    turnover          = mean_i |p_i - p_{i-1}| with p_{-1} = 0: traded notional per step
    hit_rate          = fraction of steps with a non-zero position whose r_i > 0 (0 if none)
"""

from __future__ import annotations

import math
import os
from typing import Callable, Mapping, Sequence

import numpy as np

PERIODS_PER_YEAR = 252  # trading days: the default for daily bars


def trading_metrics(portfolio_values: Sequence[float], positions: Sequence[float],
                    periods_per_year: float = PERIODS_PER_YEAR) -> dict:
    """Metrics of one episode. `portfolio_values` [N + 1] includes the starting value;
    `positions` [N] is the position held during each step."""
    values = np.asarray(portfolio_values, dtype=np.float64)
    positions = np.asarray(positions, dtype=np.float64)
    num_steps = len(values) - 1
    if values.ndim != 1 or num_steps < 1:
        raise ValueError(f"portfolio_values needs at least 2 values, got shape {values.shape}")
    if positions.shape != (num_steps,):
        raise ValueError(f"positions must have one entry per step ({num_steps}), got shape "
                         f"{positions.shape}")
    if not (values[0] > 0 and np.isfinite(values).all() and (values >= 0).all()):
        raise ValueError("portfolio_values must be finite, >= 0 and start > 0")
    if periods_per_year <= 0:
        raise ValueError(f"periods_per_year must be > 0, got {periods_per_year}")
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = np.where(values[:-1] > 0, values[1:] / values[:-1] - 1.0, 0.0)  # [N]
    growth = values[-1] / values[0]
    mean = returns.mean()
    std = returns.std(ddof=1) if num_steps > 1 else 0.0
    downside = math.sqrt(np.mean(np.minimum(returns, 0.0) ** 2))
    if downside > 0:
        sortino = mean / downside * math.sqrt(periods_per_year)
    else:
        sortino = math.inf if mean > 0 else 0.0
    peaks = np.maximum.accumulate(values)
    active = positions != 0
    return {
        "total_return": float(growth - 1.0),
        "annualized_return": float(growth ** (periods_per_year / num_steps) - 1.0),
        "sharpe": float(mean / std * math.sqrt(periods_per_year)) if std > 0 else 0.0,
        "sortino": float(sortino),
        "max_drawdown": float(np.max(1.0 - values / peaks)),
        "turnover": float(np.abs(np.diff(positions, prepend=0.0)).mean()),
        "hit_rate": float(np.mean(returns[active] > 0)) if active.any() else 0.0,
        "num_steps": int(num_steps),
        "final_value": float(values[-1]),
    }


def run_episode(env, policy: Callable[[np.ndarray], int], seed: int | None = None,
                periods_per_year: float = PERIODS_PER_YEAR) -> dict:
    """Walks an eval-mode TradingEnv once with `policy(obs) -> action`.

    Returns arrays portfolio_values [N + 1], positions [N], rewards [N], costs [N],
    traded [N], timestamps [N + 1] (bar of each value) and the trading_metrics, both at the
    top level and under "metrics".
    """
    trading_env = env.unwrapped
    if getattr(trading_env, "mode", None) != "eval":
        raise ValueError("run_episode needs a TradingEnv with mode='eval' (it walks the whole "
                         f"split once); got mode={getattr(trading_env, 'mode', None)!r}")
    obs, info = env.reset(seed=seed)
    values, steps = [info["portfolio_value"]], [info["step_index"]]
    positions, rewards, costs, traded = [], [], [], []
    done = False
    while not done:
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        done = terminated or truncated
        values.append(info["portfolio_value"])
        steps.append(info["step_index"])
        positions.append(info["position"])
        rewards.append(reward)
        costs.append(info["cost"])
        traded.append(info["traded"])
    metrics = trading_metrics(values, positions, periods_per_year)
    result = {
        "portfolio_values": np.asarray(values), "positions": np.asarray(positions),
        "rewards": np.asarray(rewards), "costs": np.asarray(costs),
        "traded": np.asarray(traded, dtype=bool),
        "timestamps": trading_env.market.timestamps[np.asarray(steps)],
        "metrics": metrics,
    }
    result.update(metrics)
    return result


def _constant_position_policy(env, position: float, name: str) -> Callable:
    positions = list(env.unwrapped.positions)
    if position not in positions:
        raise ValueError(f"the {name} baseline needs position {position} among the env's "
                         f"positions {positions}")
    action = positions.index(position)
    return lambda obs: action


def buy_and_hold(env, periods_per_year: float = PERIODS_PER_YEAR) -> dict:
    """run_episode holding +1 throughout (same split, same costs as the agent)."""
    return run_episode(env, _constant_position_policy(env, 1.0, "buy-and-hold"),
                       periods_per_year=periods_per_year)


def flat(env, periods_per_year: float = PERIODS_PER_YEAR) -> dict:
    """run_episode holding no position (portfolio value stays at its start)."""
    return run_episode(env, _constant_position_policy(env, 0.0, "flat"),
                       periods_per_year=periods_per_year)


def evaluate_with_baselines(env, policy: Callable[[np.ndarray], int],
                            periods_per_year: float = PERIODS_PER_YEAR,
                            plot_path: str | None = None) -> dict[str, dict]:
    """{"agent": ..., "buy_and_hold": ..., "flat": ...} run_episode results on `env`'s split;
    writes their equity curves to `plot_path` when given."""
    results = {"agent": run_episode(env, policy, periods_per_year=periods_per_year),
               "buy_and_hold": buy_and_hold(env, periods_per_year),
               "flat": flat(env, periods_per_year)}
    if plot_path is not None:
        plot_equity(plot_path, {name: r["portfolio_values"] for name, r in results.items()},
                    timestamps=results["agent"]["timestamps"],
                    title=f"Equity on {env.unwrapped.market.source}")
    return results


def plot_equity(path: str | os.PathLike, curves: Mapping[str, Sequence[float]],
                timestamps: np.ndarray | None = None, title: str = "Equity curve") -> str:
    """Writes a PNG with one line per named portfolio-value curve; returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # no pyplot: no global state
    from matplotlib.figure import Figure

    if not curves:
        raise ValueError("plot_equity needs at least one curve")
    figure = Figure(figsize=(9, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for name, values in curves.items():
        values = np.asarray(values, dtype=np.float64)
        if timestamps is not None and len(timestamps) != len(values):
            raise ValueError(f"curve {name!r} has {len(values)} values but there are "
                             f"{len(timestamps)} timestamps")
        x = np.arange(len(values)) if timestamps is None else np.asarray(timestamps)
        axes.plot(x, values, label=name, linewidth=1.2)
    axes.set_title(title)
    axes.set_xlabel("step" if timestamps is None else "time")
    axes.set_ylabel("portfolio value")
    axes.grid(alpha=0.3)
    axes.legend()
    if timestamps is not None:
        figure.autofmt_xdate()
    path = os.fspath(path)
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    figure.savefig(path, format="png")
    return path
