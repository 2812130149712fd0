"""Ape-X DQN learning pieces: double-Q TD error, Huber loss with IS weights, target updates."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents import specs, testing
from agents.apex_dqn import builder, learning


def test_double_q_td_error_by_hand():
    # Online net picks action 2 at s' (q 5 > 3 > 1); the target net values it 4.
    td = learning.double_q_td_error(
        q_taken=jnp.array(2.0),
        n_step_return=jnp.array(1.5),
        discount=jnp.array(0.5),
        q_next_online=jnp.array([1.0, 3.0, 5.0]),
        q_next_target=jnp.array([10.0, 20.0, 4.0]),
    )
    assert float(td) == pytest.approx(1.5 + 0.5 * 4.0 - 2.0)  # 1.5; max_a target (20) is not used


def test_terminal_transition_does_not_bootstrap():
    td = learning.double_q_td_error(jnp.array(1.0), jnp.array(3.0), jnp.array(0.0), jnp.ones(3), jnp.full(3, 100.0))
    assert float(td) == pytest.approx(2.0)


def small_setup(**overrides):
    env = testing.CountingEnv()
    spec = specs.make_environment_spec(env)
    config = builder.make_config(hidden_sizes=(8,), batch_size=4, target_update_period=3, **overrides)
    return config, spec


def fixed_batch(spec, size=4):
    rng = np.random.default_rng(0)
    return learning.Batch(
        data={
            "observation": rng.normal(size=(size, *spec.observation_shape)).astype(np.float32),
            "next_observation": rng.normal(size=(size, *spec.observation_shape)).astype(np.float32),
            "action": rng.integers(0, spec.num_actions, size).astype(np.int32),
            "n_step_return": rng.normal(size=size).astype(np.float32),
            "discount": np.full(size, 0.9, np.float32),
        },
        probabilities=np.array([0.1, 0.2, 0.3, 0.4], np.float32),
        table_size=np.full(size, 4.0, np.float32),
    )


def test_loss_is_importance_weighted_huber_and_priorities_are_abs_td():
    config, spec = small_setup()
    network = builder.make_networks(config, spec)
    params = network.init(jax.random.PRNGKey(0))
    batch = fixed_batch(spec)
    loss_fn = learning.make_double_q_loss(network.apply, builder.make_transition_layout(config, spec), 0.5)
    loss, extra = loss_fn(params, params, batch)

    q = np.asarray(network.apply(params, batch.data["observation"]))
    q_next = np.asarray(network.apply(params, batch.data["next_observation"]))
    td = batch.data["n_step_return"] + 0.9 * q_next.max(-1) - q[np.arange(4), batch.data["action"]]
    huber = np.where(np.abs(td) <= 1, 0.5 * td**2, np.abs(td) - 0.5)
    weights = np.array([1.0, 1 / np.sqrt(2), 1 / np.sqrt(3), 0.5])
    assert float(loss) == pytest.approx(float(np.mean(weights * huber)), rel=1e-5)
    np.testing.assert_allclose(extra.priorities, np.abs(td), rtol=1e-5)


def test_target_network_is_copied_every_target_update_period():
    config, spec = small_setup()
    sgd_step, optimizer = builder.make_sgd_step(config, spec, axis_name=None)
    sgd_step = jax.jit(sgd_step)
    state = learning.init_state(builder.make_networks(config, spec).init, optimizer, seed=0)
    initial_target = state.target_params
    batch = fixed_batch(spec)
    for step in range(1, 4):
        state, extra = sgd_step(state, batch)
        same = jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), state.target_params, initial_target)
        assert all(jax.tree.leaves(same)) == (step < 3)
    assert int(state.step) == 3
    jax.tree.map(np.testing.assert_array_equal, state.target_params, state.params)  # copied at step 3


def test_unknown_config_override_is_named():
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['learning_rte'\]"):
        builder.make_config(learning_rte=0.1)
