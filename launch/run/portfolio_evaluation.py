"""Evaluation of a portfolio run, in either launch shape (anakin's driver, the program of nodes'
evaluator node): every seed's greedy policy walked over the part's panel inside one compiled
scan (environments.envs.portfolio), its records next to the baselines on the same bars and
costs (environments.evaluation.portfolio_rules): the basket bought and held (the run layer's
"buy_and_hold"), flat, and the equally weighted portfolio rebalanced every bar (1/N). The same
interface as launch/anakin/evaluation.SplitEvaluator."""

from __future__ import annotations

import functools
import time
from typing import Any, Callable

import numpy as np

from environments.envs.portfolio_factory import PanelFactory
from launch.run import evaluation


class PortfolioSplitEvaluator:
    """One part's panel (validation or test), the compiled walk of S policies over it, and its
    baselines, computed once."""

    def __init__(self, part: str, envs: PanelFactory, policy: Callable, periods_per_year: float | None):
        import jax

        from environments.envs.portfolio import JaxPortfolioEnv, evaluate_portfolio_policy

        self.part = part
        self.panel = envs.panel(part)
        self.config = envs.config
        self._periods_per_year = periods_per_year
        self.params = JaxPortfolioEnv(self.panel, envs.config, mode="eval").params
        window = envs.config.window

        def walk(seed_params: Any, env_params: Any) -> Any:  # params [S, ...] -> trace [S, ...]
            one = lambda p: evaluate_portfolio_policy(  # noqa: E731
                window, lambda obs: policy(p, obs[None])[0], env_params)
            return jax.vmap(one)(seed_params)

        self._walk = jax.jit(walk)

    @functools.cached_property
    def references(self) -> dict[str, list[dict]]:
        """The basket bought and held (as "buy_and_hold"), flat and 1/N on the panel."""
        from environments.evaluation import portfolio_rules as rules

        panel, config, ppy = self.panel, self.config, self._periods_per_year
        return {"buy_and_hold": [rules.basket_buy_and_hold(panel, config, ppy)],
                "flat": [rules.walk_levels(panel, np.zeros(panel.close.shape), config, ppy)],
                "equal_weight": [rules.walk_levels(panel, rules.equal_weight(panel), config, ppy)]}

    def compile(self, seed_params: Any) -> None:
        self._walk.lower(seed_params, self.params).compile()

    def evaluate(self, seed_params: Any) -> list[dict[str, Any]]:
        """Each seed's evaluation record of its parameters [S, ...] (with 1/N's Sharpe and
        return beside buy-and-hold's, the basket's, and flat's)."""
        import jax

        from environments.evaluation.portfolio_rules import walk_result

        start = time.monotonic()
        trace = jax.device_get(self._walk(seed_params, self.params))
        ppy = self.references["buy_and_hold"][0]["periods_per_year"]
        records = []
        for s in range(trace.valid.shape[0]):
            steps = int(trace.valid[s].sum())
            result = walk_result(self.panel, np.asarray(trace.portfolio_values[s, :steps + 1], np.float64),
                                 np.asarray(trace.weights[s, :steps], np.float64), ppy)
            records.append(evaluation.evaluation_record([result], self.references))
        for record in records:
            record["eval_s"] = (time.monotonic() - start) / len(records)
        return records

    def plot(self, path: str, records: list[dict[str, Any]]) -> str:
        """Equity of every seed's agent, the basket, 1/N and flat on the part's panel."""
        from environments import plot_equity

        curves = {("agent" if len(records) == 1 else f"agent (seed {s})"): r["_results"][0]["portfolio_values"]
                  for s, r in enumerate(records)}
        references = self.references
        curves.update(basket_buy_and_hold=references["buy_and_hold"][0]["portfolio_values"],
                      equal_weight=references["equal_weight"][0]["portfolio_values"],
                      flat=references["flat"][0]["portfolio_values"])
        plot_equity(path, curves, timestamps=references["buy_and_hold"][0]["timestamps"],
                    title=f"{self.part.capitalize()} equity on {self.panel.source} "
                          f"({self.panel.num_instruments} instruments)")
        return path
