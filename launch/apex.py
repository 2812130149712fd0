"""Distributed training on a trading market: `python launch/apex.py --lp_launch_type=local_mp`
trains Ape-X DQN by default; `--agent=<name>` runs any agent of agents/registry.py.

Builds the program (recorder, replay, learner, evaluator, N actors) from the agent's builder,
launches it, shows a live progress line, stops at the first limit reached (or on an error,
Ctrl-C or SIGTERM), and leaves in the workdir: metrics.jsonl, TensorBoard events, eval plots,
learner and replay checkpoints, and summary.json.
"""

from __future__ import annotations

import os
import sys

# Before anything imports jax or tensorflow (in this process; node processes get the same
# through Ray's runtime_env).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.join(REPO_ROOT, "launch"):
    sys.path[0] = REPO_ROOT  # run as a script: import `launch.*`, never launch/ as top level.
elif REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import dataclasses  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from absl import app, flags  # noqa: E402

from launch import program as lp  # noqa: E402
from launch import progress  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("lp_launch_type", "local_mp", list(lp.LAUNCH_TYPES),
                  "local_mt: threads in this process; local_mp: one process per node on a local "
                  "Ray instance; ray: join the Ray cluster at --ray_address.")
flags.DEFINE_string("ray_address", None, "HOST:PORT of a running Ray cluster (--lp_launch_type=ray).")
flags.DEFINE_string("agent", "apex_dqn", "Agent builder, by its name in agents/registry.py.")
flags.DEFINE_string("agent_preset", "small", "Named settings of the agent's config (agents' "
                    "config.py PRESETS): 'small' learns on a 2-core machine in minutes; "
                    "'apex_paper' is Ape-X's paper settings, for a GPU learner and many actors.")
flags.DEFINE_string("agent_config", "", "Overrides of the agent's config (on top of the preset): "
                    "key=value,key=value.")
flags.DEFINE_integer("num_actors", 2, "Actor nodes (processes under local_mp).")
flags.DEFINE_integer("envs_per_actor", 8, "Environments each actor steps as one batch.")
flags.DEFINE_string("data", "synthetic", "Market: 'synthetic' (= synthetic:ou), synthetic:gbm, "
                    "synthetic:regime (a process: distinct train/validation/test paths), the "
                    "path of an OHLCV CSV file, a folder of CSV files or a quoted glob pattern "
                    "such as 'bars/*.csv' (one market per file; each split chronologically).")
flags.DEFINE_string("date_format", None, "strptime format of the CSV's timestamps (default: guessed).")
flags.DEFINE_string("data_cache", None, "CSV data cache (environments/data_cache.py): 'off', or "
                    "a folder every node can write or read; default: $APEX_DATA_CACHE, else "
                    "beside the CSV when writable, else ~/.cache/apex-trader.")
flags.DEFINE_integer("synthetic_steps", 4096, "Bars of each synthetic path.")
flags.DEFINE_integer("synthetic_paths", 32, "Training paths of a synthetic market (distinct seeds).")
flags.DEFINE_integer("validation_paths", 4, "Held-out synthetic paths for model selection.")
flags.DEFINE_integer("test_paths", 8, "Held-out synthetic paths for the final test.")
flags.DEFINE_float("train_fraction", 0.6, "CSV: the first fraction of the bars for training.")
flags.DEFINE_float("validation_fraction", 0.2, "CSV: the next fraction for model selection; the "
                   "rest is the test split.")
flags.DEFINE_integer("window", 2, "Bars in one observation.")
flags.DEFINE_float("commission_bps", 1.0, "Commission per unit of traded notional, in bps.")
flags.DEFINE_float("spread_bps", 1.0, "Half-spread paid per unit of traded notional, in bps.")
flags.DEFINE_float("borrow_bps_per_step", 0.4, "Cost of holding a short position, bps per step.")
flags.DEFINE_list("positions", ["-1", "0", "1"], "Target positions the actions choose from "
                  "(fractions of portfolio value).")
flags.DEFINE_float("periods_per_year", 0.0, "Bars per year for Sharpe and annualized return; "
                   "0: inferred from the bars' spacing and calendar.")
flags.DEFINE_bool("report_test_curve", False, "Also log test metrics at every evaluation, for "
                  "plots only (selection never reads them).")
