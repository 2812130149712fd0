"""End-to-end: the launcher with a second agent (--agent=impala) and with a toy agent that only
this test registers; launch/ names neither."""

import glob
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from test_launch_apex import (APEX, REPO_ROOT, SUMMARY_KEYS, _env, _free_port, alive,
                              assert_finite_eval, assert_torso_and_parameter_count, ray_node,
                              read_metrics, read_summary, run_apex, with_agent_config)

pytestmark = pytest.mark.reverb  # every test here runs the Reverb program (local_mt, ray)

# A tiny IMPALA: sequences of 5 rows, batches of 4 sequences, a queue of 64.
TINY_IMPALA = [
    "--agent=impala",
    "--agent_config=sequence_length=5,batch_size=4,hidden_sizes=(32,32),max_queue_size=64,"
    "variable_update_period=4",
    "--envs_per_actor=4", "--synthetic_steps=600", "--window=8", "--episode_length=32",
    "--eval_every=10", "--checkpoint_every=10",
]
TOY_AGENT = os.path.join(REPO_ROOT, "tests", "test_launch", "toy_agent.py")


# The local_mt runs take a small conv torso (test_launch_apex.TINY_TRANSFORMER says which run
# takes which), through the frames-once sequences of a frame-window observation.
TINY_IMPALA_CONV = with_agent_config(TINY_IMPALA, "torso=conv,torso_width=8,torso_depth=1")


@pytest.fixture(scope="module")
def impala_mt_run(tmp_path_factory):
    """A local_mt IMPALA run of 20 learner steps; the restore test continues it."""
    workdir = str(tmp_path_factory.mktemp("impala_mt") / "run")
    result = run_apex("--lp_launch_type=local_mt", "--max_learner_steps=20", "--max_seconds=180",
                      f"--workdir={workdir}", *TINY_IMPALA_CONV)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, read_summary(workdir)


@pytest.mark.e2e
def test_impala_local_mt_end_to_end(impala_mt_run):
    workdir, summary = impala_mt_run
    assert set(summary) == SUMMARY_KEYS
    assert summary["agent"] == "impala" and summary["stop_reason"] == "limit: max_learner_steps=20"
    assert_torso_and_parameter_count(workdir, summary, "conv")
    assert summary["learner_steps"] == 20 and summary["env_steps"] > 0 and summary["launch"]["param_syncs"] > 0
    assert summary["errors"] == [] and summary["launch"]["actor_restarts"] == 0
    assert_finite_eval(summary)
    learner = [r for r in read_metrics(workdir) if r["node"] == "learner"]
    assert learner and all(0.0 < r["learner/entropy"] <= 1.0987 for r in learner)  # log(3) at most
    assert "learner_20.msgpack" in os.listdir(os.path.join(workdir, "checkpoints", "learner"))
    # An on-policy queue is not checkpointed.
    replay_dir = os.path.join(workdir, "checkpoints", "replay")
    assert not os.path.isdir(replay_dir) or os.listdir(replay_dir) == []


@pytest.mark.e2e
def test_impala_restore_continues_the_learner_with_an_empty_queue(impala_mt_run):
    workdir, first = impala_mt_run
    result = run_apex("--lp_launch_type=local_mt", "--restore", "--max_learner_steps=30",
                      "--max_seconds=180", f"--workdir={workdir}", *TINY_IMPALA_CONV)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = read_summary(workdir)
    assert summary["restored_from_step"] == 20 and summary["learner_steps"] == 30
    assert summary["launch"]["restored_replay_items"] == 0  # sequences of the old policy are not brought back
    learner_steps = [r["learner/learner_steps"] for r in read_metrics(workdir) if r["node"] == "learner"]
    assert max(learner_steps) == 30 and 20 in learner_steps


# From the learner's SIGKILL to the launcher's exit: ~4 s on 2 cores (16 s when actors blocked
# on the full queue were released by closing it, then each closed against the gone server).
LOST_LEARNER_EXIT_S = 12


