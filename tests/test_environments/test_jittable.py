"""JaxTradingEnv against TradingEnv step by step (a universe of three markets, fixed start
bars, across auto-resets), bankruptcy, start bars numbered as TradingSetup.starts numbers them,
evaluate_policy against metrics.run_episodes, and that it jits and vmaps."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnasium.utils import seeding

from environments import TradingEnv, run_episodes, synthetic_market, trading_metrics
from environments.envs.accounting import LOG_MIN_GROWTH
from environments.envs.jittable import JaxTradingEnv, eval_params, evaluate_policy
from tests.conftest import REPO_ROOT

SHORT, FLAT, LONG = 0, 1, 2
KWARGS = dict(window=8, episode_length=12, borrow_bps_per_step=2.0, risk_aversion=4.0)


@pytest.fixture(scope="module")
def universe():
    """Three small markets of different lengths and processes."""
    return [synthetic_market("regime", 60, seed=1), synthetic_market("ou", 80, seed=2),
            synthetic_market("gbm", 70, seed=3)]


def start_number(setup, market, start):
    """The number TradingSetup.starts gives the pair (market, start bar)."""
    return int(setup.start_counts[market] + start - setup.first_steps[market])


def reset_trading_env_at(env, market, start):
    """Resets `env` (train mode) with the first seed whose draw is (market, start bar)."""
    for seed in range(100_000):
        uniform = seeding.np_random(seed)[0].random()
        drawn_market, drawn_start = env.setup.starts(np.array([uniform]))
        if (drawn_market[0], drawn_start[0]) == (market, start):
            obs, info = env.reset(seed=seed)
            assert (info["market_index"], info["step_index"]) == (market, start)
            return obs
    raise AssertionError(f"no seed draws market {market} start {start}")


def assert_step_equal(jenv, jax_step, env_step):
    """One step (obs, state, reward, done, info) of `jenv` against TradingEnv's."""
    obs, _, reward, done, info = jax_step
    env_obs, env_reward, terminated, truncated, env_info = env_step
    np.testing.assert_array_equal(info["final_observation"], env_obs)
    np.testing.assert_array_equal(jenv.observation_from_ref(info["final_observation_ref"], jenv.params), env_obs)
    assert float(reward) == pytest.approx(env_reward, rel=1e-5, abs=1e-7)
    assert (bool(info["terminated"]), bool(info["truncated"])) == (terminated, truncated)
    assert bool(done) == (terminated or truncated)
    assert float(info["portfolio_value"]) == pytest.approx(env_info["portfolio_value"], rel=1e-5)
    assert float(info["cost"]) == pytest.approx(env_info["cost"], rel=1e-5, abs=1e-10)
    assert float(info["position"]) == env_info["position"]
    for key in ("traded", "step_index", "market_index"):
        assert info[key] == env_info[key], key
    if not done:
        np.testing.assert_array_equal(obs, env_obs)


def test_train_steps_equal_trading_env_across_auto_resets(universe):
    env = TradingEnv(universe, **KWARGS)
    jenv = JaxTradingEnv(env.setup)
    params = jenv.params
    step, reset_to = jax.jit(jenv.step), jax.jit(jenv.reset_to)
    market, start = 1, int(env.setup.first_steps[1]) + 5  # a fixed start bar in market 1
    obs, state = reset_to(start_number(env.setup, market, start), params)
    np.testing.assert_array_equal(obs, reset_trading_env_at(env, market, start))
    actions = np.random.default_rng(0).integers(0, 3, 40)
    keys = jax.random.split(jax.random.PRNGKey(0), len(actions))
    resets = 0
    for key, action in zip(keys, actions):
        result = step(key, state, jnp.int32(action), params)
        assert_step_equal(jenv, result, env.step(int(action)))
        obs, state, _, done, _ = result
        if done:  # auto-reset: TradingEnv restarts where the jax env drew its new episode
            resets += 1
            assert int(state.t) + KWARGS["episode_length"] == int(state.end)
            env_obs = reset_trading_env_at(env, int(state.market_index), int(state.t))
            np.testing.assert_array_equal(obs, env_obs)
    assert resets == 3  # 40 steps of 12-step episodes


