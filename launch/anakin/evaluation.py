"""Evaluation under --lp_launch_type=anakin: every seed's greedy policy walked over all
validation (or test) markets inside one compiled scan (environments.envs.jittable.evaluate_policy),
then the same metrics, baselines and selection as the evaluator node, per seed, on the host;
`Validations` runs them on a thread of their own while training goes on."""

from __future__ import annotations

import functools
import os
import time
from concurrent import futures
from typing import Any, Callable

import numpy as np

from environments import EnvFactory
from launch.distributed.nodes.evaluator import baselines, evaluation_record
from launch.run import checkpoints

# The best.json keys kept for a selection (as EvaluatorNode keeps them).
BEST_KEYS = ("learner_steps", "sharpe", "total_return", "max_drawdown", "buy_and_hold_sharpe",
             "num_markets")


# Kept for every seed in a record of several seeds (the rest is their median).
BY_SEED = ("sharpe", "total_return", "best_sharpe", "best_learner_steps", "test_sharpe",
           "test_total_return")


class SplitEvaluator:
    """One split's markets (validation or test): their stacked EnvParams, the compiled walk of
    S policies over them, and the host-side baselines (buy-and-hold, flat), computed once."""

    def __init__(self, part: str, envs: EnvFactory, policy: Callable, periods_per_year: float | None):
        import jax

        from environments.envs.jittable import eval_params, evaluate_policy

        self.part = part
        self.envs = envs.eval_envs(part)
        self._periods_per_year = periods_per_year
        self.params = eval_params(envs.eval_setups(part))
        window = envs.config.window

        def walk(seed_params: Any, env_params: Any) -> Any:  # params [S, ...] -> EvalTrace [S, M, ...]
            return jax.vmap(lambda p: evaluate_policy(window, lambda obs: policy(p, obs),
                                                      env_params))(seed_params)

        self._walk = jax.jit(walk)

    @functools.cached_property
    def references(self) -> dict[str, list[dict]]:
        """Buy-and-hold and flat on each market, walked in Python (~50 ms a market): computed
        when first needed, so the test split's wait for the end of the run."""
        return baselines(self.envs, self._periods_per_year)

    def compile(self, seed_params: Any) -> None:
        """Compiles the walk for parameters shaped like `seed_params` (arrays or
        jax.ShapeDtypeStructs), so that the first evaluation costs what the others cost."""
        self._walk.lower(seed_params, self.params).compile()

    def evaluate(self, seed_params: Any) -> list[dict[str, Any]]:
        """Each seed's evaluation record (EvaluatorNode's keys) of its parameters."""
        import jax

        start = time.monotonic()
        trace = jax.device_get(self._walk(seed_params, self.params))
        records = []
        for s in range(trace.valid.shape[0]):
            results = [self._result(trace, s, m) for m in range(len(self.envs))]
            record = evaluation_record(results, self.references)
            record["_results"] = results  # for plots; dropped before logging
            records.append(record)
        eval_s = (time.monotonic() - start) / len(records)
        for record in records:
            record["eval_s"] = eval_s
        return records

    def _result(self, trace: Any, s: int, m: int) -> dict[str, Any]:
        """run_episode's result for seed s on market m, from the trace's valid steps."""
        from environments.evaluation.metrics import trading_metrics

        steps = int(trace.valid[s, m].sum())
        hold = self.references["buy_and_hold"][m]  # the same walk: its bars and annualization
        values = np.asarray(trace.portfolio_values[s, m, :steps + 1], np.float64)
        positions = np.asarray(trace.positions[s, m, :steps], np.float64)
        metrics = trading_metrics(values, positions, hold["periods_per_year"])
        return {"portfolio_values": values, "positions": positions,
                "timestamps": hold["timestamps"][:steps + 1], "metrics": metrics,
                "periods_per_year": hold["periods_per_year"],
                "annualization": hold["annualization"], **metrics}

    def plot(self, path: str, records: list[dict[str, Any]]) -> str:
        """Equity of the first market: every seed's agent, buy-and-hold and flat."""
        from environments.evaluation.metrics import plot_equity

        if len(records) == 1:
            curves = {"agent": records[0]["_results"][0]["portfolio_values"]}
        else:
            curves = {f"agent (seed {s})": r["_results"][0]["portfolio_values"]
                      for s, r in enumerate(records)}
        curves.update(buy_and_hold=self.references["buy_and_hold"][0]["portfolio_values"],
                      flat=self.references["flat"][0]["portfolio_values"])
        suffix = f" (market 1 of {len(self.envs)})" if len(self.envs) > 1 else ""
        plot_equity(path, curves, timestamps=self.references["buy_and_hold"][0]["timestamps"],
                    title=f"{self.part.capitalize()} equity on {self.envs[0].market.source}{suffix}")
        return path


def best_dirs(workdir: str, num_seeds: int) -> list[str]:
    """Where each seed's selection is kept: checkpoints/best (one seed, as under the other
    launch types), else checkpoints/best/seed_<k>."""
    base = os.path.join(workdir, "checkpoints", "best")
    return [base] if num_seeds == 1 else [os.path.join(base, f"seed_{k}") for k in range(num_seeds)]