@pytest.mark.e2e
def test_impala_on_a_two_node_ray_cluster_ends_in_seconds_when_its_learner_is_killed(tmp_path):
    """`--lp_launch_type=ray` joins a head and a second node as docs/cluster.md "Joining a
    cluster" says (Ray's token authentication on, with their own token), and the program's nodes
    spread over both. Once both actor processes fed the learner's queue, the learner is killed
    with SIGKILL: the run ends with an error naming it within LOST_LEARNER_EXIT_S (its actors,
    blocked on a queue nothing empties any more, do not hold it up), its own processes are gone
    and the cluster is still up for others."""
    token_path = tmp_path / "auth_token"
    token_path.write_text(secrets.token_hex(32))  # what `ray get-auth-token --generate` writes
    env = _env()
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN"):
        env.pop(name, None)
    env["RAY_AUTH_TOKEN_PATH"] = str(token_path)  # instead of ~/.ray/auth_token
    node_env = dict(env, RAY_AUTH_MODE="token")  # the driver (apex.py) opts in by itself
    port = _free_port()
    workdir = str(tmp_path / "run")
    log_path = tmp_path / "apex.log"
    # Short folders: Ray's socket paths are limited.
    head_dir = tempfile.mkdtemp(prefix="rayh", dir="/tmp")
    second_dir = tempfile.mkdtemp(prefix="rayw", dir="/tmp")
    # 3 CPUs for the program's 3 one-CPU nodes (learner, 2 actors): 2 of them must run on the
    # second node.
    with ray_node(tmp_path / "head.log", head_dir, "--head", f"--port={port}", "--num-cpus=1",
                  "--include-dashboard=false", "--disable-usage-stats", env=node_env) as head, \
         ray_node(tmp_path / "second.log", second_dir, f"--address=127.0.0.1:{port}",
                  "--num-cpus=2", "--disable-usage-stats", env=node_env) as second:
        with open(log_path, "w") as log:
            process = subprocess.Popen(
                [sys.executable, APEX, "--lp_launch_type=ray", f"--ray_address=127.0.0.1:{port}",
                 "--num_actors=2", "--max_seconds=200", f"--workdir={workdir}", *TINY_IMPALA],
                cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 150
            while True:
                records = read_metrics(workdir)
                inserted = {r["node"] for r in records
                            if r["node"].startswith("actor_") and r[f"{r['node']}/env_steps"] > 0}
                learner = [r["learner/pid"] for r in records
                           if r["node"] == "learner" and r["learner/learner_steps"] >= 5]
                if inserted == {"actor_0", "actor_1"} and learner:
                    break
                assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
                time.sleep(0.5)
            os.kill(learner[0], signal.SIGKILL)
            killed_at = time.monotonic()
            returncode = process.wait(timeout=120)
            exit_s = time.monotonic() - killed_at
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        output = log_path.read_text()
        assert returncode == 1, output[-3000:]
        assert exit_s < LOST_LEARNER_EXIT_S, (exit_s, output[-3000:])
        summary = read_summary(workdir)
        assert set(summary) == SUMMARY_KEYS and summary["launch_type"] == "ray"
        assert summary["agent"] == "impala" and summary["torso"] == "mlp"
        assert summary["stop_reason"] == "error" and summary["learner_steps"] >= 5
        (error,) = summary["errors"]
        assert error.startswith("node 'learner' failed") and "not restartable" in error
        node_pids = {label: pids[0] for label, pids in summary["launch"]["node_pids"].items()}
        assert len(set(node_pids.values())) == len(node_pids)  # one process per node
        assert os.getpid() not in node_pids.values()
        assert all(summary["launch"]["env_steps_by_actor_process"][f"actor_{i}/{node_pids[f'actor_{i}']}"] > 0
                   for i in range(2))
        assert "python launch/apex.py --restore" in output  # the learner checkpointed every 10 steps
        # Ray's worker logs name their process: which nodes ran on the second Ray node.
        on_second = {label for label, pid in node_pids.items() if glob.glob(
            os.path.join(second_dir, "session_*", "logs", f"python-core-worker-*_{pid}.log"))}
        assert len(on_second & {"learner", "actor_0", "actor_1"}) >= 2, (on_second, node_pids)
        # No actor node holds another's actor handle, so Ray no longer warns about restarts.
        assert "has constructor arguments in the object store" not in output
        # The run's own processes are gone; the cluster is still up for others.
        assert head.poll() is None and second.poll() is None
        deadline = time.monotonic() + 20
        while any(map(alive, node_pids.values())) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not any(map(alive, node_pids.values()))


@pytest.mark.e2e
def test_a_toy_agent_registered_only_in_the_test_runs_end_to_end(tmp_path):
    workdir = str(tmp_path / "run")
    result = subprocess.run(
        [sys.executable, TOY_AGENT, "--agent=toy", "--lp_launch_type=local_mt", "--max_learner_steps=30",
         "--max_seconds=120", f"--workdir={workdir}", "--eval_every=10", "--checkpoint_every=10",
         "--synthetic_steps=600", "--window=8", "--episode_length=32"],
        cwd=REPO_ROOT, env=_env(), capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = read_summary(workdir)
    assert summary["agent"] == "toy" and summary["learner_steps"] == 30 and summary["errors"] == []
    assert summary["replay_items"] > 0 and summary["launch"]["param_syncs"] > 0
    assert_finite_eval(summary)
    estimates = [r["learner/best_estimate"] for r in read_metrics(workdir) if r["node"] == "learner"]
    assert estimates and estimates[-1] != 0.0  # the learner moved its estimates
    # The name is unknown to a process that did not register it.
    unknown = run_apex("--agent=toy", f"--workdir={tmp_path / 'other'}")
    assert unknown.returncode == 2 and "--agent='toy' is not in agents/registry.py" in unknown.stderr
