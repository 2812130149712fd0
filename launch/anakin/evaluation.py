"""Evaluation under --lp_launch_type=anakin: every seed's greedy policy walked over all
validation (or test) markets inside one compiled scan (environments.envs.jittable.evaluate_policy),
the run layer's records and selection on the host (launch/run/evaluation.py, selection.py),
and `Validations`, which runs them on a thread of their own while training goes on."""

from __future__ import annotations

import functools
import time
from concurrent import futures
from typing import Any, Callable

import numpy as np

from environments import EnvFactory
from launch.run import evaluation
from launch.run.selection import ModelSelection


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
        return evaluation.baselines(self.envs, self._periods_per_year)

    def compile(self, seed_params: Any) -> None:
        """Compiles the walk for parameters shaped like `seed_params` (arrays or
        jax.ShapeDtypeStructs), so that the first evaluation costs what the others cost."""
        self._walk.lower(seed_params, self.params).compile()

    def evaluate(self, seed_params: Any) -> list[dict[str, Any]]:
        """Each seed's evaluation record (launch/run/evaluation.py) of its parameters [S, ...]."""
        import jax

        start = time.monotonic()
        trace = jax.device_get(self._walk(seed_params, self.params))
        records = []
        for s in range(trace.valid.shape[0]):
            results = [self._result(trace, s, m) for m in range(len(self.envs))]
            records.append(evaluation.evaluation_record(results, self.references))
        eval_s = (time.monotonic() - start) / len(records)
        for record in records:
            record["eval_s"] = eval_s
        return records

    def _result(self, trace: Any, s: int, m: int) -> dict[str, Any]:
        """run_episode's result for seed s on market m, from the trace's valid steps."""
        from environments import trading_metrics

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
        return evaluation.plot(path, self.part, self.envs, records, self.references)


def model_selection(workdir: str, num_seeds: int, splits: dict[str, SplitEvaluator], recorder: Any,
                    report_test_curve: bool, flat_margin: float | None = None) -> ModelSelection:
    """The run layer's selection of each seed, evaluated by the compiled walks of `splits`
    (flat a candidate with `flat_margin`; None: no flat candidate)."""

    def flat(part: str) -> dict[str, Any]:
        references = splits[part].references
        return evaluation.evaluation_record(references["flat"], references)

    return ModelSelection(
        workdir, num_seeds, lambda part, params: splits[part].evaluate(params),
        lambda part, path, records: splits[part].plot(path, records), recorder, stacked=True,
        report_test_curve=report_test_curve, flat=None if flat_margin is None else flat,
        flat_margin=flat_margin)


def test_member(selection: ModelSelection, member: int) -> list[dict[str, Any]]:
    """The final test of `member`'s selection alone (its kept parameters, or flat where they do
    not beat flat by the margin): [its test record]. The other members are not tested; the
    selection then holds that member only."""
    # The chosen member is the best of every member's evaluations: flat's bar counts them all.
    selection.trials_per_evaluation = len(selection.best)
    selection.best, selection.dirs = [selection.best[member]], [selection.dirs[member]]
    return selection.test()


class Validations:
    """The validation evaluations of a run, on a thread of their own so that training goes on
    meanwhile (on a CPU, on the core the compiled cycle leaves idle).

    One at a time, in the order submitted: a submission first waits for the evaluation before
    it, so the same flags evaluate the same learner steps and select the same parameters
    whatever the timing. An error on the thread is raised by the next `submit` or `wait`.
    """

    def __init__(self, selection: ModelSelection):
        self.selection = selection
        self._executor = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="validation")
        self._pending: futures.Future | None = None
        self.submitted_step = -1  # the learner step of the newest submission
        self.curves: list[tuple[int, list[float]]] = []  # (step, each member's validation Sharpe)

    def submit(self, step: int, seed_params: Any, final: bool = False) -> None:
        """Evaluates `seed_params` ([S, ...] host arrays: not the training state's buffers,
        which the next cycle may reuse) as the parameters of learner step `step`."""
        self.wait()
        self.submitted_step = step
        self._pending = self._executor.submit(self._validate, step, seed_params, final)

    def _validate(self, step: int, seed_params: Any, final: bool) -> None:
        self.selection.validate(step, seed_params, final)
        self.curves.append((step, [float(record["sharpe"]) for record in self.selection.last_records]))

    def wait(self) -> None:
        """Returns once every submitted evaluation is done."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def finish(self) -> None:
        """After the final evaluation: a PNG of the newest evaluation if it has none."""
        self.wait()
        self.selection.plot_newest()

    def close(self) -> None:
        """Stops the thread (after the evaluation under way, whose error is not raised)."""
        self._pending = None
        self._executor.shutdown(wait=True)
