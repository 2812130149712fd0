"""Ape-X actor: the epsilon ladder and initial priorities |td| + epsilon from the actor's own Q-values."""

import gymnasium as gym
import jax
import numpy as np
import pytest
reverb = pytest.importorskip("reverb")  # requirements.txt's stack only (BUILD.md)

from agents import replay, specs, testing
from agents.apex_dqn import builder
from agents.apex_dqn.acting import apex_epsilon
from agents.environment_loop import EnvironmentLoop


def test_apex_epsilon_ladder():
    # eps_i = 0.4^(1 + 7 i / (N - 1)), N = 3: 0.4, 0.4^4.5, 0.4^8.
    assert [apex_epsilon(i, 3) for i in range(3)] == pytest.approx([0.4, 0.4**4.5, 0.4**8])
    assert apex_epsilon(0, 1) == 0.4
    with pytest.raises(ValueError, match=r"actor_id must be in \[0, 3\), got 3"):
        apex_epsilon(3, 3)


@pytest.mark.parametrize("env_cls", [testing.CountingEnv, testing.FrameWindowEnv])
def test_initial_priorities_are_abs_n_step_td_errors_plus_epsilon(env_cls):
    env = testing.make_vector_env(env_cls, num_envs=2, episode_length=4, terminates=False)
    spec = specs.make_environment_spec(env)
    config = builder.make_config(hidden_sizes=(8,), n_step=2, discount=0.5, max_replay_size=100, min_replay_size=1)
    layout = builder.make_transition_layout(config, spec)
    server = reverb.Server(builder.make_replay_tables(config, spec))
    address = f"localhost:{server.port}"
    network = builder.make_networks(config, spec)
    params = network.init(jax.random.PRNGKey(3))
    source = testing.StaticVariableSource({"params": params, "version": 0})
    actor = builder.make_actor(config, spec, source, address, actor_id=0, num_actors=1, seed=0)
    EnvironmentLoop(env, actor, seed=0).run(num_env_steps=8)  # one episode of 4 steps in each env
    actor.close()
    assert actor.items_written == 8

    batch = next(replay.sample_batches(address, config.replay_table_name, batch_size=400))
    observation, next_observation = layout.observations(batch.data)
    q = np.asarray(network.apply(params, observation))
    q_next = np.asarray(network.apply(params, next_observation))
    td = batch.data["n_step_return"] + batch.data["discount"] * q_next.max(-1) - q[np.arange(400), batch.data["action"]]
    np.testing.assert_allclose(batch.priorities, np.abs(td) + config.priority_epsilon, rtol=1e-4, atol=1e-6)
    server.stop()


def test_zero_td_error_gets_priority_epsilon_from_the_config():
    # All-zero parameters give Q = 0 everywhere and the rewards are 0, so every transition's TD
    # error is exactly 0: its priority is epsilon alone (0.25 here, not the default).
    def make_env():
        return gym.wrappers.TransformReward(testing.CountingEnv(episode_length=4), lambda reward: 0.0)

    env = gym.vector.SyncVectorEnv([make_env, make_env])
    spec = specs.make_environment_spec(env)
    config = builder.make_config(hidden_sizes=(8,), n_step=2, max_replay_size=100, min_replay_size=1,
                                 priority_epsilon=0.25)
    server = reverb.Server(builder.make_replay_tables(config, spec))
    address = f"localhost:{server.port}"
    zeros = jax.tree.map(np.zeros_like, builder.make_networks(config, spec).init(jax.random.PRNGKey(0)))
    source = testing.StaticVariableSource({"params": zeros, "version": 0})
    actor = builder.make_actor(config, spec, source, address, actor_id=0, num_actors=1, seed=0)
    EnvironmentLoop(env, actor, seed=0).run(num_env_steps=8)
    actor.close()
    assert actor.items_written == 8

    batch = next(replay.sample_batches(address, config.replay_table_name, batch_size=100))
    np.testing.assert_array_equal(batch.data["n_step_return"], 0.0)
    np.testing.assert_array_equal(batch.priorities, np.float32(0.25))
    server.stop()


@pytest.mark.parametrize("reward_scale", [1.0, 100.0])
def test_rewards_are_scaled_before_they_are_stored(reward_scale):
    # CountingEnv: rewards 1, 2, 3, 4 in a 4-step truncated episode; n = 2, gamma = 0.5:
    # n-step returns 1 + 0.5*2, 2 + 0.5*3, 3 + 0.5*4, and 4 alone at the end.
    env = testing.make_vector_env(testing.CountingEnv, num_envs=1, episode_length=4, terminates=False)
    spec = specs.make_environment_spec(env)
    config = builder.make_config(hidden_sizes=(8,), n_step=2, discount=0.5, max_replay_size=100,
                                 min_replay_size=1, reward_scale=reward_scale)
    server = reverb.Server(builder.make_replay_tables(config, spec))
    address = f"localhost:{server.port}"
    params = builder.make_networks(config, spec).init(jax.random.PRNGKey(0))
    source = testing.StaticVariableSource({"params": params, "version": 0})
    actor = builder.make_actor(config, spec, source, address, actor_id=0, num_actors=1, seed=0)
    EnvironmentLoop(env, actor, seed=0).run(num_env_steps=4)
    actor.close()

    batch = next(replay.sample_batches(address, config.replay_table_name, batch_size=200))
    np.testing.assert_allclose(np.unique(batch.data["n_step_return"]), reward_scale * np.array([2.0, 3.5, 4.0, 5.0]))
    server.stop()
