"""Both agents under Anakin (agents/*/anakin.py) on the functional CountingEnv: the n-step items
and initial priorities of the in-graph replay, IMPALA's rollout rows, the Reverb learner's own
sgd_step on the same batch, determinism, seeds under vmap, and pmap over 2 host devices."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from agents import jax_replay, specs, testing
from agents.apex_dqn import builder as apex_builder
from agents.apex_dqn.losses import Batch
from agents.impala import anakin as impala_anakin
from agents.impala import builder as impala_builder

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC = specs.make_environment_spec(testing.CountingEnv())
ENV = testing.make_counting_functional_env()
EPISODE_LENGTH = 5


def apex_config(**overrides):
    settings = dict(hidden_sizes=(8,), batch_size=8, n_step=3, discount=0.5, reward_scale=2.0,
                    max_replay_size=40, min_replay_size=40, target_update_period=2,
                    anakin_num_envs=2, anakin_rollout_steps=10, anakin_updates_per_cycle=1)
    return apex_builder.make_config(**{**settings, **overrides})


def expected_transition(t, terminates, n=3, gamma=0.5, scale=2.0):
    """(n_step_return, discount, next t) of the transition starting at CountingEnv step t."""
    k = min(n, EPISODE_LENGTH - t)
    n_step_return = sum(gamma ** j * scale * (t + j + 1) for j in range(k))
    ends = t + k == EPISODE_LENGTH
    return n_step_return, 0.0 if (ends and terminates) else gamma ** k, t + k


@pytest.mark.parametrize("terminates", [True, False])
def test_apex_items_are_the_n_step_adders_transitions_with_actor_priorities(terminates):
    config = apex_config()
    agent = apex_builder.make_anakin(config, SPEC, ENV, None)
    env_params = testing.counting_env_params(EPISODE_LENGTH, terminates)
    state = agent.init(jax.random.PRNGKey(0), env_params)
    state, metrics = jax.jit(agent.train_step)(state, env_params)
    assert int(agent.learner_steps(state)) == 0 and float(metrics["replay_size"]) == 16
    items = jax.tree.map(np.asarray, state.replay.items)
    leaves = np.asarray(state.replay.leaves)
    # Row = step * 2 + env. Per env: steps 1-2 have no transition yet (holes), steps 3-5 write
    # t = 0, 1, 2 (k = 3), steps 6-7 the first episode's t = 3 (k = 2) and t = 4 (k = 1), steps 8-10
    # the second episode's t = 0, 1, 2.
    starts = [None, None, 0, 1, 2, 3, 4, 0, 1, 2]
    apply = apex_builder.make_networks(config, SPEC).apply
    q = lambda obs: np.asarray(apply(state.learner.params, obs[None]))[0]  # noqa: E731
    for env in range(2):
        previous_action = -1.0
        for step, t in enumerate(starts):
            row = step * 2 + env
            if t is None:
                assert leaves[row] == 0.0
                continue
            n_step_return, discount, next_t = expected_transition(t, terminates)
            assert items["observation"][row][0] == t and items["next_observation"][row][0] == next_t
            if t > 0:
                assert items["observation"][row][1] == previous_action  # obs_t holds a_{t-1}
            previous_action = float(items["action"][row])
            assert items["n_step_return"][row] == pytest.approx(n_step_return)
            assert items["discount"][row] == pytest.approx(discount)
            target = n_step_return + discount * q(items["next_observation"][row]).max()
            td_error = target - q(items["observation"][row])[items["action"][row]]
            expected_leaf = (abs(td_error) + config.priority_epsilon) ** config.priority_exponent
            assert leaves[row] == pytest.approx(expected_leaf, rel=1e-5)


def test_apex_update_is_the_reverb_learners_sgd_step_on_the_sampled_batch():
    learning_agent = apex_builder.make_anakin(apex_config(min_replay_size=1), SPEC, ENV, None)
    acting_agent = apex_builder.make_anakin(apex_config(), SPEC, ENV, None)  # min_replay_size: never learns
    env_params = testing.counting_env_params(EPISODE_LENGTH, False)
    state = learning_agent.init(jax.random.PRNGKey(3), env_params)
    learned, metrics = jax.jit(learning_agent.train_step)(state, env_params)
    acted, _ = jax.jit(acting_agent.train_step)(state, env_params)  # the same acting, no update
    # The cycle's update key, as train_step splits it; the batch it sampled from the replay.
    _, _, update_key = jax.random.split(state.rng, 3)
    sample = jax_replay.sample(acted.replay, jax.random.split(update_key, 1)[0], 8)
    batch = Batch(sample.items, sample.probabilities, jnp.full(8, sample.size, jnp.float32))

    config = apex_config(min_replay_size=1)
    layout = apex_builder.make_transition_layout(config, SPEC)  # the Reverb learner's item layout
    loss_fn = apex_builder.make_loss(config, SPEC, layout, None)
    (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.learner.params, state.learner.target_params, batch)
    assert float(metrics["loss"]) == pytest.approx(float(loss), rel=1e-6)
    assert float(metrics["gradient_norm"]) == pytest.approx(float(optax.global_norm(grads)), rel=1e-5)
    sgd_step, _ = apex_builder.make_sgd_step(config, SPEC, axis_name=None)  # what make_learner pmaps
    expected, extra = sgd_step(state.learner, batch)
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)  # noqa: E731
    jax.tree.map(close, learned.learner.params, expected.params)
    expected_leaves = jax_replay.set_priorities(acted.replay, sample.indices, extra.priorities,
                                                config.priority_exponent).leaves
    np.testing.assert_allclose(learned.replay.leaves, expected_leaves, rtol=1e-6)


def run_steps(agent, key, env_params, steps):
    state = agent.init(key, env_params)
    train_step = jax.jit(agent.train_step)
    for _ in range(steps):
        state, _ = train_step(state, env_params)
    return state


@pytest.mark.parametrize("agent_name", ["apex_dqn", "impala"])
def test_same_key_same_state_and_two_seeds_under_vmap_are_two_agents(agent_name):
    if agent_name == "apex_dqn":
        agent = apex_builder.make_anakin(apex_config(min_replay_size=8), SPEC, ENV, None)
    else:
        agent = impala_builder.make_anakin(impala_config(), SPEC, ENV, None)
    env_params = testing.counting_env_params(EPISODE_LENGTH, False)
    first = run_steps(agent, jax.random.PRNGKey(5), env_params, 3)
    second = run_steps(agent, jax.random.PRNGKey(5), env_params, 3)
    assert int(agent.learner_steps(first)) > 0
    jax.tree.map(np.testing.assert_array_equal, first, second)

    keys = jax.random.split(jax.random.PRNGKey(5), 2)
    states = jax.vmap(agent.init, in_axes=(0, None))(keys, env_params)
    train_step = jax.jit(jax.vmap(agent.train_step, in_axes=(0, None)))
    for _ in range(3):
        states, metrics = train_step(states, env_params)
    params = agent.policy_params(states)
    for leaf in jax.tree.leaves(params):
        assert not np.allclose(leaf[0], leaf[1])
    assert np.all(np.asarray(agent.env_steps(states)) == int(agent.env_steps(first)))
    assert all(np.all(np.isfinite(np.asarray(value))) for value in metrics.values())


def impala_config(**overrides):
    settings = dict(hidden_sizes=(8,), batch_size=2, sequence_length=5, anakin_num_envs=4, discount=0.5,
                    reward_scale=2.0)
    return impala_builder.make_config(**{**settings, **overrides})


@pytest.mark.parametrize("terminates", [True, False])
def test_impala_rollout_rows_fold_a_truncation_bootstrap_into_the_reward(terminates):
    config = impala_config()
    network = impala_builder.make_networks(config, SPEC)
    params = network.init(jax.random.PRNGKey(0))
    env_params = testing.counting_env_params(3, terminates)  # episodes of 3 steps; rows 0-3 are steps
    reset_keys = jax.random.split(jax.random.PRNGKey(1), 4)
    observations, env_states = jax.vmap(ENV.reset, in_axes=(0, None))(reset_keys, env_params)
    _, last_obs, data, rewards, dones = impala_anakin.rollout(
        network.apply, ENV, env_params, params, env_states, observations, jax.random.PRNGKey(2), 5, 0.5, 2.0)
    data = jax.tree.map(np.asarray, data)
    assert data["observation"].shape == (4, 5, 3) and np.asarray(rewards).shape == (4, 4)
    np.testing.assert_array_equal(data["observation"][:, :, 0], np.tile([0, 1, 2, 0, 1], (4, 1)))
    np.testing.assert_array_equal(data["valid"], np.tile([True, True, True, True, False], (4, 1)))
    np.testing.assert_array_equal(data["discount"][:, :4], np.tile([1.0, 1.0, 0.0, 1.0], (4, 1)))
    np.testing.assert_array_equal(np.asarray(dones).T, np.tile([False, False, True, False], (4, 1)))
    np.testing.assert_allclose(data["reward"][:, [0, 1, 3]], np.tile([2.0, 4.0, 2.0], (4, 1)))
    # Step 2 ends the episode at obs [3, a_2, 0]: terminated -> 6; truncated -> 6 + 0.5 V(final obs).
    final_obs = np.stack([np.full(4, 3.0), data["action"][:, 2].astype(np.float32), np.zeros(4)], axis=1)
    bootstrap = 0.0 if terminates else 0.5 * np.asarray(network.apply(params, final_obs)[1])
    np.testing.assert_allclose(data["reward"][:, 2], 6.0 + bootstrap, rtol=1e-6)
    np.testing.assert_array_equal(last_obs, data["observation"][:, -1])
    logits, _ = network.apply(params, data["observation"][:, :4].reshape(16, 3))
    log_pi = np.asarray(jax.nn.log_softmax(logits)).reshape(4, 4, -1)
    taken = np.take_along_axis(log_pi, data["action"][:, :4, None], axis=-1)[..., 0]
    np.testing.assert_allclose(data["behaviour_log_prob"][:, :4], taken, rtol=1e-5, atol=1e-6)


def test_impala_update_is_the_reverb_learners_sgd_step_on_the_rollout():
    config = impala_config()
    agent = impala_builder.make_anakin(config, SPEC, ENV, None)
    env_params = testing.counting_env_params(3, False)
    state = agent.init(jax.random.PRNGKey(4), env_params)
    learned, metrics = jax.jit(agent.train_step)(state, env_params)
    _, key = jax.random.split(state.rng)
    network = impala_builder.make_networks(config, SPEC)
    _, _, data, _, _ = impala_anakin.rollout(network.apply, ENV, env_params, state.learner.params, state.env_states,
                                             state.observations, key, 5, config.discount, config.reward_scale)
    sgd_step, _ = impala_builder.make_sgd_step(config, SPEC, axis_name=None)  # what make_learner pmaps
    learner = state.learner
    losses = []
    for start in (0, 2):  # 4 envs, batch_size 2: two updates in turn
        learner, step_metrics = sgd_step(learner, jax.tree.map(lambda x: x[start:start + 2], data))
        losses.append(float(step_metrics["loss"]))
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # noqa: E731
    jax.tree.map(close, learned.learner.params, learner.params)
    assert float(metrics["loss"]) == pytest.approx(np.mean(losses), rel=1e-5)
    assert int(agent.learner_steps(learned)) == 2 and int(agent.env_steps(learned)) == 16


def test_impala_envs_must_split_into_batches():
    with pytest.raises(ValueError, match="anakin_num_envs=5 must be a multiple of batch_size=2"):
        impala_builder.make_anakin(impala_config(anakin_num_envs=5), SPEC, ENV, None)


def test_apex_replay_must_hold_a_cycle():
    with pytest.raises(ValueError, match="max_replay_size=10 items rounded down to whole cycles"):
        apex_builder.make_anakin(apex_config(max_replay_size=10, min_replay_size=5), SPEC, ENV, None)


PMAP_SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from agents import specs, testing
    from agents.apex_dqn import builder as apex_builder
    from agents.impala import builder as impala_builder
    assert jax.local_device_count() == 2
    spec = specs.make_environment_spec(testing.CountingEnv())
    env = testing.make_counting_functional_env()
    env_params = testing.counting_env_params(5, False)
    apex = apex_builder.make_config(hidden_sizes=(8,), batch_size=8, n_step=2, max_replay_size=32, min_replay_size=8,
                                    anakin_num_envs=2, anakin_rollout_steps=8, anakin_updates_per_cycle=2)
    impala = impala_builder.make_config(hidden_sizes=(8,), batch_size=2, sequence_length=4, anakin_num_envs=4)
    for builder, config in ((apex_builder, apex), (impala_builder, impala)):
        devices = builder.make_anakin(config, spec, env, "device")
        single = builder.make_anakin(config, spec, env, None)
        # As the launcher runs it: pmap over devices of vmap over seeds (one seed here).
        lift = lambda f: jax.pmap(jax.vmap(f, in_axes=(0, None)), axis_name="device", in_axes=(0, None))
        keys = jnp.stack([jax.random.split(jax.random.PRNGKey(0), 1)] * 2)  # [devices, seeds, 2]
        states = lift(devices.init)(keys, env_params)
        step = lift(devices.train_step)
        for _ in range(3):
            states, metrics = step(states, env_params)
        assert int(devices.learner_steps(states)[0, 0]) > 0
        for leaf in jax.tree.leaves(devices.policy_params(states)):
            np.testing.assert_array_equal(leaf[0], leaf[1])  # identical parameters on both devices
        assert not np.array_equal(states.rng[0], states.rng[1])  # each device explores on its own
        if builder is apex_builder:
            actions = np.asarray(states.replay.items["action"])
            assert not np.array_equal(actions[0], actions[1]), "each device fills its own replay"
        # Duplicated data: one device's state on both devices gives the single-device update.
        state = jax.vmap(single.init, in_axes=(0, None))(jax.random.split(jax.random.PRNGKey(1), 1), env_params)
        expected, _ = jax.jit(jax.vmap(single.train_step, in_axes=(0, None)))(state, env_params)
        duplicated = jax.tree.map(lambda x: jnp.stack([x, x]), state)
        got, _ = step(duplicated, env_params)
        for a, b in zip(jax.tree.leaves(got.learner), jax.tree.leaves(expected.learner)):
            np.testing.assert_allclose(a[0], b, rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(a[1], b, rtol=1e-6, atol=1e-7)
    print("PMAP_OK")
""")


def test_pmap_over_two_host_devices_keeps_parameters_identical_and_equals_one_device_on_duplicated_data():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "PYTHONPATH": REPO_ROOT}
    result = subprocess.run([sys.executable, "-c", PMAP_SCRIPT], cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0 and "PMAP_OK" in result.stdout, result.stderr[-3000:]
