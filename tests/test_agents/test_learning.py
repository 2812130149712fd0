"""Ape-X DQN learning pieces: double-Q TD error, Huber loss with IS weights, priorities, target updates."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents import specs, testing
from agents.apex_dqn import builder, losses


def test_double_q_td_error_by_hand():
    # Online net picks action 2 at s' (q 5 > 3 > 1); the target net values it 4.
    td = losses.double_q_td_error(
        q_taken=jnp.array(2.0),
        n_step_return=jnp.array(1.5),
        discount=jnp.array(0.5),
        q_next_online=jnp.array([1.0, 3.0, 5.0]),
        q_next_target=jnp.array([10.0, 20.0, 4.0]),
    )
    assert float(td) == pytest.approx(1.5 + 0.5 * 4.0 - 2.0)  # 1.5; max_a target (20) is not used


def test_terminal_transition_does_not_bootstrap():
    td = losses.double_q_td_error(jnp.array(1.0), jnp.array(3.0), jnp.array(0.0), jnp.ones(3), jnp.full(3, 100.0))
    assert float(td) == pytest.approx(2.0)


def small_setup(**overrides):
    env = testing.CountingEnv()
    spec = specs.make_environment_spec(env)
    config = builder.make_config(hidden_sizes=(8,), batch_size=4, target_update_period=3, **overrides)
    return config, spec


def fixed_batch(spec, size=4):
    rng = np.random.default_rng(0)
    return losses.Batch(
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


EPSILON = 1e-3  # priority_epsilon of the tests below


def test_priority_is_abs_td_plus_epsilon():
    priorities = losses.priority(jnp.array([0.0, -2.0, 0.5]), EPSILON)
    np.testing.assert_allclose(priorities, [EPSILON, 2.0 + EPSILON, 0.5 + EPSILON], rtol=1e-6)


def test_loss_is_importance_weighted_huber_on_the_double_q_target():
    config, spec = small_setup()
    network = builder.make_networks(config, spec)
    params = network.init(jax.random.PRNGKey(0))
    target_params = network.init(jax.random.PRNGKey(1))  # distinct, so swapping online and target shows
    batch = fixed_batch(spec)
    layout = builder.make_transition_layout(config, spec)
    loss_fn = losses.make_double_q_loss(network.apply, layout, 0.5, priority_epsilon=EPSILON)
    loss, extra = loss_fn(params, target_params, batch)

    # By hand: the online net picks a' at s', the target net values it, the online net gives Q(s, a).
    rows = np.arange(4)
    q = np.asarray(network.apply(params, batch.data["observation"]))  # [4, A]
    q_next_online = np.asarray(network.apply(params, batch.data["next_observation"]))  # [4, A]
    q_next_target = np.asarray(network.apply(target_params, batch.data["next_observation"]))  # [4, A]
    q_taken = q[rows, batch.data["action"]]
    target = batch.data["n_step_return"] + 0.9 * q_next_target[rows, q_next_online.argmax(-1)]
    td = target - q_taken
    huber = np.where(np.abs(td) <= 1, 0.5 * td**2, np.abs(td) - 0.5)
    weights = np.array([1.0, 1 / np.sqrt(2), 1 / np.sqrt(3), 0.5])  # (4 P)^-0.5 / max, P = 0.1 .. 0.4
    assert float(loss) == pytest.approx(float(np.mean(weights * huber)), rel=1e-5)
    np.testing.assert_allclose(extra.priorities, np.abs(td) + EPSILON, rtol=1e-5)

    # The test tells the double-Q target from its likely mistakes (else it could not fail).
    q_target_taken = np.asarray(network.apply(target_params, batch.data["observation"]))[rows, batch.data["action"]]
    returns = batch.data["n_step_return"]
    mistakes = {
        "online and target swapped": returns + 0.9 * q_next_online[rows, q_next_target.argmax(-1)] - q_taken,
        "max over the target net": returns + 0.9 * q_next_target.max(-1) - q_taken,
        "online net values s'": returns + 0.9 * q_next_online.max(-1) - q_taken,
        "target net gives Q(s, a)": target - q_target_taken,
    }
    for mistake, wrong_td in mistakes.items():
        assert not np.allclose(np.abs(wrong_td), np.abs(td), rtol=1e-3), mistake

    # Only Q(s, a) is differentiated: the gradient is that of the loss with the target held fixed.
    def loss_with_fixed_target(online):
        fixed_td = target - network.apply(online, batch.data["observation"])[rows, batch.data["action"]]
        return jnp.mean(weights * jnp.where(jnp.abs(fixed_td) <= 1, 0.5 * fixed_td**2, jnp.abs(fixed_td) - 0.5))

    grads = jax.grad(lambda online: loss_fn(online, target_params, batch)[0])(params)
    expected_grads = jax.grad(loss_with_fixed_target)(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7), grads, expected_grads)
    target_grads = jax.grad(lambda target: loss_fn(params, target, batch)[0])(target_params)
    assert all(not np.any(leaf) for leaf in jax.tree.leaves(target_grads))


def test_zero_td_error_gets_priority_epsilon():
    # All-zero parameters give Q = 0 everywhere; with zero returns every TD error is exactly 0.
    config, spec = small_setup()
    network = builder.make_networks(config, spec)
    zeros = jax.tree.map(jnp.zeros_like, network.init(jax.random.PRNGKey(0)))
    batch = fixed_batch(spec)
    batch = batch._replace(data={**batch.data, "n_step_return": np.zeros(4, np.float32)})
    loss_fn = losses.make_double_q_loss(
        network.apply, builder.make_transition_layout(config, spec), 0.5, priority_epsilon=EPSILON
    )
    loss, extra = loss_fn(zeros, zeros, batch)
    assert float(loss) == 0.0
    np.testing.assert_array_equal(extra.priorities, np.full(4, EPSILON, np.float32))


def test_target_network_is_copied_every_target_update_period():
    config, spec = small_setup()
    sgd_step, optimizer = builder.make_sgd_step(config, spec, axis_name=None)
    sgd_step = jax.jit(sgd_step)
    state = losses.init_state(builder.make_networks(config, spec).init, optimizer, seed=0)
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
