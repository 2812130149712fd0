"""The portfolio benchmarks measure what they say: the bare numpy loop that PortfolioEnv is
timed against computes the env's own steps, and the learning benchmark's baselines are rebuilt
on the run's own test part (a summary that disagrees is refused)."""

import dataclasses

import numpy as np
import pytest

from benchmarks.portfolio import baselines
from benchmarks.portfolio_bare import BareArrays, BareState, BareVectorState, bare_step, bare_vector_step
from environments import EnvConfig, PanelSource
from environments.data.synthetic_panel import synthetic_panel
from environments.envs.portfolio_gym import PortfolioEnv
from environments.envs.portfolio_vector import PortfolioVectorEnv
from environments.evaluation import portfolio_rules as rules


def test_bare_numpy_loop_steps_as_portfolio_env():
    panel, _ = synthetic_panel(num_instruments=4, num_steps=64, seed=3)
    config = EnvConfig(window=3, risk_aversion=5.0)
    env = PortfolioEnv(panel, config, mode="eval")
    obs, _ = env.reset(seed=0)
    arrays = BareArrays(panel.features, panel.can_hold, panel.step_returns,
                        np.asarray(config.positions, np.float64))
    state = BareState(config.window, len(panel) - 1, np.zeros(4), 1.0, np.zeros((3, 4)))
    rng = np.random.default_rng(0)
    for _ in range(20):
        action = rng.integers(0, 3, 4)
        env_obs, env_reward, _, _, info = env.step(action)
        obs, state, reward, bankrupt = bare_step(state, action, arrays, config)
        np.testing.assert_array_equal(obs, env_obs)
        assert reward == env_reward and state.value == info["portfolio_value"] and not bankrupt
        np.testing.assert_array_equal(state.weights, info["weights"])


def test_bare_vector_loop_steps_as_portfolio_vector_env():
    panel, _ = synthetic_panel(num_instruments=4, num_steps=64, seed=3)
    config = EnvConfig(window=3, risk_aversion=5.0)
    env = PortfolioVectorEnv(panel, config, num_envs=2, mode="eval")
    env.reset(seed=0)
    arrays = BareArrays(panel.features, panel.can_hold, panel.step_returns,
                        np.asarray(config.positions, np.float64))
    state = BareVectorState(np.full(2, config.window), np.zeros((2, 4)), np.ones(2), np.zeros((2, 3, 4)))
    rng = np.random.default_rng(0)
    for _ in range(20):
        actions = rng.integers(0, 3, (2, 4))
        env_obs, env_reward, _, _, info = env.step(actions)
        obs, state, reward, bankrupt = bare_vector_step(state, actions, arrays, config)
        np.testing.assert_array_equal(obs, env_obs)
        np.testing.assert_array_equal(reward, env_reward)
        np.testing.assert_array_equal(state.value, info["portfolio_value"])
        np.testing.assert_array_equal(state.weights, info["weights"])
        assert not bankrupt.any()


def summary_of(source: PanelSource, config: EnvConfig) -> dict:
    """What a run's summary.json says of its panel, env and test baselines."""
    test = source.load().test
    periods = 252.0
    return {"market": dataclasses.asdict(source), "env": config.as_dict(),
            "test": {"periods_per_year": periods,
                     "equal_weight_sharpe": rules.walk_levels(
                         test, rules.equal_weight(test), config, periods)["sharpe"],
                     "buy_and_hold_sharpe": rules.basket_buy_and_hold(test, config, periods)["sharpe"]}}


def test_baselines_are_walked_on_the_runs_test_part():
    source = PanelSource(synthetic_instruments=3, synthetic_steps=300, seed=7)
    config = EnvConfig(window=2)
    summary = summary_of(source, config)
    results = baselines(summary, seed=7, random_draws=3)
    assert set(results) == {"oracle", "equal_weight", "basket_buy_and_hold", "ts_momentum",
                            "xs_momentum", "minimum_variance", "random"}
    _, oracle = synthetic_panel(3, 300, 7)
    test = source.load().test
    expected = rules.walk_levels(test, oracle.levels(0.5)[-len(test):], config, 252.0)["sharpe"]
    assert results["oracle"]["sharpe"] == pytest.approx(expected)
    summary["test"]["equal_weight_sharpe"] += 0.01  # a run whose 1/N is not this walk's
    with pytest.raises(RuntimeError, match="equal_weight Sharpe"):
        baselines(summary, seed=7, random_draws=3)
