"""End-to-end: `launch/apex.py --lp_launch_type=anakin` in subprocesses with tiny limits: the
workdir outputs of the other launch types, --num_seeds agents selected each on its own, the
same figures from the same flags (two identical 2-seed runs), --restore of the second."""

import json
import math
import os
import subprocess
import sys

import pytest

from test_launch_apex import (EVAL_KEYS, SUMMARY_KEYS, array_leaves, assert_torso_and_parameter_count,
                              read_metrics, read_summary, run_apex, with_agent_config)

# A tiny Ape-X DQN: 16 envs x 4 steps a cycle (64 items: learning starts after the first
# cycle), 2 updates of 32 items a cycle, a 32x32 MLP; compilation dominates. The 2-seed runs
# put a conv torso under it (test_launch_apex.TINY_TRANSFORMER says which run takes which).
TINY_ANAKIN = [
    "--lp_launch_type=anakin",
    "--agent_config=min_replay_size=64,batch_size=32,hidden_sizes=(32,32),target_update_period=10,"
    "anakin_num_envs=16,anakin_rollout_steps=4,anakin_updates_per_cycle=2,max_replay_size=1024",
    "--synthetic_steps=600", "--window=8", "--episode_length=32", "--eval_every=10",
    "--checkpoint_every=10",
]


TINY_ANAKIN_CONV = with_agent_config(TINY_ANAKIN, "torso=conv,torso_width=8,torso_depth=1")


