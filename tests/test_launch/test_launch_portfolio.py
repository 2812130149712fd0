"""End-to-end: a portfolio of a synthetic panel trained under --lp_launch_type=anakin (tiny) on
one walk-forward fold through benchmarks/walk_forward_panel.py, its selection and test next to
1/N. The program of nodes trades a portfolio in test_launch_apex.py's local_mp run."""

import json
import math
import os
import subprocess
import sys

import pytest

from test_launch_apex import SUMMARY_KEYS, read_metrics, read_summary

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TINY_PANEL = [
    "--lp_launch_type=anakin", "--data=synthetic:panel", "--synthetic_instruments=3",
    "--synthetic_steps=400", "--window=4", "--episode_length=32", "--eval_every=10",
    "--agent_config=min_replay_size=64,batch_size=16,hidden_sizes=(16,16),target_update_period=10,"
    "anakin_num_envs=8,anakin_rollout_steps=4,anakin_updates_per_cycle=2,max_replay_size=512",
]


@pytest.mark.e2e
def test_a_portfolio_trains_under_anakin_walk_forward_and_is_tested_next_to_one_over_n(tmp_path):
    """benchmarks/walk_forward_panel.py on one fold of a tiny synthetic panel: the fold's run
    (two seeds under anakin, no flat candidate), its summary, and the report's walks."""
    flags = [f for f in TINY_PANEL if f.split("=")[0] not in (
        "--lp_launch_type", "--data", "--synthetic_instruments", "--synthetic_steps")]
    out = tmp_path / "walk_forward_panel"
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "benchmarks/walk_forward_panel.py", "--data=synthetic:panel",
         "--synthetic_instruments=3", "--synthetic_steps=600", "--folds=1", "--num_seeds=2",
         "--max_learner_steps=20", f"--out={out}",
         "--apex_flags=" + ",".join(["--noflat_candidate", *(f'"{f}"' if "," in f else f
                                                              for f in flags)])],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    workdir = str(out / "fold0")
    summary = read_summary(workdir)
    assert set(summary) == SUMMARY_KEYS | {"seeds"} and summary["learner_steps"] == 20
    assert summary["market"]["path"] == "synthetic:panel" and summary["market"]["folds"] == 1
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
    # The report re-walked the selected seed's parameters and 1/N, and checked both against the
    # run's own test figures (a RuntimeError otherwise).
    report = json.loads((out / "walk_forward_panel.json").read_text())
    chosen = report["selections"][0]
    seed = int(chosen.split("seed ")[1].split(" ")[0])
    seed_test = summary["seeds"][seed - 1000]["test"]
    policies = report["policies"]
    assert policies["agent"]["folds"][0]["sharpe"] == pytest.approx(seed_test["sharpe"], abs=1e-3)
    assert policies["equal_weight"]["chained"]["sharpe"] == pytest.approx(test["equal_weight_sharpe"], abs=1e-3)
    assert policies["agent"]["significance"]["num_trials"] == 2 * 2  # 2 seeds x 2 evaluations
    assert set(policies) == {"agent", "equal_weight", "basket_buy_and_hold", "ts_momentum",
                             "xs_momentum", "minimum_variance", "random"}
    assert "P(SR > 1/N)" in (out / "walk_forward_panel.md").read_text()
