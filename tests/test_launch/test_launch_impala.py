"""End-to-end: the launcher with a second agent (--agent=impala) and with a toy agent that only
this test registers; launch/ names neither."""

import os
import signal
import subprocess
import sys
import time

import pytest

from test_launch_apex import (APEX, RAY_CLI, REPO_ROOT, SUMMARY_KEYS, _env, assert_finite_eval,
                              assert_no_process_left, ray_system_pids, read_metrics, read_summary,
                              run_apex)

# A tiny IMPALA: sequences of 5 rows, batches of 4 sequences, a queue of 64.
TINY_IMPALA = [
    "--agent=impala",
    "--agent_config=sequence_length=5,batch_size=4,hidden_sizes=(32,32),max_queue_size=64,"
    "variable_update_period=4",
    "--envs_per_actor=4", "--synthetic_steps=600", "--window=8", "--episode_length=32",
    "--eval_every=10", "--checkpoint_every=10",
]
TOY_AGENT = os.path.join(REPO_ROOT, "tests", "test_launch", "toy_agent.py")


# The local_mt runs take a small conv torso (one config value): with the anakin case of
# test_launch_torsos.py (transformer) and the other runs (mlp), every torso runs end to end, and
# this one through the frames-once sequences of a frame-window observation.
TINY_IMPALA_CONV = [flag + ",torso=conv,torso_width=8,torso_depth=1"
                           if flag.startswith("--agent_config=") else flag for flag in TINY_IMPALA]


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
    assert SUMMARY_KEYS <= set(summary)
    assert summary["agent"] == "impala" and summary["stop_reason"] == "limit: max_learner_steps=20"
    assert summary["torso"] == "conv" and summary["parameter_count"] > 0
    assert summary["learner_steps"] == 20 and summary["env_steps"] > 0 and summary["param_syncs"] > 0
    assert summary["errors"] == [] and summary["actor_restarts"] == 0
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
    assert summary["restored_replay_items"] == 0  # sequences of the old policy are not brought back
    learner_steps = [r["learner/learner_steps"] for r in read_metrics(workdir) if r["node"] == "learner"]
    assert max(learner_steps) == 30 and 20 in learner_steps


# From the learner's SIGKILL to the launcher's exit: ~4 s on 2 cores (16 s when actors blocked
# on the full queue were released by closing it, then each closed against the gone server).
LOST_LEARNER_EXIT_S = 12


@pytest.mark.e2e
def test_impala_local_mp_two_actor_processes_and_a_killed_learner_ends_the_run_in_seconds(tmp_path):
    """Two actor processes feed the learner's queue; then the learner is killed with SIGKILL:
    the run ends with an error naming it within LOST_LEARNER_EXIT_S (its actors, blocked on a
    queue nothing empties any more, do not hold it up), and leaves no process behind."""
    ray_before = ray_system_pids()
    workdir = str(tmp_path / "run")
    log_path = tmp_path / "apex.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, APEX, "--lp_launch_type=local_mp", "--num_actors=2",
             "--max_seconds=200", f"--workdir={workdir}", *TINY_IMPALA],
            cwd=REPO_ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT,
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
            subprocess.run([*RAY_CLI, "stop", "--force"], capture_output=True)  # the run's Ray
    output = log_path.read_text()
    assert returncode == 1, output[-3000:]
    assert exit_s < LOST_LEARNER_EXIT_S, (exit_s, output[-3000:])
    summary = read_summary(workdir)
    assert SUMMARY_KEYS <= set(summary) and summary["launch_type"] == "local_mp"
    assert summary["stop_reason"] == "error" and summary["learner_steps"] >= 5
    (error,) = summary["errors"]
    assert error.startswith("node 'learner' failed") and "not restartable" in error
    actor_pids = {summary["node_pids"][f"actor_{i}"][0] for i in range(2)}
    assert len(actor_pids) == 2 and os.getpid() not in actor_pids
    assert all(summary["env_steps_by_actor_process"][f"actor_{i}/{summary['node_pids'][f'actor_{i}'][0]}"] > 0
               for i in range(2))
    assert "python launch/apex.py --restore" in output  # the learner checkpointed every 10 steps
    assert_no_process_left(summary, ray_before)


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
    assert summary["replay_items"] > 0 and summary["param_syncs"] > 0
    assert_finite_eval(summary)
    estimates = [r["learner/best_estimate"] for r in read_metrics(workdir) if r["node"] == "learner"]
    assert estimates and estimates[-1] != 0.0  # the learner moved its estimates
    # The name is unknown to a process that did not register it.
    unknown = run_apex("--agent=toy", f"--workdir={tmp_path / 'other'}")
    assert unknown.returncode == 2 and "--agent='toy' is not in agents/registry.py" in unknown.stderr
