"""Both agents' Reverb actors on a portfolio (one action per instrument, PortfolioVectorEnv): the
items they write to a real in-process Reverb server hold [D] actions per step, Ape-X's with the
learner's priority (the branches' mean |TD error| + epsilon, one shared target), IMPALA's with
the joint action's log-probability (the sum over its per-instrument categoricals)."""

import jax
import numpy as np
import pytest
reverb = pytest.importorskip("reverb")  # requirements.txt's stack only (BUILD.md)

from agents import replay, specs, testing
from agents.apex_dqn import builder as apex_builder
from agents.environment_loop import EnvironmentLoop
from agents.impala import builder as impala_builder
from environments import EnvConfig
from environments.data.synthetic_panel import synthetic_panel
from environments.envs.portfolio_vector import PortfolioVectorEnv

NUM_INSTRUMENTS = 3


def portfolio_envs(num_envs=2):
    panel, _ = synthetic_panel(num_instruments=NUM_INSTRUMENTS, num_steps=60, seed=2)
    return PortfolioVectorEnv(panel, EnvConfig(window=2, episode_length=5), num_envs)


def run_actor(builder, config, env, steps, seed=0):
    """(params, the server, its address) after `steps` env steps of one actor on `env`."""
    spec = specs.make_environment_spec(env)
    server = reverb.Server(builder.make_replay_tables(config, spec))
    address = f"localhost:{server.port}"
    params = builder.make_networks(config, spec).init(jax.random.PRNGKey(3))
    source = testing.StaticVariableSource({"params": params, "version": 0})
    actor = builder.make_actor(config, spec, source, address, actor_id=0, num_actors=1, seed=seed)
    EnvironmentLoop(env, actor, seed=0).run(num_env_steps=steps)
    actor.close()
    return spec, params, server, address, actor


def test_apex_items_hold_an_action_per_instrument_and_the_learners_priority():
    env = portfolio_envs()
    config = apex_builder.make_config(hidden_sizes=(8,), n_step=2, discount=0.5, max_replay_size=200,
                                      min_replay_size=1, epsilon_base=0.5)
    spec, params, server, address, actor = run_actor(apex_builder, config, env, steps=20)
    assert spec.num_branches == NUM_INSTRUMENTS
    batch = next(replay.sample_batches(address, config.replay_table_name, batch_size=400))
    server.stop()
    action = np.asarray(batch.data["action"])  # [400, D]
    assert action.shape == (400, NUM_INSTRUMENTS) and actor.items_written == 20
    assert len({tuple(a) for a in action}) > 1  # the branches explore on their own
    layout = apex_builder.make_transition_layout(config, spec)
    observation, next_observation = layout.observations(batch.data)
    apply = apex_builder.make_networks(config, spec).apply
    q = np.asarray(apply(params, observation))  # [400, D, A]
    q_next = np.asarray(apply(params, next_observation))
    target = batch.data["n_step_return"] + batch.data["discount"] * q_next.max(-1).mean(-1)  # one per item
    td = target[:, None] - np.take_along_axis(q, action[..., None], -1)[..., 0]  # [400, D]
    np.testing.assert_allclose(batch.priorities, np.abs(td).mean(-1) + config.priority_epsilon,
                               rtol=1e-4, atol=1e-6)


def test_impala_sequences_hold_the_joint_actions_log_probability():
    env = portfolio_envs()
    config = impala_builder.make_config(sequence_length=4, batch_size=2, hidden_sizes=(8,),
                                        max_queue_size=200)
    spec, params, server, address, actor = run_actor(impala_builder, config, env, steps=30)
    client = reverb.Client(address)
    count = client.server_info()[config.queue_table_name].current_size
    assert count == actor.items_written > 0
    samples = client.sample(config.queue_table_name, num_samples=count, emit_timesteps=False,
                            unpack_as_table_signature=True)
    items = [{name: np.asarray(value) for name, value in sample.data.items()} for sample in samples]
    server.stop()
    observation = np.concatenate([item["observation"] for item in items])  # [count * T, D, window, F]
    action = np.concatenate([item["action"] for item in items])  # [count * T, D]
    valid = np.concatenate([item["valid"] for item in items])
    stored = np.concatenate([item["behaviour_log_prob"] for item in items])
    assert action.shape == (len(observation), NUM_INSTRUMENTS)
    logits, _ = impala_builder.make_networks(config, spec).apply(params, observation)  # [.., D, A]
    per_branch = np.take_along_axis(np.asarray(jax.nn.log_softmax(logits)), action[..., None], -1)[..., 0]
    np.testing.assert_allclose(stored[valid], per_branch[valid].sum(-1), atol=1e-5)
    assert np.all(action[~valid] == 0) and (~valid).any()  # final observations of episodes
