"""End-to-end: a sequence torso chosen by one config value trains under anakin, and summary.json
names it with the parameter count of the network that was trained (one short case: the suite's
time budget; test_agents/test_torsos.py runs every torso through both agents' updates, and
test_launch_impala.py's local_mt runs take the conv)."""

import glob
import os

import numpy as np
import pytest
from flax import serialization

from test_launch_anakin import array_leaves
from test_launch_apex import read_summary, run_apex

TINY = ["--max_learner_steps=20", "--synthetic_steps=600", "--window=8", "--episode_length=32",
        "--eval_every=10", "--checkpoint_every=10"]
CASES = {
    "anakin-apex_dqn-transformer": [
        "--lp_launch_type=anakin", "--agent=apex_dqn",
        "--agent_config=min_replay_size=64,batch_size=32,hidden_sizes=(32,),torso=transformer,"
        "torso_width=16,torso_depth=1,torso_heads=2,anakin_num_envs=16,anakin_rollout_steps=4,"
        "anakin_updates_per_cycle=2,max_replay_size=1024"],
}


@pytest.mark.e2e
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_torso_runs_end_to_end_and_the_summary_counts_its_parameters(case, tmp_path):
    workdir = str(tmp_path / "run")
    result = run_apex(*CASES[case], *TINY, f"--workdir={workdir}", timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = read_summary(workdir)
    assert summary["torso"] == case.rsplit("-", 1)[1] and summary["errors"] == []
    assert summary["validation"]["best_sharpe"] is not None and summary["test"]["sharpe"] is not None
    best = glob.glob(os.path.join(workdir, "checkpoints", "best", "**", "*.msgpack"), recursive=True)
    assert len(best) == 1, best
    with open(best[0], "rb") as file:
        params = serialization.msgpack_restore(file.read())
    assert summary["parameter_count"] == sum(np.size(leaf) for leaf in array_leaves(params))