flags.DEFINE_integer("episode_length", 256, "Steps of a training episode.")
flags.DEFINE_integer("max_learner_steps", 0, "Stop when the learner reaches this step "
                     "(restored steps count); 0: no limit.")
flags.DEFINE_integer("max_env_steps", 0, "Stop after this many env steps of all actors; 0: no limit.")
flags.DEFINE_float("max_seconds", 240.0, "Stop after this many seconds of running nodes; 0: no limit.")
flags.DEFINE_string("workdir", None, "Output folder (default: a new folder under ./runs/).")
flags.DEFINE_integer("seed", 0, "Seed of the market, the learner and the actors.")
flags.DEFINE_bool("restore", False, "Continue from the workdir's last learner and replay checkpoints.")
flags.DEFINE_integer("eval_every", 500, "Evaluate on the validation split every this many learner "
                     "steps (and once at the end); the best parameters are tested once at the end.")
flags.DEFINE_integer("checkpoint_every", 1000, "Learner checkpoint every this many steps "
                     "(and at the end); 0: only at the end.")

log = logging.getLogger("launch.apex")

STOP_GRACE_S = 3.0  # a node's run() returns within a step (or an evaluation) when nothing blocks it


class UsageError(ValueError):
    """A flag value that cannot work; the message names the flag and what was expected."""


@dataclasses.dataclass
class Setup:
    """Everything checked before any process starts."""

    builder: Any
    config: Any
    spec: Any
    market: Any  # an environments.MarketSource
    env_kwargs: dict
    workdir: str
    periods_per_year: float | None  # None: inferred from each market's bars
    annualization: str  # how the test split is annualized, for the user


