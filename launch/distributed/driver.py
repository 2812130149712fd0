"""The actor-learner program of any agent (local_mt, local_mp, ray): its nodes built from the
agent's builder, launched, watched until the first limit (launch/run/limits.py), stopped, and
summarized (launch/run/summary.py). Model selection runs in the evaluator node
(launch/run/selection.py)."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from launch.distributed import nodes
from launch.distributed.program import Program, launch
from launch.run import progress, summary
from launch.run.recorder import Recorder
from launch.run.setup import Setup

log = logging.getLogger(__name__)

STOP_GRACE_S = 3.0  # a node's run() returns within a step (or an evaluation) when nothing blocks it
# Node processes import the code from the repository this module lives in.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_program(setup: Setup) -> Program:
    """The program: recorder, replay, learner, evaluator, actors (in this order), each built
    by the agent's builder (agents.core.AgentBuilder)."""
    workdir, seed = setup.workdir, setup.seed
    common = dict(agent=setup.agent, config=setup.config, spec=setup.spec)
    program = Program(setup.agent)
    recorder = program.add_node("recorder", Recorder, workdir, num_cpus=0)
    replay = program.add_node(
        "replay", nodes.ReplayNode, **common,
        checkpoint_dir=os.path.join(workdir, "checkpoints", "replay"), num_cpus=0,
    )
    learner = program.add_node(
        "learner", nodes.LearnerNode, **common, replay=replay, recorder=recorder, seed=seed,
        checkpoint_dir=setup.learner_dir, max_learner_steps=setup.limits.max_learner_steps,
        checkpoint_every=setup.checkpoint_every, restore=setup.restore,
        num_cpus=1, num_gpus="auto", max_concurrency=4 + 2 * setup.num_actors,
    )
    program.add_node(
        "evaluator", nodes.EvaluatorNode, **common, learner=learner, recorder=recorder,
        envs=setup.envs, eval_every=setup.eval_every, workdir=workdir,
        periods_per_year=setup.periods_per_year, report_test_curve=setup.report_test_curve,
        flat_margin=setup.flat_margin, num_cpus=0,
    )
    actor_env = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}
    for actor_id in range(setup.num_actors):
        program.add_node(
            f"actor_{actor_id}", nodes.ActorNode, **common, learner=learner, replay=replay,
            recorder=recorder, actor_id=actor_id, num_actors=setup.num_actors, seed=seed,
            envs=setup.envs, envs_per_actor=setup.envs_per_actor,
            num_cpus=1, max_restarts=-1, env_vars=actor_env,
        )
    return program


def run(setup: Setup) -> int:
    """Runs the program to its first limit (or an error, Ctrl-C, SIGTERM); writes the
    summary; returns the exit code."""
    start = time.monotonic()
    program = build_program(setup)
    launched = launch(program, setup.launch_type, ray_address=setup.ray_address, code_dir=REPO_ROOT)
    limits = setup.limits
    with launched:
        clients = launched.clients
        recorder, replay = clients["recorder"], clients["replay"]
        running_since = time.monotonic()
        restored_replay_items = replay.size()
        restored_step = clients["learner"].learner_steps()
        view = progress.ProgressLine(limits.max_seconds, param_lag=True)
        state: dict[str, Any] = {"totals": _totals([]), "polled": 0.0}

        def refresh() -> dict[str, Any]:
            if time.monotonic() - state["polled"] >= 1.0:
                state["totals"] = _totals(recorder.latest())
                state["totals"]["replay_items"] = replay.size()
                state["totals"]["mean_param_lag"] = recorder.mean("/param_lag")
                state["polled"] = time.monotonic()
            return state["totals"]

        def stop_when() -> str | None:  # the learner stops itself at max_learner_steps
            env_steps = refresh()["env_steps"] if limits.max_env_steps else 0
            return limits.reason(None, env_steps, time.monotonic() - running_since)

        def on_poll() -> None:
            totals = refresh()
            view.update(time.monotonic() - running_since, totals["env_steps"],
                        totals["learner_steps"], totals["evaluator"], totals["replay_items"],
                        totals["mean_param_lag"])

        with view:
            outcome = launched.wait(stop_when=stop_when, on_poll=on_poll)
        reason = limits.learner_limit if outcome.reason == "learner finished" else outcome.reason
        log.info("stopping: %s", reason)
        run_s = time.monotonic() - running_since
        # Actors stop first, while the learner still samples (see Launched.stop).
        launched.stop(grace_s=STOP_GRACE_S)
        final_validation: dict[str, Any] = {}
        test: dict[str, Any] = {}
        if not launched.errors:
            try:  # the final parameters compete on validation, then the best is tested once
                final_validation = clients["evaluator"].evaluate(final=True)
                test = clients["evaluator"].evaluate_test()
            except Exception as error:  # noqa: BLE001 - the summary says so; the rest closes.
                log.error("final evaluation failed: %s", error)
        try:
            best = clients["evaluator"].best()
        except Exception as error:  # noqa: BLE001 - a lost evaluator: the errors say why.
            log.error("could not read the evaluator's best parameters: %s", error)
            best = None
        # Users of the replay close first (their writers flush), so replay_items is what the
        # replay checkpoint written by its close() holds.
        launched.close_nodes([label for label in launched.labels
                              if label not in ("recorder", "replay")])
        result = _totals(recorder.latest())
        replay_items = replay.size()
        mean_param_lag = recorder.mean("/param_lag")
        launched.close()
    pids = launched.pids()
    actor_labels = [label for label in pids if label.startswith("actor_")]
    steps_by_process = result["env_steps_by_process"]
    validation, test_summary, _ = summary.selection(
        setup, [best], [final_validation or result["evaluator"]], [test] if test else [])
    return summary.finish(setup, summary.build(
        setup, launch_type=launched.launch_type, stop_reason=reason,
        counts=summary.Counts(env_steps=result["env_steps"],
                              learner_steps=max(result["learner_steps"], restored_step),
                              restored_step=restored_step, replay_items=replay_items,
                              wall_s=time.monotonic() - start, run_s=run_s),
        validation=validation, test=test_summary,
        launch={
            "num_actors": setup.num_actors,
            "envs_per_actor": setup.envs_per_actor,
            "node_pids": pids,
            "actor_pids": sorted({int(key.rsplit("/", 1)[1]) for key, steps in steps_by_process.items()
                                  if steps > 0 and key.rsplit("/", 1)[1].isdigit()}),
            "env_steps_by_actor_process": steps_by_process,
            "actor_restarts": sum(launched.restarts()[label] for label in actor_labels),
            "param_syncs": result["param_syncs"],  # parameter fetches of all actor processes
            "mean_param_lag": mean_param_lag,
            "restored_replay_items": restored_replay_items if setup.restore else None,
        },
        errors=[str(error) for error in launched.errors]))


def _totals(latest: list[dict[str, Any]]) -> dict[str, Any]:
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
        "param_syncs": param_syncs,
        # the newest validation record, without its node prefix
        "evaluator": {key.split("/", 1)[1]: value for key, value in evaluator.items() if "/" in key},
    }
