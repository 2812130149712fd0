"""End-to-end: the real launcher (`launch/apex.py`) in subprocesses with tiny limits.

Runs are shared between tests where that keeps them honest (a restore continues the
local_mt run; the local_mp run is also the one whose actor is killed and which is ended
with Ctrl-C), because each Ray start costs several seconds on a 2-core machine. The Ray
cluster helpers below serve test_launch_impala.py's cluster run (`--lp_launch_type=ray`).
"""

import contextlib
import glob
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
APEX = os.path.join(REPO_ROOT, "launch", "apex.py")

# A tiny agent and market: learning starts after 64 items, 32-item batches, a 32x32 MLP.
TINY = [
    "--agent_config=min_replay_size=64,batch_size=32,hidden_sizes=(32,32),"
    "variable_update_period=40,prefetch_batches=1,target_update_period=10",
    "--envs_per_actor=4", "--synthetic_steps=600", "--window=8", "--episode_length=32",
    "--eval_every=10", "--checkpoint_every=10",
]
# Each torso runs end to end under both shapes of the program, in runs the suite makes anyway:
# the local_mt runs take a transformer (here) and a conv (test_launch_impala.py), the anakin
# runs a conv (2 seeds) and a transformer (IMPALA) (test_launch_anakin.py); the mlp, the
# default, runs under local_mp, ray and anakin on 2 devices. One config value switches it.
def with_agent_config(flags, settings):
    """`flags` with `settings` appended to their --agent_config."""
    return [flag + "," + settings if flag.startswith("--agent_config=") else flag for flag in flags]


TINY_TRANSFORMER = with_agent_config(TINY, "torso=transformer,torso_width=16,torso_depth=1,torso_heads=2")
# summary.json's keys under every launch type (launch/run/summary.py); anakin adds "seeds".
SUMMARY_KEYS = {
    "launch_type", "agent", "agent_preset", "agent_config", "torso", "parameter_count", "data",
    "market", "env", "annualization", "return_volatility", "seed", "num_seeds", "stop_reason",
    "env_steps", "learner_steps", "restored_from_step", "wall_s", "run_s", "env_steps_per_s",
    "learner_steps_per_s", "replay_items", "validation", "test", "launch", "errors", "workdir",
}
EVAL_KEYS = {"total_return", "sharpe", "max_drawdown", "buy_and_hold_return", "buy_and_hold_sharpe"}


def _env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS", None)
    return env


def run_apex(*flags, timeout=240):
    return subprocess.run(
        [sys.executable, APEX, *flags], cwd=REPO_ROOT, env=_env(), capture_output=True,
        text=True, timeout=timeout,
    )


def read_summary(workdir):
    with open(os.path.join(workdir, "summary.json")) as file:
        return json.load(file)


def read_metrics(workdir):
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as file:
        return [json.loads(line) for line in file if line.endswith("\n")]