@pytest.mark.parametrize("positions", [(-1.0, 0.0, 1.0), (-0.5, 0.25, 1.0)])
def test_observations_by_reference_rebuild_exactly_what_the_env_shows(universe, positions):
    # Held positions before an episode's start are 0: an index of their own (-1) when 0 is
    # not a position. Every state of a rollout across resets, as an int8 ref of the window.
    jenv = JaxTradingEnv(TradingEnv(universe, positions=positions, **KWARGS).setup)
    params = jenv.params
    obs, state = jenv.reset_to(3, params)
    rebuild = jax.jit(lambda state: jenv.observation_from_ref(jenv.observation_ref(state, params), params))
    step = jax.jit(jenv.step)
    actions = np.random.default_rng(1).integers(0, 3, 30)
    seen = set()
    for key, action in zip(jax.random.split(jax.random.PRNGKey(1), len(actions)), actions):
        ref = jenv.observation_ref(state, params)
        assert ref.held.dtype == jnp.int8 and ref.held.shape == (KWARGS["window"],)
        seen.update(np.asarray(ref.held).tolist())
        np.testing.assert_array_equal(rebuild(state), obs)
        obs, state, _, _, info = step(key, state, jnp.int32(action), params)
        np.testing.assert_array_equal(jenv.observation_from_ref(info["final_observation_ref"], params),
                                      info["final_observation"])
    assert seen == ({0, 1, 2} | ({-1} if 0.0 not in positions else set()))


def test_start_numbers_are_tradingsetup_starts(universe):
    env = TradingEnv(universe, **KWARGS)
    jenv = JaxTradingEnv(env.setup)
    numbers = np.arange(env.setup.num_starts)
    _, states = jax.jit(jax.vmap(jenv.reset_to, in_axes=(0, None)))(numbers, jenv.params)
    markets, starts = env.setup.starts((numbers + 0.5) / env.setup.num_starts)
    np.testing.assert_array_equal(states.market_index, markets)
    np.testing.assert_array_equal(states.t, starts)
    np.testing.assert_array_equal(states.end, starts + KWARGS["episode_length"])


def test_bankruptcy_terminates_with_the_floor_reward(make_market):
    closes = [100.0, 100.0, 100.0, 100.0, 250.0, 250.0, 250.0, 250.0]  # +150% into bar 4
    env = TradingEnv(make_market(closes), window=1, episode_length=3)
    jenv = JaxTradingEnv(env.setup)
    _, state = jenv.reset_to(1, jenv.params)  # start at bar 2
    assert int(state.t) == 2
    step = jax.jit(jenv.step)
    _, state, _, done, _ = step(jax.random.PRNGKey(0), state, jnp.int32(FLAT), jenv.params)
    assert not done
    _, state, reward, done, info = step(jax.random.PRNGKey(1), state, jnp.int32(SHORT),
                                        jenv.params)
    assert done and info["terminated"] and not info["truncated"]
    assert reward == np.float32(LOG_MIN_GROWTH) and info["portfolio_value"] == 0.0
    assert int(state.t) + 3 == int(state.end) and state.value == 1.0  # reset
    # an eval walk stops at the bankruptcy: the rest is padding
    eval_env = TradingEnv(make_market(closes), window=1, mode="eval")
    trace = evaluate_policy(1, lambda obs: jnp.full(obs.shape[0], SHORT),
                            eval_params([eval_env.setup]))
    np.testing.assert_array_equal(trace.valid[0], [True] * 3 + [False] * 3)
    # from bar 1: short (2 bps traded, 0.4 bps borrow), held (borrow), then +150%: bankrupt
    np.testing.assert_allclose(trace.portfolio_values[0],
                               [1.0, 0.99976, 0.99976 * 0.99996, 0.0, 0.0, 0.0, 0.0], rtol=1e-6)


def eval_envs(lengths):
    return [TradingEnv(synthetic_market("regime", n, seed=n), mode="eval", **KWARGS)
            for n in lengths]


