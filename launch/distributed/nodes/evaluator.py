"""The evaluator node: model selection on the validation markets, and one final evaluation of
the selected parameters on the test markets."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np

from agents.registry import get_builder
from environments import EnvFactory
from launch.run import checkpoints


class EvaluatorNode:
    """Model selection on validation data, and one final evaluation on test data.

    Every `eval_every` learner steps it runs the greedy policy over the validation markets
    (one batched policy call per bar for all of them) and logs the median trading metrics
    with buy-and-hold and flat on the same markets. The parameters with the best validation
    Sharpe so far are kept in `best_dir` (`params.msgpack` and `best.json`, written
    atomically; read back on --restore). `evaluate_test` evaluates those parameters once on
    the test markets: no test figure is computed before it, unless `report_test_curve` asks
    for test metrics beside each validation evaluation, for plots only (they are logged under
    `evaluator/test_*` and never read by the selection).
    """

    def __init__(
        self,
        agent: str,
        config: Any,
        spec: Any,
        learner: Any,
        recorder: Any,
        envs: EnvFactory,
        eval_every: int,
        eval_dir: str,
        best_dir: str,
        periods_per_year: float | None = None,
        report_test_curve: bool = False,
        poll_s: float = 1.0,
    ):
        self._policy = get_builder(agent).make_eval_policy(config, spec)
        self._envs = {part: envs.eval_envs(part) for part in ("validation", "test")}
        self._learner = learner
        self._recorder = recorder
        self._eval_every = eval_every
        self._eval_dir = eval_dir
        self._best_dir = best_dir
        self._periods_per_year = periods_per_year
        self._report_test_curve = report_test_curve
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one evaluation at a time (run loop or final)
        self._baselines: dict[str, dict[str, Any]] = {}  # part -> reference metrics
        self._last: dict[str, Any] | None = None
        self._best = checkpoints.load_best_metadata(best_dir)  # None, or best.json's contents
        self._evaluations = 0

    def run(self) -> None:
        next_step = None
        while not self._stop.wait(self._poll_s):
            (version,) = self._learner.get_variables(["version"])
            version = int(version)
            if next_step is None:  # a restored learner starts past 0.
                next_step = (version // self._eval_every + 1) * self._eval_every
            if version >= next_step:
                self.evaluate()
                next_step = (version // self._eval_every + 1) * self._eval_every

    def best(self) -> dict[str, Any] | None:
        """best.json: learner_steps and validation metrics of the kept parameters."""
        return None if self._best is None else dict(self._best)

    def evaluate(self) -> dict[str, Any]:
        """Evaluates the learner's newest parameters on validation (unless done already) and
        keeps them if their validation Sharpe is the best so far."""
        with self._lock:
            params, version = self._learner.get_variables(["params", "version"])
            version = int(version)
            if self._last is not None and self._last["learner_steps"] == version:
                return self._last
            path = os.path.join(self._eval_dir, f"validation_equity_{version}.png")
            record = self._evaluate(params, "validation", path)
            record["learner_steps"] = version
            self._evaluations += 1
            if self._best is None or record["sharpe"] > self._best["sharpe"]:
                self._best = {key: record[key] for key in (
                    "learner_steps", "sharpe", "total_return", "max_drawdown",
                    "buy_and_hold_sharpe", "num_markets")}
                checkpoints.save_best(self._best_dir, params, self._best)
            record.update(best_sharpe=self._best["sharpe"],
                          best_learner_steps=self._best["learner_steps"],
                          evaluations=self._evaluations)
            if self._report_test_curve:  # reported only; nothing reads it back
                test = self._evaluate(params, "test", None)
                record.update({f"test_{key}": test[key] for key in (
                    "sharpe", "total_return", "max_drawdown", "buy_and_hold_sharpe")})
            self._recorder.write("evaluator", record, step=version)
            self._last = record
            return record

    def evaluate_test(self) -> dict[str, Any]:
        """Evaluates the kept (best validation) parameters once on the test markets; the
        newest parameters when no validation evaluation was made."""
        with self._lock:
            if self._best is not None:
                params = checkpoints.load_best_params(self._best_dir)
                step, selected_by = self._best["learner_steps"], "best validation sharpe"
            else:
                params, step = self._learner.get_variables(["params", "version"])
                step, selected_by = int(step), "newest (no validation evaluation)"
            record = self._evaluate(params, "test", os.path.join(self._eval_dir, "test_equity.png"))
            record.update(learner_steps=step, selected_by=selected_by)
            self._recorder.write("test", record, step=step)
            return record

    def _evaluate(self, params: Any, part: str, plot_path: str | None) -> dict[str, Any]:
        from environments import run_episodes

        envs = self._envs[part]
        start = time.monotonic()

        def act(observations: np.ndarray) -> np.ndarray:  # [M, window, F + 1] -> [M]
            return np.asarray(self._policy(params, observations))

        results = run_episodes(envs, act, periods_per_year=self._periods_per_year)
        if part not in self._baselines:  # the same for every evaluation
            self._baselines[part] = baselines(envs, self._periods_per_year)
        record = evaluation_record(results, self._baselines[part])
        record["eval_s"] = time.monotonic() - start
        if plot_path is not None:
            record["equity_plot"] = plot(plot_path, part, envs, results, self._baselines[part])
        return record

    def stop(self) -> None:
        self._stop.set()


def baselines(envs: list[Any], periods_per_year: float | None) -> dict[str, list[dict]]:
    """Buy-and-hold and flat on each of `envs` (eval-mode TradingEnvs), the same costs as
    the agent's: run_episode results under "buy_and_hold" and "flat"."""
    from environments.evaluation.metrics import buy_and_hold, flat

    return {"buy_and_hold": [buy_and_hold(env, periods_per_year) for env in envs],
            "flat": [flat(env, periods_per_year) for env in envs]}


def evaluation_record(results: list[dict], references: dict[str, list[dict]]) -> dict[str, Any]:
    """An evaluation's record from the agent's run_episode results on M markets and the
    baselines' on the same markets: the median metrics (what selection and the test read)."""
    from environments import median_metrics

    agent, hold = median_metrics(results), median_metrics(references["buy_and_hold"])
    record = {name: agent[name] for name in (
        "total_return", "annualized_return", "sharpe", "sortino", "max_drawdown",
        "turnover", "hit_rate")}
    record.update(
        buy_and_hold_return=hold["total_return"], buy_and_hold_sharpe=hold["sharpe"],
        buy_and_hold_max_drawdown=hold["max_drawdown"],
        flat_return=median_metrics(references["flat"])["total_return"],
        num_markets=len(results), sharpe_by_market=[r["sharpe"] for r in results],
        periods_per_year=results[0]["periods_per_year"],
        annualization=results[0]["annualization"],
        years=float(np.median([(len(r["portfolio_values"]) - 1) / r["periods_per_year"]
                               for r in results])),  # the median market's span
    )
    return record


def plot(path: str, part: str, envs: list[Any], results: list[dict],
         references: dict[str, list[dict]]) -> str:
    """The equity curves of the first market (agent, buy-and-hold, flat) in `path`."""
    from environments.evaluation.metrics import plot_equity

    curves = {"agent": results[0]["portfolio_values"],
              "buy_and_hold": references["buy_and_hold"][0]["portfolio_values"],
              "flat": references["flat"][0]["portfolio_values"]}
    suffix = f" (market 1 of {len(envs)})" if len(envs) > 1 else ""
    plot_equity(path, curves, timestamps=results[0]["timestamps"],
                title=f"{part.capitalize()} equity on {envs[0].market.source}{suffix}")
    return path
