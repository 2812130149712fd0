"""The run layer shared by both launch shapes: the same validation sequence selects the same step
under either driver, every launch type builds its envs from one configuration, and `--help`
lists the project's flags."""

import math
import os
import subprocess
import sys
from statistics import NormalDist

import numpy as np
import pytest
from absl.testing import flagsaver

from environments import EnvConfig, EnvFactory, MarketSource
from launch.anakin.evaluation import SplitEvaluator, model_selection
from launch.run.recorder import Recorder
from test_nodes import LONG, SHORT, Learner, write_csv

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


def run_both_drivers(script, bars, workdir, flat_margin=None):
    """The distributed evaluator node and anakin's selection fed the same scripted sequence of
    (learner step, constant action): each one's validation records and its test record."""
    import jax.numpy as jnp

    from launch.distributed import nodes

    envs = EnvFactory(MarketSource(bars), EnvConfig(window=2))
    learner = Learner(script[0][1], version=script[0][0])
    node = nodes.EvaluatorNode(
        "constant_action", config=None, spec=None, learner=learner,
        recorder=Recorder(str(workdir / "distributed")), envs=envs, eval_every=10,
        workdir=str(workdir / "distributed"), flat_margin=flat_margin)
    distributed = []
    for step, action in script:
        learner.set(action, version=step)
        distributed.append(node.evaluate(final=step == script[-1][0]))

    policy = lambda params, obs: jnp.full(obs.shape[0], params["action"], jnp.int32)  # noqa: E731
    splits = {part: SplitEvaluator(part, envs, policy, None) for part in ("validation", "test")}
    selection = model_selection(str(workdir / "anakin"), 1, splits,
                                Recorder(str(workdir / "anakin")), False, flat_margin)
    compiled = [selection.validate(step, {"action": np.array([action], np.int32)},
                                   final=step == script[-1][0]) for step, action in script]
    return distributed, node.evaluate_test(), compiled, selection.test()[0]


@pytest.fixture
def constant_action(monkeypatch):
    from agents.registry import AGENTS
    from test_nodes import constant_action_builder

    monkeypatch.setitem(AGENTS, "constant_action", constant_action_builder())


def test_both_drivers_select_the_same_step_from_the_same_validation_sequence(bars, tmp_path,
                                                                             constant_action):
    # Flat, then long (best on the rising validation), short, long again (a tie: not newer).
    script = [(10, FLAT), (20, LONG), (30, SHORT), (40, LONG)]
    distributed, distributed_test, compiled, compiled_test = run_both_drivers(
        script, bars, tmp_path, flat_margin=1.0)

    # The same record of each evaluation, the same kept step, the same test of it.
    assert [r["best_learner_steps"] for r in distributed] == [10, 20, 20, 20]
    assert [r["best_learner_steps"] for r in compiled] == [10, 20, 20, 20]
    for ours, theirs in zip(distributed, compiled):
        assert set(ours) - {"equity_plot"} == set(theirs) - {"equity_plot"}
        for key in ("sharpe", "total_return", "buy_and_hold_sharpe", "turnover"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-4, abs=1e-6), key
    assert set(distributed_test) == set(compiled_test) - {"_results"}
    for test in (distributed_test, compiled_test):
        assert test["learner_steps"] == 20 and test["policy"] == "agent"
        assert test["selected_by"] == "best validation sharpe"
    assert distributed_test["flat_threshold"] == pytest.approx(compiled_test["flat_threshold"])
    assert distributed_test["sharpe"] == pytest.approx(compiled_test["sharpe"], rel=1e-4)
    assert distributed_test["sharpe"] < -1.0  # long, kept from validation, on the falling test