@pytest.mark.parametrize("name", ["short", "long", "follow_last_return"])
def test_evaluate_policy_equals_run_episodes(name):
    envs = eval_envs((40, 55, 47))  # padded to the longest
    numpy_policy, jax_policy = {
        "short": (lambda obs: np.full(len(obs), SHORT), lambda obs: jnp.full(len(obs), SHORT)),
        "long": (lambda obs: np.full(len(obs), LONG), lambda obs: jnp.full(len(obs), LONG)),
        "follow_last_return": (lambda obs: np.where(obs[:, -1, 0] > 0, LONG, SHORT),
                               lambda obs: jnp.where(obs[:, -1, 0] > 0, LONG, SHORT)),
    }[name]
    results = run_episodes(envs, numpy_policy)
    trace = jax.jit(lambda params: evaluate_policy(KWARGS["window"], jax_policy, params))(
        eval_params([env.setup for env in envs]))
    assert trace.valid.shape == (3, 55 - 1 - KWARGS["window"])
    for m, result in enumerate(results):
        num_steps = len(result["positions"])
        assert num_steps == [31, 46, 38][m]  # last bar - first valid bar
        np.testing.assert_array_equal(trace.valid[m], np.arange(trace.valid.shape[1]) < num_steps)
        values = np.asarray(trace.portfolio_values[m, :num_steps + 1], dtype=np.float64)
        np.testing.assert_allclose(values, result["portfolio_values"], rtol=1e-5)
        np.testing.assert_array_equal(trace.positions[m, :num_steps], result["positions"])
        np.testing.assert_allclose(trace.rewards[m, :num_steps], result["rewards"], rtol=1e-4,
                                   atol=1e-6)
        assert (trace.portfolio_values[m, num_steps:] == trace.portfolio_values[m, num_steps]).all()
        metrics = trading_metrics(values, np.asarray(trace.positions[m, :num_steps]))
        for key in ("total_return", "sharpe", "max_drawdown", "turnover"):
            assert metrics[key] == pytest.approx(result["metrics"][key], rel=1e-3, abs=1e-6), key


def test_eval_mode_env_walks_its_market_then_restarts():
    (env,) = eval_envs((40,))
    jenv = JaxTradingEnv(env.setup)
    obs, state = jenv.reset(jax.random.PRNGKey(0), jenv.params)
    np.testing.assert_array_equal(obs, env.reset()[0])
    step = jax.jit(jenv.step)
    for i in range(31):
        result = step(jax.random.PRNGKey(i), state, jnp.int32(i % 3), jenv.params)
        assert_step_equal(jenv, result, env.step(i % 3))
        obs, state, _, done, _ = result
    assert done and int(state.t) == env.setup.first_step  # terminated at the last bar, reset


def test_jit_vmap_over_keys_and_a_rollout(universe):
    jenv = JaxTradingEnv(TradingEnv(universe, **KWARGS).setup)
    num_envs, num_steps = 256, 16
    keys = jax.random.split(jax.random.PRNGKey(0), num_envs)
    obs, states = jax.jit(jax.vmap(jenv.reset, in_axes=(0, None)))(keys, jenv.params)
    assert obs.shape == (num_envs,) + jenv.observation_shape and obs.dtype == jnp.float32
    assert set(np.asarray(states.market_index)) == {0, 1, 2}
    step = jax.vmap(jenv.step, in_axes=(0, 0, 0, None))

    @jax.jit
    def rollout(key, states, params):
        def one(carry, key):
            states = carry
            action_key, step_key = jax.random.split(key)
            actions = jax.random.randint(action_key, (num_envs,), 0, jenv.num_actions)
            _, states, rewards, dones, _ = step(jax.random.split(step_key, num_envs), states,
                                                actions, params)
            return states, (rewards, dones)
        return jax.lax.scan(one, states, jax.random.split(key, num_steps))

    states, (rewards, dones) = rollout(jax.random.PRNGKey(1), states, jenv.params)
    assert rewards.shape == (num_steps, num_envs) and rewards.dtype == jnp.float32
    assert np.isfinite(rewards).all() and dones.any()  # 16 steps cross 12-step episode ends
    assert ((states.end - states.t) <= KWARGS["episode_length"]).all()


def test_import_environments_does_not_import_jax():
    code = "import sys, environments; assert 'jax' not in sys.modules, 'jax imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)
