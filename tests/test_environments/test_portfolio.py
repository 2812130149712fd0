"""The portfolio envs: hand-computed steps with a missing bar, one instrument step for step as
TradingEnv, the numpy env as the jittable one, and the synthetic panel's oracle edge."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from environments import EnvConfig, TradingEnv
from environments.data.panel import PanelData
from environments.data.synthetic_panel import synthetic_panel
from environments.envs.jittable import JaxTradingEnv
from environments.envs.portfolio import JaxPortfolioEnv, evaluate_portfolio_policy, host_trace
from environments.envs.portfolio_gym import PortfolioEnv
from environments.envs.trading import make_setup
from tests.test_environments.conftest import market_from_closes

COSTS = dict(commission_bps=3.0, spread_bps=2.0, borrow_bps_per_step=1.0)  # 5e-4, 1e-4


def days(n):
    return np.datetime64("2020-01-01", "ns") + np.arange(n) * np.timedelta64(1, "D")


def test_two_instruments_one_missing_bar_by_hand():
    # B has no bar at t=3: a position in B cannot be held from 2 to 3 nor from 3 to 4.
    close = np.array([[100, 50], [101, 50], [102, 51], [100, np.nan], [99, 52], [99, 52]], float)
    panel = PanelData(days(6), close, ("A", "B"))
    env = PortfolioEnv(panel, EnvConfig(window=1, episode_length=1, **COSTS), mode="eval")
    env.reset()
    assert env._t == 1  # bar `window`, as TradingEnv
    long_both, long_a_short_b = np.array([2, 2]), np.array([2, 0])
    _, reward, _, _, info = env.step(long_both)  # 1 -> 2: both holdable, weights 1/2 each
    cost = 0.5 * 5e-4 * 2
    change = 0.5 * (102 / 101 - 1) + 0.5 * (51 / 50 - 1) - cost
    assert info["weights"] == pytest.approx([0.5, 0.5])
    assert reward == pytest.approx(np.log1p(change)) and info["portfolio_value"] == pytest.approx(1 + change)
    value = 1 + change
    # 2 -> 3: B lost its next bar: its position is closed at bar 2 (a forced close); A has all.
    _, reward, _, _, info = env.step(long_a_short_b)
    assert info["weights"] == pytest.approx([1.0, 0.0]) and info["forced_closes"] == 1
    change = (100 / 102 - 1) - (0.5 + 0.5) * 5e-4  # A 0.5 -> 1, B 0.5 -> 0
    assert info["portfolio_value"] == pytest.approx(value * (1 + change))
    value *= 1 + change
    # 3 -> 4: B has no bar at 3 (not holdable); 4 -> 5: short B again pays the borrow.
    env.step(long_a_short_b)
    obs, reward, terminated, _, info = env.step(long_a_short_b)
    assert info["weights"] == pytest.approx([0.5, -0.5]) and terminated
    assert obs.shape == (2, 1, 7 + 2) and obs[1, 0, -1] == 0.0  # B not holdable at the last bar
    change_3 = 99 / 100 - 1
    change_4 = -(0.5 + 0.5) * 5e-4 - 0.5 * 1e-4  # A 1 -> 0.5, B 0 -> -0.5; returns 0
    assert info["portfolio_value"] == pytest.approx(value * (1 + change_3) * (1 + change_4))

    # An evaluation walk counts the forced close too (long both: B closed once, at bar 2).
    from environments.evaluation.portfolio_rules import walk_levels

    walked = walk_levels(panel, np.ones(close.shape), EnvConfig(window=1, **COSTS), 252.0)
    assert walked["forced_closes"] == 1
    assert walk_levels(panel, np.zeros(close.shape), EnvConfig(window=1, **COSTS), 252.0)["forced_closes"] == 0


def test_one_instrument_is_trading_env_step_by_step():
    rng = np.random.default_rng(3)
    closes = 100 * np.exp(np.cumsum(0.01 * rng.standard_normal(80)))
    market = market_from_closes(closes)
    config = EnvConfig(window=4, episode_length=16, risk_aversion=5.0, **COSTS)
    single = TradingEnv.from_config(market, config, mode="eval")
    panel = PanelData(market.timestamps, closes[:, None], ("X",))
    portfolio = PortfolioEnv(panel, config, mode="eval")
    single.reset(), portfolio.reset()
    actions = rng.integers(0, 3, 200)
    for step, action in enumerate(actions):
        _, r1, term1, _, info1 = single.step(int(action))
        obs, r2, term2, _, info2 = portfolio.step(np.array([action]))
        assert r2 == pytest.approx(r1, rel=1e-12, abs=1e-15), step
        assert info2["portfolio_value"] == pytest.approx(info1["portfolio_value"], rel=1e-12)
        assert info2["cost"] == pytest.approx(info1["cost"], rel=1e-12, abs=1e-15)
        assert term1 == term2
        if term1:
            break
    assert term1 and step == len(closes) - 1 - config.window - 1


def test_jittable_matches_the_numpy_env_and_one_instrument_matches_jax_trading_env():
    panel, _ = synthetic_panel(num_instruments=3, num_steps=120, seed=1)
    config = EnvConfig(window=3, episode_length=16, risk_aversion=2.0, **COSTS)
    numpy_env = PortfolioEnv(panel, config, mode="eval")
    jax_env = JaxPortfolioEnv(panel, config, mode="eval")
    obs, _ = numpy_env.reset()
    jax_obs, state = jax_env.reset(jax.random.PRNGKey(0), jax_env.params)
    np.testing.assert_allclose(jax_obs, obs, rtol=1e-6)
    rng = np.random.default_rng(0)
    for _ in range(40):
        action = rng.integers(0, 3, 3)
        obs, reward, _, _, info = numpy_env.step(action)
        state, jax_reward, cost, _, _ = jax_env.transition(state, jnp.asarray(action), jax_env.params)
        np.testing.assert_allclose(jax_env.observation_from_ref(
            jax_env.observation_ref(state, jax_env.params), jax_env.params), obs, rtol=1e-6, atol=1e-6)
        assert float(jax_reward) == pytest.approx(reward, rel=1e-4, abs=1e-6)
        assert float(state.value) == pytest.approx(info["portfolio_value"], rel=1e-5)

    # One instrument: JaxTradingEnv's rewards, in float32, on the same bars.
    closes = np.asarray(panel.close[:, 0])
    market = market_from_closes(closes)
    one = JaxPortfolioEnv(PanelData(market.timestamps, closes[:, None], ("X",)), config, "eval")
    single = JaxTradingEnv(make_setup(market, config, mode="eval"))
    _, s1 = single.reset(jax.random.PRNGKey(0), single.params)
    _, s2 = one.reset(jax.random.PRNGKey(0), one.params)
    for action in rng.integers(0, 3, 50):
        s1, r1, _, _, _ = single.transition(s1, jnp.int32(action), single.params)
        s2, r2, _, _, _ = one.transition(s2, jnp.asarray([action]), one.params)
        assert float(r2) == float(r1) and float(s2.value) == float(s1.value)


def test_the_oracle_makes_money_after_costs_and_equal_weights_walk_like_the_env():
    panel, oracle = synthetic_panel(num_instruments=10, num_steps=600, seed=7)
    config = EnvConfig(window=2, **COSTS)
    params = JaxPortfolioEnv(panel, config, mode="eval").params
    levels = jnp.asarray(oracle.levels(), jnp.float32)  # [T, N]: -1, 0, +1 = action 0, 1, 2
    env = JaxPortfolioEnv(panel, config, mode="eval")

    @jax.jit
    def walk(params):  # the oracle acts on x(t), known at bar t
        _, state = env.reset(jax.random.PRNGKey(0), params)

        def step(state, t):
            state = env.transition(state, (levels[t] + 1).astype(jnp.int32), params)[0]
            return state, state.value

        return jax.lax.scan(step, state, jnp.arange(config.window, len(panel) - 1))[1]

    values = np.asarray(walk(params))
    assert values[-1] > 1.5  # the oracle's edge survives 5 bp costs on 10 instruments
    equal = jax.jit(lambda p: evaluate_portfolio_policy(
        config.window, lambda obs: jnp.full(obs.shape[0], 2, jnp.int32), p))(params)
    trace = host_trace(equal)
    assert trace["weights"].shape == (len(panel) - 1 - config.window, 10)
    np.testing.assert_allclose(trace["weights"], 0.1)  # 1/N, every bar
    growth = np.prod(1 + np.asarray(panel.step_returns[config.window:-1]).mean(axis=1))
    assert trace["portfolio_values"][-1] == pytest.approx(growth * (1 - 5e-4), rel=1e-4)


def test_baselines_walk_on_the_envs_accounting():
    from environments.evaluation import portfolio_rules as rules

    panel, _ = synthetic_panel(num_instruments=4, num_steps=300, seed=2)
    config = EnvConfig(window=2, **COSTS)
    # walk_levels is the jittable env's walk (here all short: action 0, level -1).
    params = JaxPortfolioEnv(panel, config, mode="eval").params
    trace = host_trace(jax.jit(lambda p: evaluate_portfolio_policy(
        config.window, lambda obs: jnp.zeros(4, jnp.int32), p))(params))
    walked = rules.walk_levels(panel, np.zeros(panel.close.shape) - 1.0, config, 252.0)
    np.testing.assert_allclose(walked["portfolio_values"], trace["portfolio_values"], rtol=1e-4)
    assert walked["turnover"] == pytest.approx(1.0 / len(walked["weights"]))  # one entry
    assert walked["exposure"] == pytest.approx(1.0)

    # The basket bought and held: the mean price relative, less the entry cost.
    basket = rules.basket_buy_and_hold(panel, config, 252.0)
    relative = (panel.close[-1] / panel.close[config.window]).mean()
    assert basket["portfolio_values"][-1] == pytest.approx(relative * (1 - 5e-4), rel=1e-9)
    assert basket["turnover"] == pytest.approx(1.0 / len(basket["weights"]), rel=0.05)

    # Minimum variance of two independent walks, variances 1 : 4: weights 4/5 and 1/5.
    rng = np.random.default_rng(0)
    steps = rng.standard_normal((20000, 2)) * [0.01, 0.02]
    two = PanelData(days(20001), 100 * np.exp(np.cumsum(np.vstack([[0, 0], steps]), axis=0)), ("a", "b"))
    weights = rules.minimum_variance(two, two, shrinkage=0.0)[0] / 2
    np.testing.assert_allclose(weights, [0.8, 0.2], atol=0.02)

    # Cross-sectional momentum: long the best, short the worst of each bar's trailing returns.
    xs = rules.xs_momentum(panel, lookback=5, fraction=0.25)
    past = rules.trailing_returns(panel, 5)
    assert (xs[10] == np.where(past[10] == past[10].max(), 1, np.where(past[10] == past[10].min(), -1, 0))).all()


def test_gym_make_builds_the_registered_portfolio_env():
    import gymnasium as gym

    import environments

    panel, _ = synthetic_panel(3, 64, seed=5)
    config = EnvConfig(window=4, episode_length=16, **COSTS)
    made = gym.make(environments.PORTFOLIO_ENV_ID, panel=panel, config=config, mode="eval")
    direct = PortfolioEnv(panel, config, mode="eval")
    assert isinstance(made.unwrapped, PortfolioEnv)
    obs_made, _ = made.reset(seed=0)
    obs_direct, _ = direct.reset(seed=0)
    np.testing.assert_array_equal(obs_made, obs_direct)
    for action in ([2, 0, 1], [0, 0, 2], [1, 2, 2]):
        step_made, step_direct = made.step(np.array(action)), direct.step(np.array(action))
        np.testing.assert_array_equal(step_made[0], step_direct[0])
        assert step_made[1] == step_direct[1]
