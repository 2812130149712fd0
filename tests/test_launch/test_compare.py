"""`benchmarks/compare.py`, a tuning tool, shows validation only (issue 26): on a tiny budget,
neither what it prints nor any file it leaves holds a test figure, and it refuses the market
seeds kept for reported figures."""

import json
import os
import subprocess
import sys

import pytest

from benchmarks import runs

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ('"--agent_config=min_replay_size=64,batch_size=32,hidden_sizes=(32,32),'
        'target_update_period=10,anakin_num_envs=16,anakin_rollout_steps=4,'
        'anakin_updates_per_cycle=2,max_replay_size=1024",--synthetic_steps=600,'
        '--episode_length=32,--eval_every=10,--max_learner_steps=10')


def _compare(out, *flags):
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "benchmarks/compare.py", "--data=synthetic:ou", "--seconds=60",
         "--num_seeds=1", "--config=--window=8", f"--out={out}", f"--apex_flags={TINY}", *flags],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240)


@pytest.mark.e2e
def test_compare_prints_and_writes_no_test_figure(tmp_path):
    out = tmp_path / "compare"
    result = _compare(out)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "validation Sharpe" in result.stdout and "chosen on validation" in result.stdout
    assert "test" not in result.stdout.replace(str(tmp_path), "<tmp>").lower()
    lines = (out / "results.md").read_text().lower().splitlines()
    assert [line for line in lines if "test" in line] == [lines[0]]  # "... test is sealed"
    (workdir,) = [path for path in out.iterdir() if path.is_dir()]
    summary = json.loads((workdir / "summary.json").read_text())
    assert set(summary["test"]) <= {"sealed_by", *runs.SEALED_TEST_KEYS}
    assert "sharpe" not in summary["test"] and summary["test"]["policy"] in ("agent", "flat")
    for line in (workdir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        assert record["node"] != "test" and not [key for key in record if "test_" in key]
    assert not (workdir / "eval" / "test_equity.png").exists()
    assert not (workdir / "tensorboard").exists()
    log = (out / f"{workdir.name}.log").read_text()
    assert "test" not in log.replace(str(tmp_path), "<tmp>").lower()


def test_compare_refuses_the_reporting_seeds(tmp_path):
    result = _compare(tmp_path / "compare", "--seed=998", "--num_seeds=3")
    assert result.returncode != 0
    assert "market seeds from 1000 are kept for reported figures" in result.stderr
