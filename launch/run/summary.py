"""summary.json: what a run did and what it found, in one schema under every launch type, and how
the run ends for its user (the report, the errors, the exit code).

Its keys, in order: the run's settings (launch_type .. num_seeds), stop_reason, its counts and
rates, `validation` (the selection: each value the median over the seeds where there are
several) and `test` (the selection's one test, likewise), `launch` (what only this launch shape
has: the distributed program's actors and processes, anakin's devices and compiling), errors
and workdir. An anakin run adds `seeds`: each seed's own validation and test; an anakin run with
--sweep adds `sweep` instead (launch/run/sweep.py's section: every member's settings and
validation curve, the chosen member, the trials and their validation Sharpes' variance; no test
figure), and its `validation` and `test` are the chosen member's. A key means the same under
every launch type.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any

import numpy as np

from launch.run import checkpoints, progress
from launch.run.evaluation import median_record
from launch.run.setup import Setup

# What "test" holds of a test record.
TEST_KEYS = (
    "total_return", "sharpe", "max_drawdown", "buy_and_hold_return", "buy_and_hold_sharpe",
    "annualized_return", "sortino", "turnover", "hit_rate", "learner_steps", "num_markets",
    "sharpe_by_market", "periods_per_year", "annualization", "selected_by", "policy",
    "flat_threshold", "years")


@dataclasses.dataclass
class Counts:
    """What a driver counted: env steps (all actors', or all seeds' on all devices), learner
    steps (each seed's), the step it was restored from (0: none), items in its replay (None:
    it has none), the command's wall time and the time its training ran."""

    env_steps: int
    learner_steps: int
    restored_step: int
    replay_items: int | None
    wall_s: float
    run_s: float


# What a portfolio's test record adds (launch/run/portfolio_evaluation.py): 1/N on the same
# bars and costs, and the mean gross exposure sum |w|, the forced closes (positions closed where an
# instrument lost its next bar); absent for a single instrument.
PORTFOLIO_TEST_KEYS = ("equal_weight_sharpe", "equal_weight_return", "exposure", "forced_closes")


def test_metrics(test: dict[str, Any]) -> dict[str, Any]:
    metrics = {key: test.get(key) for key in TEST_KEYS}
    metrics.update({key: test[key] for key in PORTFOLIO_TEST_KEYS if key in test})
    return metrics


def validation_metrics(best: dict[str, Any] | None, final: dict[str, Any]) -> dict[str, Any]:
    """The selection (`best`: best.json's record) and the newest validation record (`final`:
    the final parameters', or the newest made when there was no final evaluation)."""
    best = best or {}
    return {
        "best_sharpe": best.get("sharpe"), "learner_steps": best.get("learner_steps"),
        "best_total_return": best.get("total_return"),
        "buy_and_hold_sharpe": best.get("buy_and_hold_sharpe"),
        "final_sharpe": final.get("sharpe"), "evaluations": final.get("evaluations"),
    }


def selection(setup: Setup, best: list[dict | None], final: list[dict], tests: list[dict]
              ) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """(validation, test, seeds) of S members from each one's best.json record, newest
    validation record and test record: validation and test hold the medians over the members
    (with each member's Sharpe, selected step and best validation Sharpe as lists when S > 1),
    seeds each member's own."""
    seeds = [{"seed": setup.seed + s, "validation": validation_metrics(best[s], final[s] if final else {}),
              "test": test_metrics(tests[s] if tests else {})} for s in range(len(best))]
    validation = {key: _median([seed["validation"][key] for seed in seeds]) for key in seeds[0]["validation"]}
    test = test_metrics(median_record(tests) if tests else {})
    if len(seeds) > 1:
        test["sharpe_by_seed"] = [seed["test"]["sharpe"] for seed in seeds]
        test["policy_by_seed"] = [seed["test"]["policy"] for seed in seeds]
        validation["best_sharpe_by_seed"] = [seed["validation"]["best_sharpe"] for seed in seeds]
        validation["learner_steps_by_seed"] = [seed["validation"]["learner_steps"] for seed in seeds]
    return validation, test, seeds


def build(setup: Setup, *, launch_type: str, stop_reason: str, counts: Counts,
          validation: dict[str, Any], test: dict[str, Any], launch: dict[str, Any],
          errors: list[str], seeds: list[dict[str, Any]] | None = None,
          sweep: dict[str, Any] | None = None) -> dict[str, Any]:
    """summary.json's contents; `launch`: what only this launch shape has; `seeds`: anakin's
    per-seed section, `sweep`: anakin's section of a --sweep (each absent elsewhere)."""
    run_s = counts.run_s
    summary = {
        "launch_type": launch_type,
        "agent": setup.agent,
        "agent_preset": setup.agent_preset,
        "agent_config": dataclasses.asdict(setup.config),
        "torso": getattr(setup.config, "torso", None),  # the observation encoder
        "parameter_count": parameter_count(setup),
        "data": setup.data,
        "market": dataclasses.asdict(setup.envs.source),
        "env": setup.envs.config.as_dict(),
        "annualization": setup.annualization,
        "return_volatility": setup.return_volatility,  # rewards rescaled to it (launch/run/setup.py)
        "seed": setup.seed,
        "num_seeds": setup.num_seeds,  # agents trained (each selected on its own)
        "stop_reason": stop_reason,
        "env_steps": counts.env_steps,
        "learner_steps": counts.learner_steps,
        "restored_from_step": counts.restored_step if setup.restore else None,
        "wall_s": round(counts.wall_s, 2),
        "run_s": round(run_s, 2),
        "env_steps_per_s": counts.env_steps / run_s if run_s > 0 else 0.0,
        "learner_steps_per_s": (counts.learner_steps - counts.restored_step) / run_s if run_s > 0 else 0.0,
        "replay_items": counts.replay_items,
        "validation": validation,
        "test": test,
        "launch": launch,
        "errors": errors,
        "workdir": setup.workdir,
    }
    if seeds is not None:
        summary["seeds"] = seeds
    if sweep is not None:
        summary["sweep"] = sweep
    return summary


def parameter_count(setup: Setup) -> int | None:
    """The agent's network parameters (None for a builder that does not count them)."""
    count = getattr(setup.builder, "parameter_count", None)
    return None if count is None else int(count(setup.config, setup.spec))


def finish(setup: Setup, summary: dict[str, Any]) -> int:
    """Writes summary.json, prints the errors and the report; returns the exit code (1 on an
    error, 130/143 when interrupted by SIGINT/SIGTERM, else 0)."""
    with open(os.path.join(setup.workdir, "summary.json"), "w") as file:
        json.dump(summary, file, indent=2, default=str)
    errors = summary["errors"]
    for error in errors:
        print(f"ERROR {error}", file=sys.stderr)
    print(progress.final_report(summary), flush=True)
    if errors:
        if checkpoints.checkpoint_steps(setup.learner_dir):
            print(f"the run stopped on an error; once its cause is fixed, to continue from its "
                  f"last checkpoint: python launch/apex.py --restore --workdir={setup.workdir} "
                  "(and the same flags)", file=sys.stderr)
        return 1
    reason = summary["stop_reason"]
    if reason.startswith("interrupted"):
        return 130 if "SIGINT" in reason else 143
    return 0


def _median(values: list[Any]) -> Any:
    """The median of numbers (an int when they all are and it is whole); else the first."""
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(numbers) != len(values) or not numbers:
        return values[0] if values else None
    median = float(np.median(numbers))
    return int(median) if all(isinstance(v, int) for v in numbers) and median.is_integer() else median
