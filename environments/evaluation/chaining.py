"""One out-of-sample record from walk-forward folds: the folds' test episodes chained in time
order (per instrument for a universe), with per-fold and chained metrics, their significance,
and a PNG of chained equity curves (e.g. the agent against buy-and-hold).

Fold k's test episode has values V^k_0..V^k_{N_k}; the chained record starts at 1 and grows by
each fold's per-step growths, so it ends at prod_k V^k_{N_k} / V^k_0 and its per-step returns
are the folds' ones, in order. A fold's test ends at the bar where the next one starts.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np

from environments.evaluation.metrics import plot_equity, step_returns, trading_metrics
from environments.evaluation.significance import significance


def chain(results: Sequence[Mapping]) -> dict:
    """The chained record of test episodes given in time order (run_episode results, or dicts
    with portfolio_values [N+1], positions [N], timestamps [N+1], periods_per_year).

    Returns portfolio_values [sum N + 1] from 1.0, positions, returns (per step), timestamps,
    fold_growths, fold_metrics (each fold's trading_metrics), metrics (the chained record's)
    and periods_per_year. ValueError when a fold does not start where the previous one ended;
    after a bankrupt fold (value 0, its episode cut short) the record stays at 0.
    """
    if not results:
        raise ValueError("chain needs at least one fold's result")
    periods = {float(result["periods_per_year"]) for result in results}
    if len(periods) != 1:
        raise ValueError(f"the folds are annualized differently: {sorted(periods)} periods "
                         "per year")
    (periods_per_year,) = periods
    values, positions = [np.array([1.0])], []
    timestamps = [np.asarray(results[0]["timestamps"][:1])]
    growths, fold_metrics = [], []
    for index, result in enumerate(results):
        fold_values = np.asarray(result["portfolio_values"], dtype=np.float64)  # [N + 1]
        stamps = np.asarray(result["timestamps"])  # [N + 1]
        if index and stamps[0] != timestamps[-1][-1] and values[-1][-1] != 0.0:
            raise ValueError(f"fold {index}'s test starts at {stamps[0]}, but fold {index - 1}'s "
                             f"ended at {timestamps[-1][-1]}: the test periods must follow each "
                             "other without a gap")
        growth = fold_values / fold_values[0]  # [N + 1]
        values.append(values[-1][-1] * growth[1:])
        positions.append(np.asarray(result["positions"], dtype=np.float64))
        timestamps.append(stamps[1:])
        growths.append(float(growth[-1]))
        fold_metrics.append(trading_metrics(fold_values, result["positions"], periods_per_year))
    chained = np.concatenate(values)  # [sum N + 1]
    positions = np.concatenate(positions)  # [sum N]
    returns = step_returns(chained)  # [sum N]
    return {
        "portfolio_values": chained, "positions": positions, "returns": returns,
        "timestamps": np.concatenate(timestamps), "fold_growths": growths,
        "fold_metrics": fold_metrics,
        "metrics": trading_metrics(chained, positions, periods_per_year),
        "periods_per_year": periods_per_year,
    }


def chain_per_market(fold_results: Sequence[Sequence[Mapping]]) -> list[dict]:
    """chain() per instrument of a universe: fold_results[k][m] is fold k's test result on
    market m; returns one chained record per market."""
    counts = {len(markets) for markets in fold_results}
    if len(counts) != 1:
        raise ValueError(f"every fold needs a result per market, got counts {sorted(counts)}")
    return [chain([markets[m] for markets in fold_results]) for m in range(counts.pop())]


def chained_report(chained: Mapping, benchmark: Mapping | None = None, num_trials: int = 1,
                   trials_sharpe_variance: float = 0.0) -> dict:
    """Per-fold and chained metrics and the chained returns' significance (PSR vs 0, vs the
    `benchmark` chained record's Sharpe, DSR), as plain numbers for summary.json."""
    return {
        "folds": [dict(metrics, growth=growth)
                  for metrics, growth in zip(chained["fold_metrics"], chained["fold_growths"])],
        "chained": dict(chained["metrics"]),
        "significance": significance(
            chained["returns"], None if benchmark is None else benchmark["returns"],
            num_trials, trials_sharpe_variance),
    }


def plot_chained(path: str | os.PathLike, curves: Mapping[str, Mapping],
                 title: str = "Chained out-of-sample equity") -> str:
    """A PNG of chained records ({name: chain() result}) on the same test periods."""
    if not curves:
        raise ValueError("plot_chained needs at least one chained record")
    first = next(iter(curves.values()))["timestamps"]
    for name, curve in curves.items():
        if not np.array_equal(curve["timestamps"], first):
            raise ValueError(f"chained record {name!r} is not on the same bars as the first")
    return plot_equity(path, {name: curve["portfolio_values"] for name, curve in curves.items()},
                       timestamps=first, title=title)
