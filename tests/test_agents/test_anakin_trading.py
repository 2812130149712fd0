"""Integration: both Anakin agents train on environments.envs.jittable.JaxTradingEnv (the functional
TradingEnv) and their greedy policy walks validation markets inside environments' evaluate_policy,
all under jit with vmap over 2 seeds, as the anakin launcher runs them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents import core, specs
from agents.apex_dqn import builder as apex_builder
from agents.impala import builder as impala_builder
from environments import TradingEnv, synthetic_market
from environments.envs.jittable import JaxTradingEnv, eval_params, evaluate_policy

SIZES = {
    "apex_dqn": (apex_builder, dict(hidden_sizes=(8,), batch_size=8, max_replay_size=64, min_replay_size=16,
                                    anakin_num_envs=4, anakin_rollout_steps=4, anakin_updates_per_cycle=2)),
    "impala": (impala_builder, dict(hidden_sizes=(8,), batch_size=2, sequence_length=5, anakin_num_envs=4)),
}


@pytest.mark.parametrize("agent_name", sorted(SIZES))
def test_agent_trains_on_the_jittable_trading_env_and_its_policy_evaluates_in_jit(agent_name):
    builder, settings = SIZES[agent_name]
    train_env = TradingEnv([synthetic_market("ou", 120, seed=seed) for seed in range(2)], window=2,
                           episode_length=16)
    jax_env = JaxTradingEnv(train_env.setup)
    spec = specs.make_environment_spec(train_env)
    config = builder.make_config("small", **settings)
    agent = builder.make_anakin(config, spec, core.FunctionalEnv(jax_env.reset, jax_env.step), None)
    states = jax.vmap(agent.init, in_axes=(0, None))(jax.random.split(jax.random.PRNGKey(0), 2), jax_env.params)
    train_step = jax.jit(jax.vmap(agent.train_step, in_axes=(0, None)))
    for _ in range(4):
        states, metrics = train_step(states, jax_env.params)
    assert np.all(np.asarray(agent.learner_steps(states)) > 0)
    assert all(np.all(np.isfinite(np.asarray(value))) for value in metrics.values())

    validation = eval_params([TradingEnv(synthetic_market("ou", 80, seed=seed), window=2, mode="eval").setup
                              for seed in (10, 11)])
    policy = builder.make_eval_policy(config, spec)

    @jax.jit
    def evaluate(params):
        return evaluate_policy(jax_env, lambda obs: policy(params, obs), validation)

    traces = jax.vmap(evaluate)(agent.policy_params(states))  # [seeds, M, L]
    assert traces.portfolio_values.shape[:2] == (2, 2)
    assert np.all(np.isfinite(np.asarray(traces.portfolio_values)))
    assert np.all(np.asarray(traces.valid).sum(axis=-1) > 0)


def test_apex_replay_by_reference_trains_exactly_as_with_observations_and_is_smaller():
    # The same agent and key, its replay holding observation refs (t and int8 held positions)
    # or the observations themselves: the batches rebuilt from refs are the same observations,
    # so learner and priorities are equal after several cycles of updates (bitwise on the
    # machine that wrote this; two compiled programs may round differently elsewhere).
    builder, settings = SIZES["apex_dqn"]
    train_env = TradingEnv([synthetic_market("ou", 120, seed=seed) for seed in range(2)], window=6,
                           episode_length=8)
    jax_env = JaxTradingEnv(train_env.setup)
    spec = specs.make_environment_spec(train_env)
    config = builder.make_config("small", **settings)
    plain = core.FunctionalEnv(jax_env.reset, jax_env.step)
    by_ref = core.FunctionalEnv(jax_env.reset, jax_env.step, jax_env.observation_ref, jax_env.observation_from_ref)
    states = {}
    for name, env in (("plain", plain), ("by_ref", by_ref)):
        agent = builder.make_anakin(config, spec, env, None)
        state = jax.jit(agent.init)(jax.random.PRNGKey(3), jax_env.params)
        train_step = jax.jit(agent.train_step)
        for _ in range(6):
            state, _ = train_step(state, jax_env.params)
        states[name] = state
    assert int(states["by_ref"].learner.step) == 5 * 2  # 16 items a cycle: learning from the 2nd
    for plain_leaf, ref_leaf in zip(jax.tree.leaves(states["plain"].learner), jax.tree.leaves(states["by_ref"].learner)):
        np.testing.assert_allclose(plain_leaf, ref_leaf, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(states["plain"].replay.leaves, states["by_ref"].replay.leaves, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(states["plain"].replay.items["action"], states["by_ref"].replay.items["action"])
    stored = states["by_ref"].replay.items["observation"]
    assert stored.held.dtype == jnp.int8 and stored.held.shape == (64, 6)
    bytes_of = lambda tree: sum(leaf.nbytes for leaf in jax.tree.leaves(tree))  # noqa: E731
    assert bytes_of(states["by_ref"].replay.items) * 5 < bytes_of(states["plain"].replay.items)
