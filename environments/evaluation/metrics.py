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

PERIODS_PER_YEAR = 252  # trading days: daily bars without weekends
TRADING_DAYS = 252  # a year of exchange sessions
WEEKDAYS = 260  # 52 weeks x 5 days: markets open around the clock on weekdays (24x5, e.g. FX)
CALENDAR_DAYS = 365  # markets that never close (24x7, e.g. crypto)
_DAY_S = 86400.0


def infer_periods_per_year(timestamps: np.ndarray) -> tuple[float, str]:
    """(periods per year, how it was decided) from the bar spacing and calendar of `timestamps`.

    Daily bars: 252 trading days, or 365 when weekends hold bars. Intraday bars: 24x7
    (365 days of 24 h) when weekends hold bars, 24x5 (260 weekdays of 24 h) when a weekday
    holds about a full day of bars, else an exchange session: the median bars per day x 252.
    Weekly or slower bars: 365.25 days / spacing.
    """
    stamps = np.asarray(timestamps, dtype="datetime64[ns]")
    if len(stamps) < 3:
        return float(PERIODS_PER_YEAR), f"{PERIODS_PER_YEAR} (too few bars to infer: daily assumed)"
    spacing_s = float(np.median(np.diff(stamps).astype(np.float64))) / 1e9
    days = stamps.astype("datetime64[D]").astype(np.int64)
    weekend = ((days + 3) % 7) >= 5  # 1970-01-01 was a Thursday; Monday = 0
    has_weekends = weekend.mean() > 0.1
    if spacing_s >= 5 * _DAY_S:
        periods = 365.25 * _DAY_S / spacing_s
        return periods, f"{periods:.1f} (bars every {spacing_s / _DAY_S:.1f} days)"
    if spacing_s >= 0.5 * _DAY_S:
        if has_weekends:
            return float(CALENDAR_DAYS), f"{CALENDAR_DAYS} (daily bars on every calendar day, 24x7)"
        return float(TRADING_DAYS), f"{TRADING_DAYS} (daily bars on trading days)"
    bars_per_24h = _DAY_S / spacing_s
    if has_weekends:
        return CALENDAR_DAYS * bars_per_24h, (
            f"{CALENDAR_DAYS * bars_per_24h:.0f} ({bars_per_24h:.0f} bars a day, 24x7)")
    _, per_day = np.unique(days, return_counts=True)
    bars_per_day = float(np.median(per_day))
    if bars_per_day >= 0.8 * bars_per_24h:
        return WEEKDAYS * bars_per_24h, (
            f"{WEEKDAYS * bars_per_24h:.0f} ({bars_per_24h:.0f} bars a day, 24x5: {WEEKDAYS} weekdays)")
    return TRADING_DAYS * bars_per_day, (
        f"{TRADING_DAYS * bars_per_day:.0f} ({bars_per_day:.0f} bars per session x "
        f"{TRADING_DAYS} trading days)")


