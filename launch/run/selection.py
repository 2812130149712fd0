"""Model selection on validation, and the one final test, whichever driver trains.

What is evaluated: the newest parameters of every member (one, or the seeds of an anakin run),
every `eval_every` learner steps (`next_evaluation`) and once more at the end. Which step is
best: each member's highest validation Sharpe so far. What is kept: that member's parameters
and its best.json (checkpoints/best, or checkpoints/best/seed_<k> for several members), read
back on --restore. What is tested: each member's kept parameters, once, on the test markets;
no test figure is computed before that unless `report_test_curve` asks for one beside each
validation evaluation (reported only: nothing reads it back).

Flat (no position: no cost, no risk) is a candidate too, with `flat_margin`: a member's kept
parameters are the best of K validation evaluations, and the best of K noisy estimates of a
Sharpe ratio of 0 is expected at E[max of K standard normals] standard errors above it (the
deflated Sharpe ratio's SR*, Bailey and Lopez de Prado 2014). So they are tested only if their
validation Sharpe beats flat's by that many standard errors plus `flat_margin` more, a
standard error being that of a Sharpe measured over the median validation market's span
(1 / sqrt(years), Lo 2002 at small Sharpe ratios); else the member selects flat, and its test
is flat's. K counts the evaluations of every member the selection chose among (a sweep's
members, `trials_per_evaluation`); successive evaluations are correlated, so K overstates the
independent trials and the bar errs towards flat.

A driver gives `evaluate(part, params) -> [one evaluation record per member]`
(launch/run/evaluation.py's records) and `plot(part, path, records) -> path`; the distributed
evaluator node calls `validate` when the learner passes a step, anakin from its validation
thread.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, Callable

import numpy as np

from launch.run import checkpoints
from launch.run.evaluation import median_record

# What best.json keeps of the selected evaluation.
BEST_KEYS = ("learner_steps", "sharpe", "total_return", "max_drawdown", "buy_and_hold_sharpe",
             "num_markets", "flat_sharpe", "years")
# What a validation record carries of the test split with report_test_curve (as test_<key>).
TEST_CURVE_KEYS = ("sharpe", "total_return", "max_drawdown", "buy_and_hold_sharpe")
SELECTED_BY_VALIDATION = "best validation sharpe"
SELECTED_BY_NEWEST = "newest (no validation evaluation)"
SELECTED_FLAT = "flat: no validation sharpe above flat's by the margin"

Evaluate = Callable[[str, Any], list[dict]]  # (part, params) -> a record per member
Plot = Callable[[str, str, list[dict]], str]  # (part, path, records) -> path
Flat = Callable[[str], dict]  # part -> flat's evaluation record on that part's markets


def next_evaluation(step: int, eval_every: int) -> int:
    """The first learner step after `step` at which validation is due."""
    return (step // eval_every + 1) * eval_every


def flat_threshold(best: dict[str, Any], flat_margin: float, trials: int) -> float | None:
    """The validation Sharpe that `best` (a best.json record, the best of `trials` validation
    evaluations) must beat to be tested rather than flat: flat's Sharpe plus (E[max of `trials`
    standard normals] + `flat_margin`) / sqrt(years of the median validation market). None for
    a record that lacks them (kept by an older version)."""
    from environments.evaluation.significance import expected_max_sharpe

    if best.get("flat_sharpe") is None or not best.get("years"):
        return None
    luck = expected_max_sharpe(max(int(trials), 1), 1.0)  # in standard errors
    return float(best["flat_sharpe"] + (luck + flat_margin) / math.sqrt(best["years"]))


def best_dirs(workdir: str, num_members: int) -> list[str]:
    """Where each member's selection is kept: checkpoints/best for one member (whatever the
    launch type), else checkpoints/best/seed_<k>."""
    base = os.path.join(workdir, "checkpoints", "best")
    return [base] if num_members == 1 else [os.path.join(base, f"seed_{k}") for k in range(num_members)]


class ModelSelection:
    """Each member's best validation evaluation and its parameters; the final test.

    `stacked`: the drivers' parameters carry a leading member axis [S, ...] (anakin's seeds);
    otherwise they are one member's own. Not thread-safe: one caller at a time.
    """

    def __init__(self, workdir: str, num_members: int, evaluate: Evaluate, plot: Plot,
                 recorder: Any, stacked: bool, report_test_curve: bool = False,
                 plot_every_s: float = 10.0, flat: Flat | None = None,
                 flat_margin: float | None = None):
        if (flat is None) != (flat_margin is None):
            raise ValueError("flat and flat_margin go together: both, or neither (no flat candidate)")
        self._flat, self._flat_margin = flat, flat_margin
        self.dirs = best_dirs(workdir, num_members)
        self.best = [checkpoints.load_best_metadata(d) for d in self.dirs]  # None: none yet
        self._evaluate, self._plot, self._recorder = evaluate, plot, recorder
        self._stacked, self._report_test_curve = stacked, report_test_curve
        self._eval_dir = os.path.join(workdir, "eval")
        self._plot_every_s = plot_every_s
        self._plotted = time.monotonic()  # so the first PNG waits plot_every_s into the run
        self._plotted_step = -1
        # Validation evaluations so far (a restored run's count as its best.json kept it) and
        # the trials each one is among (a sweep: its members).
        self.evaluations = max([(b or {}).get("evaluations", 0) for b in self.best])
        self.trials_per_evaluation = 1
        self.last_step = -1  # the learner step of the newest validation evaluation
        self.last_records: list[dict[str, Any]] = []  # each member's, of that evaluation
        self.last_record: dict[str, Any] = {}  # their median, as written

    def member(self, params: Any, s: int) -> Any:
        """Member s's parameters of `params`."""
        import jax

        return jax.tree.map(lambda x: x[s], params) if self._stacked else params

    def validate(self, step: int, params: Any, final: bool = False) -> dict[str, Any]:
        """Evaluates `params` (host arrays), the parameters of learner step `step`, on
        validation; keeps each member's that beat its best. Writes the median record (node
        "evaluator"), and a validation PNG at a new best (at most every plot_every_s) and at
        the `final` evaluation; returns that record."""
        records = self._evaluate("validation", params)
        self.evaluations += 1
        improved = False
        for s, record in enumerate(records):
            record["learner_steps"] = step
            if self.best[s] is None or record["sharpe"] > self.best[s]["sharpe"]:
                self.best[s] = {key: record[key] for key in BEST_KEYS}
                self.best[s]["evaluations"] = self.evaluations
                checkpoints.save_best(self.dirs[s], self.member(params, s), self.best[s])
                improved = True
            record.update(best_sharpe=self.best[s]["sharpe"],
                          best_learner_steps=self.best[s]["learner_steps"],
                          evaluations=self.evaluations)
        if self._report_test_curve:
            for record, test in zip(records, self._evaluate("test", params)):
                record.update({f"test_{key}": test[key] for key in TEST_CURVE_KEYS})
        self.last_records, self.last_step = records, step
        # A PNG at most every plot_every_s (a plot costs more than an evaluation).
        if final or (improved and time.monotonic() - self._plotted >= self._plot_every_s):
            self.plot_newest()
        self.last_record = median_record(records)
        self._recorder.write("evaluator", self.last_record, step=step)
        return self.last_record

    def plot_newest(self) -> None:
        """The validation PNG of the newest evaluation, unless it has one."""
        if self.last_records and self._plotted_step != self.last_step:
            path = os.path.join(self._eval_dir, f"validation_equity_{self.last_step}.png")
            self.last_records[0]["equity_plot"] = self._plot("validation", path, self.last_records)
            self._plotted, self._plotted_step = time.monotonic(), self.last_step

    def test(self, newest: tuple[int, Any] | None = None) -> list[dict[str, Any]]:
        """Each member's selection evaluated once on the test markets: its kept parameters, or
        flat where they do not beat flat on validation by the margin (a member never evaluated
        on validation: `newest`, (learner step, params), its newest parameters). Writes their
        median record (node "test") and test_equity.png; returns each member's record, with
        `policy` ("agent" or "flat") and `flat_threshold` (None: flat was no candidate)."""
        chosen = []  # (step, selected_by, params, threshold) of each member; params None: flat
        for s, best in enumerate(self.best):
            if best is not None:
                threshold = (None if self._flat_margin is None else flat_threshold(
                    best, self._flat_margin, self.evaluations * self.trials_per_evaluation))
                if threshold is not None and not best["sharpe"] > threshold:
                    chosen.append((None, SELECTED_FLAT, None, threshold))
                else:
                    chosen.append((best["learner_steps"], SELECTED_BY_VALIDATION,
                                   checkpoints.load_best_params(self.dirs[s]), threshold))
            elif newest is not None:
                chosen.append((newest[0], SELECTED_BY_NEWEST, self.member(newest[1], s), None))
            else:
                raise ValueError(f"member {s} has no validation evaluation and no newest parameters")
        agents = [params for _, _, params, _ in chosen if params is not None]
        records = []
        if agents:  # members that select flat are not walked with the agent's parameters
            if self._stacked:
                import jax

                # Every member's row (the compiled walk's shape); flat members' rows are discarded.
                stacked = [params if params is not None else agents[0] for _, _, params, _ in chosen]
                records = self._evaluate("test", jax.tree.map(lambda *leaves: np.stack(leaves), *stacked))
            else:
                records = self._evaluate("test", agents[0])
        flat = self._flat("test") if self._flat is not None and len(agents) < len(chosen) else None
        tested = []
        for s, (step, selected_by, params, threshold) in enumerate(chosen):
            record = dict(flat) if params is None else records[s]
            record.update(learner_steps=step, selected_by=selected_by, flat_threshold=threshold,
                          policy="flat" if params is None else "agent")
            tested.append(record)
        self._plot("test", os.path.join(self._eval_dir, "test_equity.png"), tested)
        steps = [step for step, _, _, _ in chosen if step is not None]
        self._recorder.write("test", median_record(tested), step=max(steps, default=0))
        return tested
