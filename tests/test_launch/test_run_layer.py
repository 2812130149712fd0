"""The run layer shared by both launch shapes: the same validation sequence selects the same step
under either driver, every launch type builds its envs from one configuration, and `--help`
lists the project's flags."""

import os
import subprocess
import sys

import numpy as np
import pytest
from absl.testing import flagsaver

from environments import EnvConfig, EnvFactory, MarketSource
from launch.anakin.evaluation import SplitEvaluator, model_selection
from launch.run.recorder import Recorder
from test_nodes import LONG, SHORT, Learner, make_evaluator, write_csv

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FLAT = 1


@pytest.fixture
def bars(tmp_path):
    # 300 daily bars: a noisy walk (train), a noisy rise (validation), a noisy fall (test).
    rng = np.random.default_rng(1)
    drift = np.concatenate([np.zeros(180), np.full(60, 0.004), np.full(60, -0.004)])
    path = tmp_path / "bars.csv"
    write_csv(path, 100.0 * np.exp(np.cumsum(drift + 0.002 * rng.standard_normal(300))))
    return str(path)


def test_both_drivers_select_the_same_step_from_the_same_validation_sequence(bars, tmp_path,
                                                                             monkeypatch):
    from agents.registry import AGENTS
    from test_nodes import constant_action_builder

    monkeypatch.setitem(AGENTS, "constant_action", constant_action_builder())
    # Flat, then long (best on the rising validation), short, long again (a tie: not newer).
    script = [(10, FLAT), (20, LONG), (30, SHORT), (40, LONG)]

    learner = Learner(script[0][1], version=script[0][0])
    node = make_evaluator(learner, MarketSource(bars), tmp_path / "distributed")
    distributed = []
    for step, action in script:
        learner.set(action, version=step)
        distributed.append(node.evaluate(final=step == script[-1][0]))
    distributed_test = node.evaluate_test()

    import jax.numpy as jnp

    envs = EnvFactory(MarketSource(bars), EnvConfig(window=2))
    policy = lambda params, obs: jnp.full(obs.shape[0], params["action"], jnp.int32)  # noqa: E731
    splits = {part: SplitEvaluator(part, envs, policy, None) for part in ("validation", "test")}
    selection = model_selection(str(tmp_path / "anakin"), 1, splits,
                                Recorder(str(tmp_path / "anakin")), report_test_curve=False)
    compiled = [selection.validate(step, {"action": np.array([action], np.int32)},
                                   final=step == script[-1][0]) for step, action in script]
    compiled_test = selection.test()[0]

    # The same record of each evaluation, the same kept step, the same test of it.
    assert [r["best_learner_steps"] for r in distributed] == [10, 20, 20, 20]
    assert [r["best_learner_steps"] for r in compiled] == [10, 20, 20, 20]
    for ours, theirs in zip(distributed, compiled):
        assert set(ours) - {"equity_plot"} == set(theirs) - {"equity_plot"}
        for key in ("sharpe", "total_return", "buy_and_hold_sharpe", "turnover"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-4, abs=1e-6), key
    assert node.best()["learner_steps"] == selection.best[0]["learner_steps"] == 20
    assert distributed_test["learner_steps"] == compiled_test["learner_steps"] == 20
    assert distributed_test["selected_by"] == compiled_test["selected_by"] == "best validation sharpe"
    assert distributed_test["sharpe"] == pytest.approx(compiled_test["sharpe"], rel=1e-4)
    assert distributed_test["sharpe"] < -1.0  # long, kept from validation, on the falling test


def _setup(launch_type, data, workdir):
    from launch.flags import FLAGS
    from launch.run.setup import make_setup

    with flagsaver.flagsaver():
        FLAGS.unparse_flags()
        FLAGS(["apex", f"--lp_launch_type={launch_type}", f"--data={data}",
               f"--workdir={workdir}", "--window=3", "--episode_length=64", "--commission_bps=2", "--spread_bps=3",
               "--borrow_bps_per_step=0.5", "--risk_aversion=7", "--positions=-1,0,0.5,1"])
        return make_setup(FLAGS)


def test_every_launch_type_builds_its_envs_from_one_configuration(bars, tmp_path):
    from environments.envs.jittable import JaxTradingEnv, eval_params

    threads = _setup("local_mt", bars, tmp_path / "mt")
    compiled = _setup("anakin", bars, tmp_path / "anakin")
    config = threads.envs.config
    assert compiled.envs.config == config
    assert (config.window, config.positions) == (3, (-1.0, 0.0, 0.5, 1.0))
    # kappa is quoted for bars that move 1%: rescaled to the training markets' volatility.
    assert config.risk_aversion == pytest.approx(7.0 * 0.01 / threads.return_volatility)
    assert config.trade_cost_rate == pytest.approx(5e-4) and config.borrow_rate == pytest.approx(5e-5)

    # What each launch type's envs are: an actor's vector env and the evaluator's envs
    # (distributed), the jittable training env and the compiled walks' parameters (anakin).
    actor = threads.envs.train_vector(num_envs=2)
    evaluator = threads.envs.eval_envs("validation")
    train = JaxTradingEnv(compiled.envs.train_setup())
    walks = eval_params(compiled.envs.eval_setups("validation"))
    for setup in [actor.setup] + [env.setup for env in evaluator]:
        assert setup.config == config
    for params in (train.params, walks):
        np.testing.assert_allclose(np.asarray(params.positions).reshape(-1, 4)[0], config.positions)
        for name in ("trade_cost_rate", "borrow_rate", "risk_aversion", "initial_value"):
            assert np.all(np.asarray(getattr(params, name)) == np.float32(getattr(config, name))), name
    assert train.window == 3


def test_help_lists_the_projects_flags_and_exits_0():
    result = subprocess.run([sys.executable, os.path.join(REPO, "launch", "apex.py"), "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for flag in ("--lp_launch_type", "--data", "--agent_config", "--num_seeds", "--folds"):
        assert flag in result.stdout, flag
    assert "--xla_" not in result.stdout and "--jax_" not in result.stdout  # not --helpfull's