def check_flags() -> Setup:
    """Validates every flag (loading the data and building the envs of each split)."""
    counts = {"num_actors": 1, "envs_per_actor": 1, "window": 1, "episode_length": 1,
              "eval_every": 1, "synthetic_steps": 2, "synthetic_paths": 1, "validation_paths": 1,
              "test_paths": 1, "max_learner_steps": 0, "max_env_steps": 0, "checkpoint_every": 0}
    for name, minimum in counts.items():
        if getattr(FLAGS, name) < minimum:
            raise UsageError(f"--{name}={getattr(FLAGS, name)}: expected an integer >= {minimum}")
    if not (FLAGS.max_seconds >= 0 and math.isfinite(FLAGS.max_seconds)):
        raise UsageError(f"--max_seconds={FLAGS.max_seconds}: expected a number >= 0")
    if not (0 < FLAGS.train_fraction < 1 and 0 < FLAGS.validation_fraction < 1
            and FLAGS.train_fraction + FLAGS.validation_fraction < 1):
        raise UsageError(f"--train_fraction={FLAGS.train_fraction} "
                         f"--validation_fraction={FLAGS.validation_fraction}: expected two numbers "
                         "in (0, 1) whose sum is < 1 (the rest is the test split)")
    if not (FLAGS.periods_per_year >= 0 and math.isfinite(FLAGS.periods_per_year)):
        raise UsageError(f"--periods_per_year={FLAGS.periods_per_year}: expected a number > 0, "
                         "or 0 to infer it from the data")
    if FLAGS.lp_launch_type == "ray" and not FLAGS.ray_address:
        raise UsageError("--lp_launch_type=ray needs --ray_address=HOST:PORT of a running Ray cluster")
    if FLAGS.ray_address and FLAGS.lp_launch_type != "ray":
        raise UsageError(f"--ray_address is only used with --lp_launch_type=ray "
                         f"(got --lp_launch_type={FLAGS.lp_launch_type})")
    try:
        positions = [float(p) for p in FLAGS.positions]
    except ValueError:
        raise UsageError(f"--positions={','.join(FLAGS.positions)}: expected numbers separated "
                         "by commas, e.g. -1,0,1") from None

    workdir = os.path.abspath(FLAGS.workdir or os.path.join(
        "runs", datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + f"-{FLAGS.agent}"))
    learner_dir = os.path.join(workdir, "checkpoints", "learner")
    if FLAGS.restore:
        from launch import checkpoints

        if not FLAGS.workdir:
            raise UsageError("--restore needs --workdir, the folder of the run to continue")
        if not checkpoints.checkpoint_steps(learner_dir):
            raise UsageError(f"--restore: no learner checkpoint in {learner_dir}")
    elif os.path.isdir(workdir) and os.listdir(workdir):
        raise UsageError(f"--workdir={workdir} is not empty; pass --restore to continue that run "
                         f"or choose a new folder")

    # Data and envs first (numpy only); the agent's builder (jax, reverb) is imported last.
    from environments import MarketDataError, MarketSource, TradingEnv, TradingVectorEnv
    from environments.metrics import infer_periods_per_year

    from agents.config_checks import ConfigError, parse_overrides
    from agents.registry import get_builder, get_config_module

    market = MarketSource(
        FLAGS.data, FLAGS.date_format, FLAGS.synthetic_steps, FLAGS.synthetic_paths,
        FLAGS.validation_paths, FLAGS.test_paths, FLAGS.seed, FLAGS.train_fraction,
        FLAGS.validation_fraction, FLAGS.data_cache)
    try:
        splits = market.load()
    except FileNotFoundError as error:
        raise UsageError(f"--data={FLAGS.data}: {error.strerror}") from None
    except (MarketDataError, ValueError) as error:
        raise UsageError(f"--data={FLAGS.data}: {error}") from None
    env_kwargs = dict(window=FLAGS.window, episode_length=FLAGS.episode_length,
                      commission_bps=FLAGS.commission_bps, spread_bps=FLAGS.spread_bps,
                      borrow_bps_per_step=FLAGS.borrow_bps_per_step, positions=tuple(positions))
    env_flags = " ".join(f"--{name}={getattr(FLAGS, name)}" for name in (
        "window", "episode_length", "commission_bps", "spread_bps", "borrow_bps_per_step"))
    try:
        train_env = TradingVectorEnv(list(splits.train), num_envs=1, mode="train", **env_kwargs)
        for part in ("validation", "test"):
            for one in splits.part(part):
                TradingEnv(one, mode="eval", **env_kwargs)
    except (MarketDataError, ValueError) as error:
        raise UsageError(f"{env_flags} --positions={','.join(FLAGS.positions)} "
                         f"--data={FLAGS.data}: {error}") from None
    if FLAGS.periods_per_year:
        periods_per_year = FLAGS.periods_per_year
        annualization = f"{FLAGS.periods_per_year:g} periods per year (--periods_per_year)"
    else:
        periods_per_year = None
        annualization = (f"{infer_periods_per_year(splits.test[0].timestamps)[1]} periods per "
                         "year, inferred from the bars (override: --periods_per_year)")
    try:
        agent_config = get_config_module(FLAGS.agent)
    except ValueError as error:
        raise UsageError(str(error)) from None
    try:
        overrides = parse_overrides(FLAGS.agent_config, agent_config.Config)
    except ConfigError as error:
        raise UsageError(f"--agent_config: {error}") from None
    try:
        config = agent_config.make_config(preset=FLAGS.agent_preset, **overrides)
    except (TypeError, ValueError) as error:
        raise UsageError(f"--agent_preset={FLAGS.agent_preset} --agent_config="
                         f"{FLAGS.agent_config!r}: {error}") from None
    builder = get_builder(FLAGS.agent)  # jax, TensorFlow and Reverb load here, after the checks
    spec = builder.make_environment_spec(train_env)
    train_env.close()
    return Setup(builder, config, spec, market, env_kwargs, workdir, periods_per_year,
                 annualization)


