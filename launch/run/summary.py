"""summary.json: what a run did and what it found (the same keys under every launch type),
and how the run ends for its user (the report, the errors, the exit code)."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any

from launch.run import checkpoints, progress
from launch.run.setup import Setup

# What summary.json's "test" holds of the evaluator's test record.
TEST_KEYS = (
    "total_return", "sharpe", "max_drawdown", "buy_and_hold_return", "buy_and_hold_sharpe",
    "annualized_return", "sortino", "turnover", "hit_rate", "learner_steps", "num_markets",
    "sharpe_by_market", "periods_per_year", "annualization", "selected_by", "years")


def totals(latest: list[dict[str, Any]]) -> dict[str, Any]:
    """Run totals from the recorder's newest record of every (node, process)."""
    env_steps_by_process: dict[str, int] = {}
    param_syncs = 0
    learner: dict[str, Any] = {}
    evaluator: dict[str, Any] = {}
    for record in latest:
        node = record["node"]
        if node.startswith("actor_"):
            steps = int(record.get(f"{node}/env_steps", 0) or 0)
            env_steps_by_process[f"{node}/{record.get(f'{node}/pid')}"] = steps
            param_syncs += int(record.get(f"{node}/param_syncs", 0) or 0)
        elif node == "learner":
            learner = record
        elif node == "evaluator":
            evaluator = record
    return {
        "env_steps": sum(env_steps_by_process.values()),
        "env_steps_by_process": env_steps_by_process,
        "learner_steps": int(learner.get("learner/learner_steps", 0)),
        "param_syncs": param_syncs,  # parameter fetches of all actor processes
        "eval": {key.split("/", 1)[1]: value for key, value in evaluator.items() if "/" in key},
    }


def test_metrics(test: dict[str, Any]) -> dict[str, Any]:
    return {key: test.get(key) for key in TEST_KEYS}


def validation_metrics(best: dict[str, Any], final: dict[str, Any],
                       last: dict[str, Any]) -> dict[str, Any]:
    """The selection (`best`: best.json), the final parameters' validation record (`final`),
    and the newest evaluator record (`last`) where no final evaluation was made."""
    return {
        "best_sharpe": best.get("sharpe"), "learner_steps": best.get("learner_steps"),
        "best_total_return": best.get("total_return"),
        "buy_and_hold_sharpe": best.get("buy_and_hold_sharpe"),
        "final_sharpe": final.get("sharpe", last.get("sharpe")),
        "evaluations": final.get("evaluations", last.get("evaluations")),
    }


def common(setup: Setup, launch_type: str, stop_reason: str) -> dict[str, Any]:
    """The keys that describe the run's settings, in summary.json's order."""
    return {
        "launch_type": launch_type,
        "agent": setup.agent,
        "agent_preset": setup.agent_preset,
        "agent_config": dataclasses.asdict(setup.config),
        "torso": getattr(setup.config, "torso", None),  # the observation encoder
        "parameter_count": parameter_count(setup),
        "num_actors": setup.num_actors,
        "envs_per_actor": setup.envs_per_actor,
        "data": setup.data,
        "market": dataclasses.asdict(setup.envs.source),
        "env": setup.envs.config.as_dict(),
        "annualization": setup.annualization,
        "stop_reason": stop_reason,
    }


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