def ray_system_pids():
    """Pids of Ray's own servers (raylet, gcs_server) on this machine."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return {int(line.split()[0]) for line in out.splitlines()
            if "/raylet/raylet" in line or "/gcs/gcs_server" in line}


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def assert_no_process_left(summary, ray_before):
    pids = [pid for node_pids in summary["launch"]["node_pids"].values() for pid in node_pids]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (any(map(alive, pids)) or ray_system_pids() - ray_before):
        time.sleep(0.5)
    assert [pid for pid in pids if alive(pid)] == []
    assert ray_system_pids() - ray_before == set()


def array_leaves(tree):
    """The arrays of a msgpack-restored tree."""
    if isinstance(tree, dict):
        for value in tree.values():
            yield from array_leaves(value)
    else:
        yield tree


def assert_torso_and_parameter_count(workdir, summary, torso):
    """summary.json names the torso and counts the parameters of each selected network."""
    import numpy as np
    from flax import serialization

    assert summary["torso"] == torso
    best = glob.glob(os.path.join(workdir, "checkpoints", "best", "**", "params.msgpack"), recursive=True)
    assert best, os.listdir(os.path.join(workdir, "checkpoints", "best"))
    for path in best:
        with open(path, "rb") as file:
            params = serialization.msgpack_restore(file.read())
        assert summary["parameter_count"] == sum(np.size(leaf) for leaf in array_leaves(params)), path


def assert_finite_eval(summary):
    assert EVAL_KEYS <= set(summary["test"])
    for key in EVAL_KEYS:
        assert math.isfinite(summary["test"][key]), (key, summary["test"])


@pytest.fixture(scope="module")
def mt_run(tmp_path_factory):
    """A local_mt run of 20 learner steps; the restore test continues it."""
    workdir = str(tmp_path_factory.mktemp("apex_mt") / "run")
    result = run_apex("--lp_launch_type=local_mt", "--max_learner_steps=20", "--max_seconds=180",
                      "--noflat_candidate", f"--workdir={workdir}", *TINY_TRANSFORMER)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, read_summary(workdir), result


@pytest.mark.reverb
@pytest.mark.e2e
def test_local_mt_end_to_end(mt_run):
    workdir, summary, result = mt_run
    assert set(summary) == SUMMARY_KEYS
    assert summary["launch_type"] == "local_mt" and summary["launch"]["num_actors"] == 2
    assert_torso_and_parameter_count(workdir, summary, "transformer")
    assert summary["stop_reason"] == "limit: max_learner_steps=20"
    assert summary["learner_steps"] == 20
    assert summary["env_steps"] > 0 and summary["launch"]["param_syncs"] > 0 and summary["replay_items"] > 0
    assert summary["errors"] == [] and summary["launch"]["actor_restarts"] == 0
    assert_finite_eval(summary)
    # The final parameters were evaluated on validation; the best validation step was tested.
    records = read_metrics(workdir)
    validation = {r["evaluator/learner_steps"]: r["evaluator/sharpe"] for r in records
                  if r["node"] == "evaluator"}
    assert 20 in validation
    best_step = max(validation, key=validation.get)
    assert summary["validation"]["learner_steps"] == best_step == summary["test"]["learner_steps"]
    assert summary["validation"]["best_sharpe"] == validation[best_step]
    assert "eval" not in summary and summary["test"]["num_markets"] == 8
    assert [r["node"] for r in records].count("test") == 1  # tested once, at the end
    nodes = {record["node"] for record in records}
    assert {"learner", "actor_0", "actor_1", "evaluator"} <= nodes
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(os.path.join(workdir, "tensorboard")))
    assert {"validation_equity_20.png", "test_equity.png"} <= set(os.listdir(os.path.join(workdir, "eval")))
    assert "learner_20.msgpack" in os.listdir(os.path.join(workdir, "checkpoints", "learner"))
    assert workdir in result.stdout  # it says where its results are


@pytest.mark.reverb
@pytest.mark.e2e
def test_restore_continues_learner_steps_and_replay_contents(mt_run):
    workdir, first, _ = mt_run
    result = run_apex("--lp_launch_type=local_mt", "--restore", "--max_learner_steps=35",
                      "--max_seconds=180", f"--workdir={workdir}", *TINY_TRANSFORMER)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = read_summary(workdir)
    assert summary["restored_from_step"] == 20
    assert summary["launch"]["restored_replay_items"] == first["replay_items"] > 0
    assert summary["learner_steps"] == 35
    assert "learner_35.msgpack" in os.listdir(os.path.join(workdir, "checkpoints", "learner"))
    learner_steps = [r["learner/learner_steps"] for r in read_metrics(workdir) if r["node"] == "learner"]
    assert max(learner_steps) == 35 and 20 in learner_steps


@pytest.mark.parametrize("flag, message", [
    ("--num_actors=-1", "--num_actors=-1: expected an integer >= 1"),
    ("--max_env_steps=-5", "--max_env_steps=-5: expected an integer >= 0"),
    ("--data=/no/such/prices.csv", "--data=/no/such/prices.csv: no such file"),
    ("--window=5000", "needs at least 5257 rows"),
    ("--lp_launch_type=threads", "--lp_launch_type"),
    ("--no_such_flag=1", "Unknown command line flag 'no_such_flag'"),
    ("--lp_launch_type=ray", "needs --ray_address"),
    ("--agent_config=batch_size=abc", "--agent_config: batch_size='abc': expected int"),
    ("--agent_config=discount=1.5", "discount=1.5: expected a number in (0, 1]"),
    ("--agent_config=hidden_sizes=(64,x)", "hidden_sizes='(64,x)': expected a tuple of int"),
    ("--agent_config=no_such=1", "unknown setting 'no_such'"),
    ("--agent_preset=huge", "unknown preset 'huge'"),
    ("--commission_bps=-1", "commission_bps must be a finite number >= 0, got -1.0"),
    ("--risk_aversion=-2", "risk_aversion=-2.0 --positions=-1,0,1 --data=synthetic: risk_aversion must"),
    ("--positions=1,1", "positions must be distinct"),
    ("--positions=long,short", "--positions=long,short: expected numbers"),
    ("--validation_fraction=0.5", "--train_fraction=0.6 --validation_fraction=0.5"),
    ("--num_seeds=2", "--num_seeds=2: several seeds in one program need --lp_launch_type=anakin"),
    ("--num_seeds=0", "--num_seeds=0: expected an integer >= 1"),
    ("--fold=2", "--fold=2 needs --folds=K (K >= 1)"),
    ("--folds=-1", "--folds=-1: expected an integer >= 0"),
    ("--agent_config=torso=lstm", "torso='lstm': expected one of mlp, conv, transformer"),
    ("--pbt_every=2", "--pbt_every=2: expected 0 (off) or, with --sweep, a number of validation"),
])
def test_bad_flags_fail_fast_with_one_clear_line(flag, message, tmp_path):
    workdir = tmp_path / "run"
    result = run_apex(flag, f"--workdir={workdir}", timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("apex.py: error: ") and message in lines[0], lines
    assert not workdir.exists()  # nothing started, nothing written


@pytest.mark.reverb
def test_rewards_are_rescaled_to_the_training_markets_volatility(tmp_path):
    """reward_scale and --risk_aversion are quoted for bars that move 1% (the default market's,
    launch/run/setup.py's REFERENCE_VOLATILITY): on bars that move 10x less both are 10x larger, so
    that the reward's growth, variance penalty and costs keep their proportions (issue 30)."""
    import numpy as np
    from absl.testing import flagsaver

    from launch.flags import FLAGS
    from launch.run.setup import make_setup

    resolved = {}
    for size in (0.01, 0.001):  # log returns of +-size, alternating
        closes = 100.0 * np.exp(size * np.cumsum(np.resize([1.0, -1.0], 600)))
        dates = np.datetime64("2020-01-01") + np.arange(len(closes))
        path = tmp_path / f"bars_{size}.csv"
        path.write_text("date,open,high,low,close\n" + "".join(
            f"{date},{close!r},{close!r},{close!r},{close!r}\n" for date, close in zip(dates, closes)))
        with flagsaver.flagsaver():
            FLAGS(["apex.py", f"--data={path}", "--data_cache=off", f"--workdir={tmp_path / str(size)}"])
            setup = make_setup(FLAGS)
        assert setup.return_volatility == pytest.approx(size, rel=0.01)
        resolved[size] = (setup.config.reward_scale, setup.envs.config.risk_aversion)
    assert resolved[0.01] == pytest.approx((100.0, 24.0), rel=0.01)  # the small preset's, the flag's
    assert resolved[0.001] == pytest.approx((1000.0, 240.0), rel=0.01)


@pytest.mark.reverb
@pytest.mark.e2e
def test_local_mp_two_actor_processes_survive_a_killed_actor_and_ctrl_c(tmp_path):
    """One local_mp run, on a portfolio of 3 instruments (each actor process steps its own
    PortfolioVectorEnv; test_launch_portfolio.py checks the portfolio's figures): actor_0's
    process is killed with SIGKILL once it inserted, Ray restarts it and the new process inserts
    too; then Ctrl-C (SIGINT) stops the run, which writes its checkpoints and summary and
    leaves no process behind."""
    ray_before = ray_system_pids()
    workdir = str(tmp_path / "run")
    log_path = tmp_path / "apex.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, APEX, "--lp_launch_type=local_mp", "--num_actors=2",
             "--data=synthetic:panel", "--synthetic_instruments=3", "--max_seconds=200",
             f"--workdir={workdir}", *TINY],
            cwd=REPO_ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        def wait_for(predicate, what, timeout=150):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                found = predicate(read_metrics(workdir))
                if found:
                    return found
                assert process.poll() is None, log_path.read_text()[-3000:]
                time.sleep(0.5)
            pytest.fail(f"timed out waiting for {what}:\n{log_path.read_text()[-3000:]}")

        def steps_by_pid(records, node):
            return {r[f"{node}/pid"]: r[f"{node}/env_steps"] for r in records if r["node"] == node}

        first = wait_for(lambda rs: [p for p, s in steps_by_pid(rs, "actor_0").items() if s > 0],
                         "actor_0 to insert")[0]
        os.kill(first, signal.SIGKILL)
        restarted = wait_for(lambda rs: [p for p, s in steps_by_pid(rs, "actor_0").items()
                                         if p != first and s > 0], "the restarted actor_0 to insert")[0]
        wait_for(lambda rs: any(r["node"] == "learner" and r["learner/learner_steps"] > 0 for r in rs),
                 "the learner to step")
        process.send_signal(signal.SIGINT)
        returncode = process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
            subprocess.run([*RAY_CLI, "stop", "--force"], capture_output=True)  # the run's Ray
    output = log_path.read_text()
    assert returncode == 130, output[-3000:]
    summary = read_summary(workdir)
    assert set(summary) == SUMMARY_KEYS
    assert summary["launch_type"] == "local_mp"
    assert summary["stop_reason"] == "interrupted (SIGINT)" and summary["errors"] == []
    assert summary["launch"]["actor_restarts"] >= 1
    by_process = summary["launch"]["env_steps_by_actor_process"]
    assert by_process[f"actor_0/{first}"] > 0 and by_process[f"actor_0/{restarted}"] > 0
    assert by_process[f"actor_1/{summary['launch']['node_pids']['actor_1'][0]}"] > 0
    actor_pids = set(summary["launch"]["actor_pids"])
    assert len(actor_pids) >= 2 and os.getpid() not in actor_pids and process.pid not in actor_pids
    assert summary["launch"]["node_pids"]["actor_0"][0] != summary["launch"]["node_pids"]["actor_1"][0]
    assert summary["learner_steps"] > 0 and summary["launch"]["param_syncs"] > 0
    assert_finite_eval(summary)
    # The portfolio's evaluator walked validation next to 1/N, and the test is reported beside it.
    assert summary["market"]["synthetic_instruments"] == 3 and math.isfinite(summary["test"]["equal_weight_sharpe"])
    assert summary["test"]["forced_closes"] == 0 and "; 1/N: return" in output
    evaluations = [r for r in read_metrics(workdir) if r["node"] == "evaluator"]
    assert evaluations and all("evaluator/equal_weight_sharpe" in r for r in evaluations)
    # Checkpoints were written on the way out.
    assert os.listdir(os.path.join(workdir, "checkpoints", "learner"))
    assert any(os.path.exists(os.path.join(workdir, "checkpoints", "replay", d, "DONE"))
               for d in os.listdir(os.path.join(workdir, "checkpoints", "replay")))
    assert_no_process_left(summary, ray_before)


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Ray's command line, from this interpreter's environment: `ray` on PATH may belong to another
# one, or be missing (a venv's python run without activating the venv).
RAY_CLI = [sys.executable, "-m", "ray.scripts.scripts"]


def pids_mentioning(text):
    """Processes whose command line contains `text` (e.g. a Ray node's own --temp-dir)."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return {int(line.split()[0]) for line in out.splitlines() if text in line}


@contextlib.contextmanager
def ray_node(log_path, temp_dir, *flags, env):
    """A Ray node, `ray start --block --temp-dir=<temp_dir> <flags>`, up once it says so.

    On exit it is stopped with SIGTERM, which must take every process of the node down (its
    workers too: they have their own process groups, but name the node's temp_dir). After a
    failure, whatever is left of it is killed, so no test leaves a Ray process behind.
    """
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [*RAY_CLI, "start", f"--temp-dir={temp_dir}", *flags, "--block"], env=env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log_path.read_text():  # printed once the node is up
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.5)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=60)
        deadline = time.monotonic() + 20
        while (left := pids_mentioning(temp_dir)) and time.monotonic() < deadline:
            time.sleep(0.5)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if process.poll() is None:
            process.kill()
            process.wait()
    assert not left, f"processes of the Ray node in {temp_dir} outlived it: {sorted(left)}"
    shutil.rmtree(temp_dir)