def build_program(setup: Setup) -> lp.Program:
    """The program: recorder, replay, learner, evaluator, actors (in this order), each built
    by the agent's builder (agents.core.AgentBuilder)."""
    from launch import nodes
    from launch.recorder import Recorder

    workdir, agent, seed = setup.workdir, FLAGS.agent, FLAGS.seed
    common = dict(agent=agent, config=setup.config, spec=setup.spec)
    program = lp.Program(FLAGS.agent)
    recorder = program.add_node("recorder", Recorder, workdir, num_cpus=0)
    replay = program.add_node(
        "replay", nodes.ReplayNode, **common,
        checkpoint_dir=os.path.join(workdir, "checkpoints", "replay"), num_cpus=0,
    )
    learner = program.add_node(
        "learner", nodes.LearnerNode, **common, replay=replay, recorder=recorder, seed=seed,
        checkpoint_dir=os.path.join(workdir, "checkpoints", "learner"),
        max_learner_steps=FLAGS.max_learner_steps, checkpoint_every=FLAGS.checkpoint_every,
        restore=FLAGS.restore,
        num_cpus=1, num_gpus="auto", max_concurrency=4 + 2 * FLAGS.num_actors,
    )
    program.add_node(
        "evaluator", nodes.EvaluatorNode, **common, learner=learner, recorder=recorder,
        market=setup.market, env_kwargs=setup.env_kwargs, eval_every=FLAGS.eval_every,
        eval_dir=os.path.join(workdir, "eval"), best_dir=os.path.join(workdir, "checkpoints", "best"),
        periods_per_year=setup.periods_per_year, report_test_curve=FLAGS.report_test_curve,
        num_cpus=0,
    )
    actor_env = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}
    for actor_id in range(FLAGS.num_actors):
        program.add_node(
            f"actor_{actor_id}", nodes.ActorNode, **common, learner=learner, replay=replay,
            recorder=recorder, actor_id=actor_id, num_actors=FLAGS.num_actors, seed=seed,
            market=setup.market, envs_per_actor=FLAGS.envs_per_actor, env_kwargs=setup.env_kwargs,
            num_cpus=1, max_restarts=-1, env_vars=actor_env,
        )
    return program


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