def step_returns(portfolio_values: np.ndarray) -> np.ndarray:
    """float64 [N]: each step's return V_{t+1} / V_t - 1 of values [N + 1]; 0 after a bankruptcy
    (V_t = 0)."""
    values = np.asarray(portfolio_values, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(values[:-1] > 0, values[1:] / values[:-1] - 1.0, 0.0)


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
    returns = step_returns(values)  # [N]
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


def _check_eval_env(env) -> None:
    trading_env = env.unwrapped
    if getattr(trading_env, "mode", None) != "eval":
        raise ValueError("run_episode needs a TradingEnv with mode='eval' (it walks the whole "
                         f"split once); got mode={getattr(trading_env, 'mode', None)!r}")


def run_episode(env, policy: Callable[[np.ndarray], int], seed: int | None = None,
                periods_per_year: float | None = None) -> dict:
    """Walks an eval-mode TradingEnv once with `policy(obs) -> action`.

    Returns arrays portfolio_values [N + 1], positions [N], rewards [N], costs [N],
    traded [N], timestamps [N + 1] (bar of each value), the trading_metrics both at the top
    level and under "metrics", and periods_per_year (inferred from the market's timestamps
    when not given, see infer_periods_per_year) with its reason under "annualization".
    """
    return run_episodes([env], lambda obs: np.array([policy(obs[0])]), seed, periods_per_year)[0]


def run_episodes(envs: Sequence, policy: Callable[[np.ndarray], np.ndarray],
                 seed: int | None = None, periods_per_year: float | None = None) -> list[dict]:
    """Walks eval-mode TradingEnvs (one per market) once each, in lockstep, with one batched
    call `policy(obs [len(envs), ...]) -> actions [len(envs)]` per step; an env that finished
    keeps showing its last observation and its action is ignored. Returns run_episode's
    result for each env, in order."""
    for env in envs:
        _check_eval_env(env)
    observations, records = [], []
    for env in envs:
        obs, info = env.reset(seed=seed)
        observations.append(obs)
        records.append({"values": [info["portfolio_value"]], "steps": [info["step_index"]],
                        "positions": [], "rewards": [], "costs": [], "traded": []})
    running = [True] * len(envs)
    while any(running):
        actions = np.asarray(policy(np.stack(observations)))  # [len(envs)]
        for i, env in enumerate(envs):
            if not running[i]:
                continue
            obs, reward, terminated, truncated, info = env.step(int(actions[i]))
            observations[i] = obs
            running[i] = not (terminated or truncated)
            record = records[i]
            record["values"].append(info["portfolio_value"])
            record["steps"].append(info["step_index"])
            record["positions"].append(info["position"])
            record["rewards"].append(reward)
            record["costs"].append(info["cost"])
            record["traded"].append(info["traded"])
    results = []
    for env, record in zip(envs, records):
        timestamps = env.unwrapped.market.timestamps
        if periods_per_year is None:
            periods, reason = infer_periods_per_year(timestamps)
        else:
            periods, reason = float(periods_per_year), f"{periods_per_year:g} (given)"
        metrics = trading_metrics(record["values"], record["positions"], periods)
        result = {
            "portfolio_values": np.asarray(record["values"]),
            "positions": np.asarray(record["positions"]), "rewards": np.asarray(record["rewards"]),
            "costs": np.asarray(record["costs"]), "traded": np.asarray(record["traded"], dtype=bool),
            "timestamps": timestamps[np.asarray(record["steps"])], "metrics": metrics,
            "periods_per_year": periods, "annualization": reason,
        }
        result.update(metrics)
        results.append(result)
    return results


def median_metrics(results: Sequence[Mapping]) -> dict:
    """The median over markets of every trading metric of `results` (run_episode results)."""
    if not results:
        raise ValueError("median_metrics needs at least one result")
    return {key: float(np.median([r["metrics"][key] for r in results]))
            for key in results[0]["metrics"]}


def _constant_position_policy(env, position: float, name: str) -> Callable:
    positions = list(env.unwrapped.positions)
    if position not in positions:
        raise ValueError(f"the {name} baseline needs position {position} among the env's "
                         f"positions {positions}")
    action = positions.index(position)
    return lambda obs: action


def buy_and_hold(env, periods_per_year: float | None = None) -> dict:
    """run_episode holding +1 throughout (same split, same costs as the agent)."""
    return run_episode(env, _constant_position_policy(env, 1.0, "buy-and-hold"),
                       periods_per_year=periods_per_year)


def flat(env, periods_per_year: float | None = None) -> dict:
    """run_episode holding no position (portfolio value stays at its start)."""
    return run_episode(env, _constant_position_policy(env, 0.0, "flat"),
                       periods_per_year=periods_per_year)


def evaluate_with_baselines(env, policy: Callable[[np.ndarray], int],
                            periods_per_year: float | None = None,
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