class Selection:
    """Each seed's best validation Sharpe so far and its parameters (kept on disk, read back on
    --restore): the selection reads validation records only."""

    def __init__(self, dirs: list[str]):
        self.dirs = dirs
        self.best = [checkpoints.load_best_metadata(d) for d in dirs]  # None: none yet

    def update(self, step: int, records: list[dict[str, Any]], seed_params: Callable[[int], Any]
               ) -> bool:
        """Keeps the parameters of every seed whose validation Sharpe beats its best; True if
        any did. `seed_params(s)` gives seed s's parameters (host arrays)."""
        improved = False
        for s, record in enumerate(records):
            record["learner_steps"] = step
            if self.best[s] is None or record["sharpe"] > self.best[s]["sharpe"]:
                self.best[s] = {key: record[key] for key in BEST_KEYS}
                checkpoints.save_best(self.dirs[s], seed_params(s), self.best[s])
                improved = True
            record.update(best_sharpe=self.best[s]["sharpe"],
                          best_learner_steps=self.best[s]["learner_steps"])
        return improved

    def params(self, s: int) -> Any:
        return checkpoints.load_best_params(self.dirs[s])


def loggable(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if not key.startswith("_")}


def median_record(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One record for S seeds: the median of each number, each seed's value of BY_SEED's
    keys (as `<key>_by_seed`), the rest as seed 0 has it."""
    if len(records) == 1:
        return loggable(records[0])
    merged = {}
    for key, value in loggable(records[0]).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values = [r[key] for r in records]
            merged[key] = value if len(set(values)) == 1 else float(np.median(values))
        else:
            merged[key] = value
    for key in BY_SEED:
        if key in records[0]:
            merged[f"{key}_by_seed"] = [r[key] for r in records]
    return merged


class Validations:
    """The validation evaluations of a run, on a thread of their own so that training goes on
    meanwhile (on a CPU, on the core the compiled cycle leaves idle).

    One at a time, in the order submitted: a submission first waits for the evaluation before
    it, so the same flags evaluate the same learner steps and select the same parameters
    whatever the timing. An error on the thread is raised by the next `submit` or `wait`.
    Each evaluation keeps every seed's best parameters (`selection`), writes the median
    record as node "evaluator", and a validation PNG at a new best (at most every
    `plot_every_s` from the start, and at the final evaluation); with `test` given, each
    record also carries the test split's figures (reported only: nothing reads them back).
    """

    def __init__(self, validation: SplitEvaluator, selection: Selection, recorder: Any,
                 eval_dir: str, test: SplitEvaluator | None = None, plot_every_s: float = 10.0):
        self.validation, self.selection, self.test = validation, selection, test
        self._recorder, self._eval_dir, self._plot_every_s = recorder, eval_dir, plot_every_s
        self._executor = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="validation")
        self._pending: futures.Future | None = None
        self.submitted_step = -1  # the learner step of the newest submission
        self.evaluations = 0
        self.last_records: list[dict[str, Any]] = []  # each seed's, of the newest evaluation
        self.last_record: dict[str, Any] = {}  # their median, as written
        self._last_step = -1
        self._plotted = time.monotonic()  # so the first PNG waits plot_every_s into the run
        self._plotted_step = -1

    def submit(self, step: int, seed_params: Any, final: bool = False) -> None:
        """Evaluates `seed_params` ([S, ...] host arrays: not the training state's buffers,
        which the next cycle may reuse) as the parameters of learner step `step`."""
        self.wait()
        self.submitted_step = step
        self._pending = self._executor.submit(self._evaluate, step, seed_params, final)

    def wait(self) -> None:
        """Returns once every submitted evaluation is done."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def finish(self) -> None:
        """After the final evaluation: a PNG of the newest evaluation if it has none."""
        self.wait()
        if self.last_records and self._plotted_step != self._last_step:
            self._plot()

    def close(self) -> None:
        """Stops the thread (after the evaluation under way, whose error is not raised)."""
        self._pending = None
        self._executor.shutdown(wait=True)

    def _evaluate(self, step: int, seed_params: Any, final: bool) -> None:
        import jax

        records = self.validation.evaluate(seed_params)
        self.evaluations += 1
        improved = self.selection.update(step, records, lambda s: jax.tree.map(lambda x: x[s], seed_params))
        for record in records:
            record["evaluations"] = self.evaluations
        if self.test is not None:
            for record, test in zip(records, self.test.evaluate(seed_params)):
                record.update({f"test_{key}": test[key] for key in (
                    "sharpe", "total_return", "max_drawdown", "buy_and_hold_sharpe")})
        self.last_records, self._last_step = records, step
        # A PNG at most every plot_every_s (a plot costs more than a compiled evaluation).
        if final or (improved and time.monotonic() - self._plotted >= self._plot_every_s):
            self._plot()
        self.last_record = median_record(records)
        self._recorder.write("evaluator", self.last_record, step=step)

    def _plot(self) -> None:
        path = os.path.join(self._eval_dir, f"validation_equity_{self._last_step}.png")
        self.last_records[0]["equity_plot"] = self.validation.plot(path, self.last_records)
        self._plotted, self._plotted_step = time.monotonic(), self._last_step
