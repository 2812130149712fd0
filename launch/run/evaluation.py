"""The record of one evaluation, whichever driver made it: the agent's median trading metrics
over the markets of a part (validation or test) next to buy-and-hold and flat on the same
markets, the records of S members (seeds) merged into one, and the equity plot."""

from __future__ import annotations

from typing import Any

import numpy as np

# Kept for every member in a record of several members (the rest is their median).
BY_SEED = ("sharpe", "total_return", "best_sharpe", "best_learner_steps", "test_sharpe",
           "test_total_return", "policy", "sharpe_by_market")


def baselines(envs: list[Any], periods_per_year: float | None) -> dict[str, list[dict]]:
    """Buy-and-hold and flat on each of `envs` (eval-mode TradingEnvs), the same costs as
    the agent's: run_episode results under "buy_and_hold" and "flat"."""
    from environments import buy_and_hold, flat

    return {"buy_and_hold": [buy_and_hold(env, periods_per_year) for env in envs],
            "flat": [flat(env, periods_per_year) for env in envs]}


def evaluation_record(results: list[dict], references: dict[str, list[dict]]) -> dict[str, Any]:
    """An evaluation's record from the agent's run_episode results on M markets and the
    baselines' on the same markets: the median metrics (what selection and the test read),
    and the results themselves under "_results" (for plots; never logged)."""
    from environments import median_metrics

    agent, hold = median_metrics(results), median_metrics(references["buy_and_hold"])
    flat = median_metrics(references["flat"])
    record = {name: agent[name] for name in (
        "total_return", "annualized_return", "sharpe", "sortino", "max_drawdown",
        "turnover", "hit_rate")}
    record.update(
        buy_and_hold_return=hold["total_return"], buy_and_hold_sharpe=hold["sharpe"],
        buy_and_hold_max_drawdown=hold["max_drawdown"],
        flat_return=flat["total_return"], flat_sharpe=flat["sharpe"],
        num_markets=len(results), sharpe_by_market=[r["sharpe"] for r in results],
        periods_per_year=results[0]["periods_per_year"],
        annualization=results[0]["annualization"],
        years=float(np.median([(len(r["portfolio_values"]) - 1) / r["periods_per_year"]
                               for r in results])),  # the median market's span
        _results=results,
    )
    if "equal_weight" in references:  # a portfolio's 1/N (launch/run/portfolio_evaluation.py)
        equal = median_metrics(references["equal_weight"])
        record.update(equal_weight_sharpe=equal["sharpe"], equal_weight_return=equal["total_return"])
    if "exposure" in results[0]:  # a portfolio's mean gross exposure sum |w|
        record["exposure"] = float(np.median([r["exposure"] for r in results]))
    if "forced_closes" in results[0]:  # a portfolio's positions closed by a missing next bar
        record["forced_closes"] = int(sum(r["forced_closes"] for r in results))
    return record


def loggable(record: dict[str, Any]) -> dict[str, Any]:
    """The record without its private ("_") entries."""
    return {key: value for key, value in record.items() if not key.startswith("_")}


def median_record(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One record for S members: the median of each number (over the members that have one:
    a flat member has no learner step), each member's value of BY_SEED's keys (as
    `<key>_by_seed`), the rest as member 0 has it."""
    if len(records) == 1:
        return loggable(records[0])
    merged = {}
    for key, value in loggable(records[0]).items():
        values = [r.get(key) for r in records]
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if not numbers or isinstance(value, bool):
            merged[key] = value
        else:
            merged[key] = numbers[0] if len(set(numbers)) == 1 else float(np.median(numbers))
    for key in BY_SEED:
        if key in records[0]:
            merged[f"{key}_by_seed"] = [r[key] for r in records]
    return merged


def plot(path: str, part: str, envs: list[Any], records: list[dict[str, Any]],
         references: dict[str, list[dict]]) -> str:
    """The equity curves on the first market of `envs`: each member's agent, buy-and-hold and
    flat, in `path`."""
    from environments import plot_equity

    if len(records) == 1:
        curves = {"agent": records[0]["_results"][0]["portfolio_values"]}
    else:
        curves = {f"agent (seed {s})": r["_results"][0]["portfolio_values"]
                  for s, r in enumerate(records)}
    curves.update(buy_and_hold=references["buy_and_hold"][0]["portfolio_values"],
                  flat=references["flat"][0]["portfolio_values"])
    suffix = f" (market 1 of {len(envs)})" if len(envs) > 1 else ""
    plot_equity(path, curves, timestamps=references["buy_and_hold"][0]["timestamps"],
                title=f"{part.capitalize()} equity on {envs[0].market.source}{suffix}")
    return path
