"""Walk-forward: one fold geometry for every agent (the largest target horizon as the embargo of
every run, runs cut differently refused), and `benchmarks/walk_forward.py` end to end on a
small market: `--folds` training under anakin, per-fold selection, chaining, trials and the
paired test against buy-and-hold."""

import json
import os
import subprocess
import sys

import pytest

from benchmarks import runs

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# A tiny Ape-X DQN under anakin (tests/test_launch/test_launch_anakin.py's TINY_ANAKIN), as one
# --apex_flags list: the agent config's commas inside double quotes.
TINY = ('"--agent_config=min_replay_size=64,batch_size=32,hidden_sizes=(32,32),'
        'target_update_period=10,anakin_num_envs=16,anakin_rollout_steps=4,'
        'anakin_updates_per_cycle=2,max_replay_size=1024",--window=8,--episode_length=32,'
        '--eval_every=10,--max_learner_steps=10')


def test_every_agent_gets_the_largest_target_horizon_as_embargo():
    # Ape-X's n-step target reaches 3 bars ahead, IMPALA's 20-step sequences 19
    assert runs.fold_embargo(["apex_dqn"], -1, 5, []) == 3
    assert runs.fold_embargo(["apex_dqn", "impala"], -1, 5, []) == 19
    assert runs.fold_embargo(["apex_dqn"], -1, 5, ["--agent_config=n_step=7", "--window=8"]) == 7
    assert runs.fold_embargo(["apex_dqn", "impala"], 25, 5, []) == 25  # given: kept


def _run(workdir, **market):
    summary = {"market": dict({"data": "a.csv", "folds": 2, "fold": 0, "embargo": 19,
                               "lookback": 8, "seed": 0}, **market),
               "env": {"window": 8}}
    return runs.Run(workdir, summary, [])


def test_runs_cut_differently_are_refused(tmp_path):
    same = {"apex_dqn": [[_run(tmp_path / "a0"), _run(tmp_path / "a0s1", seed=1)]],
            "impala": [[_run(tmp_path / "i0")]]}
    runs.check_one_geometry(same)  # the agent seed may differ: it does not cut the market
    apart = {"apex_dqn": [[_run(tmp_path / "a0", embargo=3)]], "impala": [[_run(tmp_path / "i0")]]}
    with pytest.raises(RuntimeError, match="fold 0: .*i0 \\(impala\\) was cut or traded"):
        runs.check_one_geometry(apart)


@pytest.mark.e2e
def test_walk_forward_trains_folds_and_reports(tmp_path):
    out = tmp_path / "walk_forward"
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "benchmarks/walk_forward.py", "--data=synthetic:ou",
         "--synthetic_steps=500", "--folds=2", "--seeds=1000", "--launch_type=anakin",
         "--seconds=60", f"--out={out}", f"--apex_flags={TINY}"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    for k in range(2):  # every fold's run: --folds training with the one embargo
        summary = json.loads((out / "apex_dqn" / f"fold{k}" / "summary.json").read_text())
        assert summary["market"]["fold"] == k and summary["market"]["embargo"] == 3
        assert summary["learner_steps"] == 10
    report = json.loads((out / "walk_forward.json").read_text())
    assert report["embargo"] == 3 and report["market_seed"] == 1000
    assert len(report["selections"]) == 2 and report["reported_at"]
    (market,) = report["markets"].values()
    agent = market["apex_dqn"]
    assert len(agent["folds"]) == 2
    significance = agent["significance"]
    # trials: the evaluations of fold k (at steps 10 and the final one), + flat as a candidate
    assert significance["num_trials"] >= 2
    assert significance["vs_benchmark"]["benchmark_sharpe_per_period"] == pytest.approx(
        market["buy_and_hold"]["significance"]["sharpe_per_period"])
    assert 0.0 <= significance["p_above_benchmark"] <= 1.0
    text = (out / "walk_forward.md").read_text()
    assert "P(SR > B&H)" in text and "PSR vs B&H" not in text
    assert "apex_dqn fold 0: seed 1000 selected" in text and "apex_dqn fold 1:" in text
    assert (out / f"chained_equity_{next(iter(report['markets']))}.png").exists()
