"""End-to-end: a portfolio of a synthetic panel trained under --lp_launch_type=anakin (tiny), its
selection and test next to 1/N; a portfolio under the program of nodes, or with IMPALA, fails at
once."""

import math

import pytest

from test_launch_apex import SUMMARY_KEYS, read_metrics, read_summary, run_apex

TINY_PANEL = [
    "--lp_launch_type=anakin", "--data=synthetic:panel", "--synthetic_instruments=3",
    "--synthetic_steps=400", "--window=4", "--episode_length=32", "--eval_every=10",
    "--agent_config=min_replay_size=64,batch_size=16,hidden_sizes=(16,16),target_update_period=10,"
    "anakin_num_envs=8,anakin_rollout_steps=4,anakin_updates_per_cycle=2,max_replay_size=512",
]


@pytest.mark.e2e
def test_a_portfolio_trains_under_anakin_and_is_tested_next_to_one_over_n(tmp_path):
    workdir = str(tmp_path / "run")
    result = run_apex(*TINY_PANEL, "--max_learner_steps=20", "--noflat_candidate",
                      f"--workdir={workdir}", timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = read_summary(workdir)
    assert set(summary) == SUMMARY_KEYS | {"seeds"} and summary["learner_steps"] == 20
    assert summary["market"]["path"] == "synthetic:panel"
    assert summary["market"]["synthetic_instruments"] == 3
    test = summary["test"]
    assert test["policy"] == "agent" and test["num_markets"] == 1
    for key in ("sharpe", "total_return", "buy_and_hold_sharpe", "equal_weight_sharpe", "exposure"):
        assert math.isfinite(test[key]), key
    assert 0.0 <= test["exposure"] <= 1.0  # sum |w| of levels in [-1, 1] over the holdable count
    assert test["forced_closes"] == 0  # the synthetic panel has every bar
    evaluations = [r for r in read_metrics(workdir) if r["node"] == "evaluator"]
    assert {r["evaluator/learner_steps"] for r in evaluations} >= {10, 20}
    assert all("evaluator/equal_weight_sharpe" in r for r in evaluations)


@pytest.mark.parametrize("flags, message", [
    (("--lp_launch_type=local_mt",),
     "--data=synthetic:panel: a portfolio trains under --lp_launch_type=anakin"),
    (("--lp_launch_type=anakin", "--agent=impala"),
     "--data=synthetic:panel --agent=impala: a portfolio is traded by --agent=apex_dqn"),
])
def test_a_portfolio_outside_anakin_or_with_impala_fails_at_once(tmp_path, flags, message):
    result = run_apex(*flags, "--data=synthetic:panel", f"--workdir={tmp_path / 'run'}",
                      timeout=120)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "run").exists()