def run(setup: Setup) -> int:
    workdir = setup.workdir
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "flags.txt"), "a") as file:
        file.write(FLAGS.flags_into_string() + "\n")
    log.info("workdir: %s", workdir)
    start = time.monotonic()
    program = build_program(setup)
    launched = program.launch(FLAGS.lp_launch_type, ray_address=FLAGS.ray_address, code_dir=REPO_ROOT)
    with launched:
        clients = launched.clients
        recorder, replay = clients["recorder"], clients["replay"]
        running_since = time.monotonic()
        restored_replay_items = replay.size()
        restored_step = clients["learner"].learner_steps()
        view = progress.ProgressLine(FLAGS.max_seconds)
        state: dict[str, Any] = {"totals": totals([]), "polled": 0.0}

        def refresh() -> dict[str, Any]:
            if time.monotonic() - state["polled"] >= 1.0:
                state["totals"] = totals(recorder.latest())
                state["totals"]["replay_items"] = replay.size()
                state["totals"]["mean_param_lag"] = recorder.mean("/param_lag")
                state["polled"] = time.monotonic()
            return state["totals"]

        def stop_when() -> str | None:
            elapsed = time.monotonic() - running_since
            if FLAGS.max_seconds and elapsed >= FLAGS.max_seconds:
                return f"limit: max_seconds={FLAGS.max_seconds:g}"
            if FLAGS.max_env_steps and refresh()["env_steps"] >= FLAGS.max_env_steps:
                return f"limit: max_env_steps={FLAGS.max_env_steps}"
            return None

        def on_poll() -> None:
            view.update(time.monotonic() - running_since, refresh(), restored_step)

        with view:
            outcome = launched.wait(stop_when=stop_when, on_poll=on_poll)
        reason = outcome.reason
        if reason == "learner finished":
            reason = f"limit: max_learner_steps={FLAGS.max_learner_steps}"
        log.info("stopping: %s", reason)
        run_s = time.monotonic() - running_since
        # Nodes blocked on the replay (a rate-limited insert, a sample that will never come)
        # after STOP_GRACE_S are unblocked by closing the replay (see Launched.stop).
        launched.stop(grace_s=STOP_GRACE_S)
        final_validation: dict[str, Any] = {}
        test: dict[str, Any] = {}
        if not launched.errors:
            try:  # the final parameters compete on validation, then the best is tested once
                final_validation = clients["evaluator"].evaluate()
                test = clients["evaluator"].evaluate_test()
            except Exception as error:  # noqa: BLE001 - the summary says so; the rest closes.
                log.error("final evaluation failed: %s", error)
        try:
            best = clients["evaluator"].best() or {}
        except Exception as error:  # noqa: BLE001 - a lost evaluator: the errors say why.
            log.error("could not read the evaluator's best parameters: %s", error)
            best = {}
        # Users of the replay close first (their writers flush), so replay_items is what the
        # replay checkpoint written by its close() holds.
        for label in reversed(launched.labels):
            if label not in ("recorder", "replay"):
                launched.close_node(label)
        result = totals(recorder.latest())
        result["replay_items"] = replay.size()
        result["mean_param_lag"] = recorder.mean("/param_lag")
        launched.close()
    errors = launched.errors
    wall_s = time.monotonic() - start
    pids = launched.pids()
    actor_labels = [label for label in pids if label.startswith("actor_")]
    steps_by_process = result["env_steps_by_process"]
    learner_steps = max(result["learner_steps"], restored_step)
    test_metrics = {key: test.get(key) for key in (
        "total_return", "sharpe", "max_drawdown", "buy_and_hold_return", "buy_and_hold_sharpe",
        "annualized_return", "sortino", "turnover", "hit_rate", "learner_steps", "num_markets",
        "sharpe_by_market", "periods_per_year", "annualization", "selected_by")}
    validation = {
        "best_sharpe": best.get("sharpe"), "learner_steps": best.get("learner_steps"),
        "best_total_return": best.get("total_return"),
        "buy_and_hold_sharpe": best.get("buy_and_hold_sharpe"),
        "final_sharpe": final_validation.get("sharpe", result["eval"].get("sharpe")),
        "evaluations": final_validation.get("evaluations", result["eval"].get("evaluations")),
    }
    summary = {
        "launch_type": launched.launch_type,
        "agent": FLAGS.agent,
        "agent_preset": FLAGS.agent_preset,
        "agent_config": dataclasses.asdict(setup.config),
        "num_actors": FLAGS.num_actors,
        "envs_per_actor": FLAGS.envs_per_actor,
        "data": FLAGS.data,
        "market": dataclasses.asdict(setup.market),
        "env": {key: list(value) if isinstance(value, tuple) else value
                for key, value in setup.env_kwargs.items()},
        "annualization": setup.annualization,
        "stop_reason": reason,
        "env_steps": result["env_steps"],
        "learner_steps": learner_steps,
        "restored_from_step": restored_step if FLAGS.restore else None,
        "restored_replay_items": restored_replay_items if FLAGS.restore else None,
        "wall_s": round(wall_s, 2),
        "run_s": round(run_s, 2),
        "env_steps_per_s": result["env_steps"] / run_s if run_s > 0 else 0.0,
        "learner_steps_per_s": (learner_steps - restored_step) / run_s if run_s > 0 else 0.0,
        "replay_items": result["replay_items"],
        "actor_pids": sorted({int(key.rsplit("/", 1)[1]) for key, steps in steps_by_process.items()
                              if steps > 0 and key.rsplit("/", 1)[1].isdigit()}),
        "env_steps_by_actor_process": steps_by_process,
        "actor_restarts": sum(launched.restarts()[label] for label in actor_labels),
        "node_pids": pids,
        "param_syncs": result["param_syncs"],
        "mean_param_lag": result["mean_param_lag"],
        "validation": validation,
        "test": test_metrics,
        "eval": test_metrics,  # the test result, under its older name
        "errors": [str(error) for error in errors],
        "workdir": workdir,
    }
    with open(os.path.join(workdir, "summary.json"), "w") as file:
        json.dump(summary, file, indent=2, default=str)
    for error in errors:
        print(f"ERROR {error}", file=sys.stderr)
    print(progress.final_report(summary), flush=True)
    if errors:
        from launch import checkpoints

        if checkpoints.checkpoint_steps(os.path.join(workdir, "checkpoints", "learner")):
            print(f"the run stopped on an error; once its cause is fixed, to continue from its "
                  f"last checkpoint: python launch/apex.py --restore --workdir={workdir} (and the "
                  "same flags)", file=sys.stderr)
        return 1
    if reason.startswith("interrupted"):
        return 130 if "SIGINT" in reason else 143
    return 0


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing that fails with one line (the flag, the value, what was expected)."""
    try:
        return FLAGS(argv)
    except flags.Error as error:
        print(f"apex.py: error: {error}", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        print(f"apex.py: error: unexpected arguments {argv[1:]} (flags are --name=value)", file=sys.stderr)
        sys.exit(2)
    lp.configure_logging()
    try:
        setup = check_flags()
    except UsageError as error:
        print(f"apex.py: error: {error}", file=sys.stderr)
        sys.exit(2)
    sys.exit(run(setup))


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