def test_both_drivers_select_flat_when_no_step_beats_it_by_the_margin(bars, tmp_path,
                                                                      constant_action):
    # Short, then flat: neither gains on the rising validation. Flat's validation Sharpe is 0.
    distributed, distributed_test, compiled, compiled_test = run_both_drivers(
        [(10, SHORT), (20, FLAT)], bars, tmp_path, flat_margin=0.5)
    years = distributed[-1]["years"]  # the validation market's span: ~60 calendar days
    assert 0.1 < years < 0.2 and compiled[-1]["years"] == pytest.approx(years)
    for test in (distributed_test, compiled_test):
        assert test["policy"] == "flat" and test["learner_steps"] is None
        assert test["selected_by"].startswith("flat")
        # The agent's best (step 20, Sharpe 0: flat by its action) of 2 evaluations needed what
        # luck gives the best of 2, E[max] = gamma * Phi^-1(1 - 1/(2e)) standard errors, + 0.5.
        luck = 0.5772156649015329 * NormalDist().inv_cdf(1 - 1 / (2 * math.e))
        assert test["flat_threshold"] == pytest.approx((luck + 0.5) / years ** 0.5)
        assert test["sharpe"] == test["total_return"] == test["turnover"] == 0.0
        assert test["buy_and_hold_sharpe"] < -1.0  # the test split falls: flat did no harm
    # Without the flat candidate the best step (20) is tested, as before.
    _, distributed_test, _, compiled_test = run_both_drivers(
        [(10, SHORT), (20, FLAT)], bars, tmp_path / "no_flat", flat_margin=None)
    for test in (distributed_test, compiled_test):
        assert test["policy"] == "agent" and test["learner_steps"] == 20
        assert test["flat_threshold"] is None


def test_flats_bar_rises_with_the_evaluations_the_best_was_chosen_among():
    from launch.run.selection import flat_threshold

    best = {"flat_sharpe": 0.0, "years": 4.0}  # a standard error of 1 / sqrt(4) = 0.5
    assert flat_threshold(best, 1.0, trials=1) == pytest.approx(0.5)  # nothing chosen: the margin
    bars = [flat_threshold(best, 1.0, trials=k) for k in (2, 10, 40, 400)]
    assert bars == sorted(bars) and bars[0] > 0.5
    # The best of 40 pure-noise evaluations lands near E[max of 40] ~ 2.2 standard errors.
    assert bars[2] == pytest.approx(0.5 * (1.0 + 2.2), abs=0.1)
    assert flat_threshold({"flat_sharpe": None, "years": 4.0}, 1.0, 5) is None  # an old best.json


def _setup(launch_type, data, workdir, *flags):
    from launch.flags import FLAGS
    from launch.run.setup import make_setup

    with flagsaver.flagsaver():
        FLAGS.unparse_flags()
        FLAGS(["apex", f"--lp_launch_type={launch_type}", f"--data={data}",
               f"--workdir={workdir}", "--window=3", "--episode_length=64", "--commission_bps=2",
               "--spread_bps=3", "--borrow_bps_per_step=0.5", "--positions=-1,0,0.5,1", *flags])
        return make_setup(FLAGS)


def test_each_agent_trains_with_its_own_risk_aversion_unless_told(bars, tmp_path):
    apex = _setup("anakin", bars, tmp_path / "apex")
    impala = _setup("anakin", bars, tmp_path / "impala", "--agent=impala")
    told = _setup("anakin", bars, tmp_path / "told", "--agent=impala", "--risk_aversion=5")
    units = 0.01 / apex.return_volatility
    assert apex.envs.config.risk_aversion == pytest.approx(24.0 * units)
    assert impala.envs.config.risk_aversion == 0.0
    assert told.envs.config.risk_aversion == pytest.approx(5.0 * units)
    assert "--risk_aversion=24.0" in apex.flags_text and "--risk_aversion=0.0" in impala.flags_text


@pytest.mark.reverb
def test_every_launch_type_builds_its_envs_from_one_configuration(bars, tmp_path):
    from environments.envs.jittable import JaxTradingEnv, eval_params

    threads = _setup("local_mt", bars, tmp_path / "mt", "--risk_aversion=7")
    compiled = _setup("anakin", bars, tmp_path / "anakin", "--risk_aversion=7")
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
