"""The evaluator node: the run layer's model selection (launch/run/selection.py) on the learner's
parameters, every `eval_every` learner steps, with the greedy policy walked over the
validation (and at the end the test) markets in Python, or over a portfolio's panel in the
compiled walk anakin evaluates with (launch/run/portfolio_evaluation.py)."""

from __future__ import annotations

import threading
import time
from typing import Any

import jax
import numpy as np

from agents.registry import get_builder
from environments import EnvFactory
from environments.envs.portfolio_factory import PanelFactory
from launch.run import evaluation
from launch.run.selection import ModelSelection, next_evaluation


class EvaluatorNode:
    """Model selection on validation data, and one final evaluation on test data.

    Every `eval_every` learner steps it runs the greedy policy over the validation markets
    (one batched policy call per bar for all of them) and records the median trading metrics
    with buy-and-hold and flat on the same markets; ModelSelection keeps the parameters with
    the best validation Sharpe so far in `<workdir>/checkpoints/best` (read back on
    --restore), and `evaluate_test` evaluates those parameters (or flat, where they do not beat
    it by `flat_margin`) once on the test markets.
    """

    def __init__(
        self,
        agent: str,
        config: Any,
        spec: Any,
        learner: Any,
        recorder: Any,
        envs: EnvFactory | PanelFactory,
        eval_every: int,
        workdir: str,
        periods_per_year: float | None = None,
        report_test_curve: bool = False,
        flat_margin: float | None = None,
        poll_s: float = 1.0,
    ):
        builder = get_builder(agent)
        self._policy = builder.make_eval_policy(config, spec)
        self._lock = threading.Lock()  # one evaluation (or the walks' compilation) at a time
        self._portfolio = None  # a portfolio's PortfolioSplitEvaluator of each part
        if isinstance(envs, PanelFactory):
            from launch.run.portfolio_evaluation import PortfolioSplitEvaluator

            self._portfolio = {part: PortfolioSplitEvaluator(part, envs, self._policy, periods_per_year)
                               for part in ("validation", "test")}
            # Both parts' compiled walks are built while training runs, not when the run stops
            # (each takes seconds; the final evaluation after Ctrl-C then only walks).
            shapes = jax.eval_shape(builder.make_networks(config, spec).init, jax.random.PRNGKey(0))
            threading.Thread(target=self._compile_walks, args=(shapes,), daemon=True,
                             name="compile-walks").start()
        else:
            self._envs = {part: envs.eval_envs(part) for part in ("validation", "test")}
        self._learner = learner
        self._eval_every = eval_every
        self._periods_per_year = periods_per_year
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._baselines: dict[str, dict[str, Any]] = {}  # part -> reference metrics
        self._selection = ModelSelection(
            workdir, 1, self._evaluate, self._plot, recorder, stacked=False,
            report_test_curve=report_test_curve, flat=None if flat_margin is None else self._flat,
            flat_margin=flat_margin)

    def run(self) -> None:
        next_step = None
        while not self._stop.wait(self._poll_s):
            (version,) = self._learner.get_variables(["version"])
            version = int(version)
            if next_step is None:  # a restored learner starts past 0.
                next_step = next_evaluation(version, self._eval_every)
            if version >= next_step:
                self.evaluate()
                next_step = next_evaluation(version, self._eval_every)

    def _compile_walks(self, shapes: Any) -> None:
        """Compiles each part's walk for parameters shaped as `shapes` (with a leading axis of one)."""
        stacked = jax.tree.map(lambda x: jax.ShapeDtypeStruct((1, *x.shape), x.dtype), shapes)
        with self._lock:
            for split in self._portfolio.values():
                split.compile(stacked)

    def best(self) -> dict[str, Any] | None:
        """best.json: learner_steps and validation metrics of the kept parameters."""
        best = self._selection.best[0]
        return None if best is None else dict(best)

    def evaluate(self, final: bool = False) -> dict[str, Any]:
        """Evaluates the learner's newest parameters on validation (unless done already) and
        keeps them if their validation Sharpe is the best so far; `final`: the run's last
        evaluation (its equity PNG is written)."""
        with self._lock:
            params, version = self._learner.get_variables(["params", "version"])
            version = int(version)
            if self._selection.last_step == version:
                if final:
                    self._selection.plot_newest()
                return self._selection.last_record
            return self._selection.validate(version, params, final=final)

    def evaluate_test(self) -> dict[str, Any]:
        """Evaluates the kept (best validation) parameters once on the test markets; the
        newest parameters when no validation evaluation was made."""
        with self._lock:
            newest = None
            if self._selection.best[0] is None:
                params, step = self._learner.get_variables(["params", "version"])
                newest = (int(step), params)
            return evaluation.loggable(self._selection.test(newest)[0])

    def _evaluate(self, part: str, params: Any) -> list[dict[str, Any]]:
        from environments import run_episodes

        if self._portfolio is not None:  # the walk of one "seed": the parameters with a leading axis
            return self._portfolio[part].evaluate(jax.tree.map(lambda x: np.asarray(x)[None], params))
        envs = self._envs[part]
        start = time.monotonic()

        def act(observations: np.ndarray) -> np.ndarray:  # [M, window, F + 1] -> [M]
            return np.asarray(self._policy(params, observations))

        results = run_episodes(envs, act, periods_per_year=self._periods_per_year)
        record = evaluation.evaluation_record(results, self._references(part))
        record["eval_s"] = time.monotonic() - start
        return [record]

    def _flat(self, part: str) -> dict[str, Any]:
        references = self._references(part)
        return evaluation.evaluation_record(references["flat"], references)

    def _references(self, part: str) -> dict[str, Any]:
        if self._portfolio is not None:
            return self._portfolio[part].references
        if part not in self._baselines:  # the same for every evaluation
            self._baselines[part] = evaluation.baselines(self._envs[part], self._periods_per_year)
        return self._baselines[part]

    def _plot(self, part: str, path: str, records: list[dict[str, Any]]) -> str:
        if self._portfolio is not None:
            return self._portfolio[part].plot(path, records)
        return evaluation.plot(path, part, self._envs[part], records, self._references(part))

    def stop(self) -> None:
        self._stop.set()