def _run(workdir, *flags):
    # These runs test the agent's kept parameters: flat is no candidate (test_run_layer.py tests
    # the flat candidate under both drivers; the IMPALA run below keeps it).
    result = run_apex(*TINY_ANAKIN_CONV, "--noflat_candidate", f"--workdir={workdir}", *flags,
                      timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    return read_summary(workdir), result


IMPALA_FLAGS = [
    "--lp_launch_type=anakin", "--agent=impala", "--max_learner_steps=20",
    "--agent_config=sequence_length=5,batch_size=4,hidden_sizes=(32,),anakin_num_envs=8,"
    "torso=transformer,torso_width=16,torso_depth=1,torso_heads=2",
    "--synthetic_steps=600", "--window=8", "--episode_length=32", "--eval_every=10",
    "--checkpoint_every=10"]
TWO_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The module's independent runs, started side by side (each compiles mostly on one core):
    name -> (workdir, subprocess.CompletedProcess). The same 2-seed run twice ("first",
    "second"), IMPALA ("impala") and Ape-X on 2 forced host devices ("two_devices")."""
    from test_launch_apex import APEX, REPO_ROOT, _env

    commands = {"first": (TINY_ANAKIN_CONV + ["--noflat_candidate", "--num_seeds=2", "--max_learner_steps=30"], {}),
                "second": (TINY_ANAKIN_CONV + ["--noflat_candidate", "--num_seeds=2", "--max_learner_steps=30"], {}),
                "impala": (IMPALA_FLAGS, {}),
                "two_devices": (TINY_ANAKIN + ["--max_learner_steps=20"], TWO_DEVICES)}
    started = {}
    for name, (flags, env) in commands.items():
        workdir = str(tmp_path_factory.mktemp(f"anakin_{name}") / "run")
        started[name] = (workdir, flags, subprocess.Popen(
            [sys.executable, APEX, *flags, f"--workdir={workdir}"], cwd=REPO_ROOT, env=dict(_env(), **env),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    finished = {}
    for name, (workdir, flags, process) in started.items():
        stdout, stderr = process.communicate(timeout=300)
        finished[name] = (workdir, subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
    return finished


@pytest.fixture(scope="module")
def two_seeds_twice(runs):
    """The same 2-seed run twice: (workdir, summary, result) of each. The first serves the
    output and selection tests, the pair the determinism test, the second --restore."""
    pair = []
    for name in ("first", "second"):
        workdir, result = runs[name]
        assert result.returncode == 0, result.stderr[-3000:]
        pair.append((workdir, read_summary(workdir), result))
    return pair


@pytest.fixture(scope="module")
def two_seeds(two_seeds_twice):
    return two_seeds_twice[0]


@pytest.mark.e2e
def test_anakin_writes_the_outputs_of_the_other_launch_types(two_seeds):
    workdir, summary, result = two_seeds
    assert set(summary) == SUMMARY_KEYS | {"seeds"}  # the distributed keys, and each seed's
    assert summary["launch_type"] == "anakin" and summary["num_seeds"] == 2
    assert summary["stop_reason"] == "limit: max_learner_steps=30" and summary["learner_steps"] == 30
    assert summary["errors"] == [] and summary["env_steps"] > 0 and summary["launch"]["compile_s"] > 0
    assert_torso_and_parameter_count(workdir, summary, "conv")
    for key in EVAL_KEYS:
        assert math.isfinite(summary["test"][key]), (key, summary["test"])
    assert "eval" not in summary and summary["test"]["num_markets"] == 8
    # One seed's in-graph replay: at most its env steps and its capacity (max_replay_size).
    assert 0 < summary["replay_items"] <= min(1024, summary["env_steps"] // 2)
    records = read_metrics(workdir)
    assert [r["node"] for r in records].count("test") == 1  # tested once, at the end
    assert {"learner", "evaluator"} <= {r["node"] for r in records}
    assert any(name.startswith("events.out.tfevents")
               for name in os.listdir(os.path.join(workdir, "tensorboard")))
    plots = os.listdir(os.path.join(workdir, "eval"))
    assert "test_equity.png" in plots and any(p.startswith("validation_equity_") for p in plots)
    assert "learner_30.msgpack" in os.listdir(os.path.join(workdir, "checkpoints", "learner"))
    assert workdir in result.stdout


@pytest.mark.e2e
def test_num_seeds_trains_distinct_agents_each_selected_on_its_own_validation(two_seeds):
    workdir, summary, _ = two_seeds
    seeds = summary["seeds"]
    assert [seed["seed"] for seed in seeds] == [0, 1]
    # Each seed's selection is the step of its own best validation Sharpe, and that is tested.
    evaluations = [r for r in read_metrics(workdir) if r["node"] == "evaluator"]
    for s, seed in enumerate(seeds):
        by_step = {r["evaluator/learner_steps"]: r["evaluator/sharpe_by_seed"][s] for r in evaluations}
        best_step = max(by_step, key=by_step.get)
        assert seed["validation"]["learner_steps"] == best_step == seed["test"]["learner_steps"]
        assert seed["validation"]["best_sharpe"] == by_step[best_step]
        best_dir = os.path.join(workdir, "checkpoints", "best", f"seed_{s}")
        with open(os.path.join(best_dir, "best.json")) as file:
            assert json.load(file)["learner_steps"] == best_step
    params = [open(os.path.join(workdir, "checkpoints", "best", f"seed_{s}", "params.msgpack"),
                   "rb").read() for s in range(2)]
    assert params[0] != params[1]  # their own parameters from their own keys
    assert seeds[0]["test"]["sharpe_by_market"] != seeds[1]["test"]["sharpe_by_market"]
    # The usual keys hold the medians over the seeds.
    sharpes = sorted(seed["test"]["sharpe"] for seed in seeds)
    assert summary["test"]["sharpe"] == pytest.approx(sum(sharpes) / 2)
    assert summary["test"]["sharpe_by_seed"] == [seed["test"]["sharpe"] for seed in seeds]
    assert summary["validation"]["learner_steps_by_seed"] == [
        seed["validation"]["learner_steps"] for seed in seeds]


@pytest.mark.e2e
def test_the_same_flags_and_seed_give_the_same_figures(two_seeds_twice):
    (_, first, _), (_, second, _) = two_seeds_twice
    assert first["learner_steps"] == second["learner_steps"] == 30
    assert first["env_steps"] == second["env_steps"]
    assert first["validation"] == second["validation"]
    assert first["test"] == second["test"]
    assert first["seeds"] == second["seeds"]  # each seed's validation and test, market by market
    assert first["seeds"][0]["test"]["sharpe_by_market"] != first["seeds"][1]["test"]["sharpe_by_market"]


@pytest.mark.e2e
def test_restore_continues_the_training_state(two_seeds_twice):
    workdir, first, _ = two_seeds_twice[1]
    summary, _ = _run(workdir, "--restore", "--num_seeds=2", "--max_learner_steps=40")
    assert summary["restored_from_step"] == 30 and summary["learner_steps"] == 40
    assert summary["env_steps"] > first["env_steps"]  # the envs' step counter came back too
    assert "learner_40.msgpack" in os.listdir(os.path.join(workdir, "checkpoints", "learner"))
    # Each seed's selection so far is kept: a later best must beat the first run's.
    for seed, before in zip(summary["seeds"], first["seeds"]):
        assert seed["validation"]["best_sharpe"] >= before["validation"]["best_sharpe"]
    learner_steps = [r["learner/learner_steps"] for r in read_metrics(workdir) if r["node"] == "learner"]
    assert max(learner_steps) == 40 and 30 in learner_steps
    # A checkpoint of two seeds does not continue as one.
    other = run_apex(*TINY_ANAKIN_CONV, f"--workdir={workdir}", "--restore", "--max_learner_steps=50", timeout=180)
    assert other.returncode == 2
    assert ("apex.py: error: --restore: " in other.stderr and "learner_40.msgpack: does not match"
            in other.stderr and "expected (1, 1" in other.stderr and "[devices, seeds] = [1, 1]"
            in other.stderr), other.stderr[-2000:]


@pytest.mark.e2e
def test_impala_under_anakin_writes_validation_and_test(runs):
    """The on-policy shape: T-step rollouts of 8 envs straight into the V-trace update, here
    through a transformer torso."""
    workdir, result = runs["impala"]
    assert result.returncode == 0, result.stderr[-3000:]
    summary = read_summary(workdir)
    assert set(summary) == SUMMARY_KEYS | {"seeds"}  # the distributed keys, and each seed's and summary["agent"] == "impala"
    assert_torso_and_parameter_count(workdir, summary, "transformer")
    assert summary["learner_steps"] == 20 and summary["errors"] == []
    assert summary["replay_items"] is None  # rollouts go straight into the update: no replay
    assert summary["validation"]["best_sharpe"] is not None
    for key in EVAL_KEYS:
        assert math.isfinite(summary["test"][key]), (key, summary["test"])
    # Flat is a candidate by default: the agent's best is tested only if it beat flat's margin.
    test, best_sharpe = summary["test"], summary["validation"]["best_sharpe"]
    assert test["flat_threshold"] > 0 and test["policy"] in ("agent", "flat")
    if test["policy"] == "agent":
        assert best_sharpe > test["flat_threshold"] and test["learner_steps"] is not None
    else:
        assert best_sharpe <= test["flat_threshold"] and test["learner_steps"] is None
        assert test["sharpe"] == test["total_return"] == test["turnover"] == 0.0
    learner = [r for r in read_metrics(workdir) if r["node"] == "learner"]
    assert learner and all(0.0 < r["learner/entropy"] <= 1.0987 for r in learner)  # log(3) at most


@pytest.mark.e2e
def test_two_devices_average_one_agent_over_their_own_envs(runs):
    """pmap over 2 forced host devices: each device steps its own envs (env steps add up),
    and the parameters stay identical on both."""
    import glob

    import numpy as np
    from flax import serialization

    workdir, result = runs["two_devices"]
    assert result.returncode == 0, result.stderr[-3000:]
    summary = read_summary(workdir)
    assert summary["launch"]["num_devices"] == 2 and summary["learner_steps"] == 20
    cycles = 1 + 20 // 2  # the first cycle fills min_replay_size=64; then 2 updates a cycle
    assert summary["env_steps"] == 2 * cycles * 16 * 4  # 2 devices x 16 envs x 4 steps a cycle
    path = sorted(glob.glob(os.path.join(workdir, "checkpoints", "learner", "*.msgpack")))[-1]
    with open(path, "rb") as file:
        state = serialization.msgpack_restore(file.read())
    params = [np.asarray(leaf) for leaf in array_leaves(state["learner"]["params"])]
    assert params and all(leaf.shape[:2] == (2, 1) for leaf in params)  # [devices, seeds, ...]
    for leaf in params:
        np.testing.assert_array_equal(leaf[0], leaf[1])
    positions = np.asarray(state["env_states"]["t"])  # [devices, seeds, envs]: bars differ
    assert not np.array_equal(positions[0], positions[1])


@pytest.mark.e2e
def test_ctrl_c_while_compiling_stops_after_one_cycle_and_writes_the_summary(tmp_path):
    """SIGINT once the run says it is compiling: compiling ends, one cycle runs, and the run
    stops as at a limit (exit 130, checkpoint, summary)."""
    import signal

    from test_launch_apex import APEX, REPO_ROOT, _env

    workdir = str(tmp_path / "run")
    process = subprocess.Popen([sys.executable, APEX, *TINY_ANAKIN, f"--workdir={workdir}",
                                "--max_seconds=600"], cwd=REPO_ROOT, env=_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if "compiling the training cycle" in line:
                break
        process.send_signal(signal.SIGINT)
        output = "".join(lines) + process.communicate(timeout=180)[0]
    finally:
        process.kill()
    assert process.returncode == 130, output[-3000:]
    summary = read_summary(workdir)
    assert summary["stop_reason"] == "interrupted (SIGINT)" and summary["errors"] == []
    assert summary["env_steps"] == 16 * 4  # one cycle of 16 envs x 4 steps (then no update yet)
    assert summary["launch"]["compile_s"] > 0 and "Traceback" not in output
    assert os.listdir(os.path.join(workdir, "checkpoints", "learner"))
