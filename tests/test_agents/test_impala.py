"""IMPALA's actor and learner: behaviour log-probs in the queue, the loss, pmap over 2 devices."""

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
reverb = pytest.importorskip("reverb")  # requirements.txt's stack only (BUILD.md)

from agents import specs, testing
from agents.environment_loop import EnvironmentLoop
from agents.impala import builder, losses
from agents.pmap_learner import DEVICE_AXIS

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC = specs.make_environment_spec(testing.CountingEnv(num_actions=3))
CONFIG = builder.make_config(sequence_length=5, batch_size=4, hidden_sizes=(16,), max_queue_size=200,
                             variable_update_period=1000)


@pytest.fixture(scope="module")
def server():
    server = reverb.Server(builder.make_replay_tables(CONFIG, SPEC))
    yield server
    server.stop()


@pytest.fixture
def address(server):
    client = reverb.Client(f"localhost:{server.port}")
    client.reset(CONFIG.queue_table_name)
    return f"localhost:{server.port}"


def test_sequences_carry_the_log_probs_of_the_actors_policy(address):
    params = builder.make_networks(CONFIG, SPEC).init(jax.random.PRNGKey(1))
    source = testing.StaticVariableSource({"params": params, "version": 3})
    actor = builder.make_actor(CONFIG, SPEC, source, address, actor_id=0, num_actors=1, seed=5)
    env = testing.make_vector_env(testing.CountingEnv, num_envs=2, episode_length=7, terminates=False)
    EnvironmentLoop(env, actor, seed=0).run(num_env_steps=60)
    actor.close()
    count = reverb.Client(address).server_info()[CONFIG.queue_table_name].current_size
    assert count == actor.items_written > 0
    samples = reverb.Client(address).sample(CONFIG.queue_table_name, num_samples=count, emit_timesteps=False,
                                            unpack_as_table_signature=True)
    items = [{name: np.asarray(value) for name, value in sample.data.items()} for sample in samples]
    observation = np.concatenate([item["observation"] for item in items])  # [count * T, 3]
    action = np.concatenate([item["action"] for item in items])
    valid = np.concatenate([item["valid"] for item in items])
    stored = np.concatenate([item["behaviour_log_prob"] for item in items])
    logits, _ = builder.make_networks(CONFIG, SPEC).apply(params, observation)
    expected = np.take_along_axis(np.asarray(jax.nn.log_softmax(logits)), action[:, None], axis=1)[:, 0]
    np.testing.assert_allclose(stored[valid], expected[valid], atol=1e-5)
    assert np.all(stored[~valid] == 0.0) and (~valid).any()  # final observations of episodes
    assert len(set(action[valid].tolist())) == 3  # sampled from the policy, not greedy
    assert actor.param_version == 3


def sequence_batch(rng, batch_size=8, length=5):
    """A batch where action 0 earns 1 and actions 1, 2 earn -1, under a uniform behaviour policy."""
    action = rng.integers(0, 3, size=(batch_size, length)).astype(np.int32)
    return {
        "observation": rng.normal(size=(batch_size, length, 3)).astype(np.float32),
        "action": action,
        "reward": np.where(action == 0, 1.0, -1.0).astype(np.float32),
        "discount": np.ones((batch_size, length), np.float32),
        "behaviour_log_prob": np.full((batch_size, length), np.log(1 / 3), np.float32),
        "valid": np.ones((batch_size, length), bool),
    }


def test_updates_raise_the_probability_of_the_better_action():
    config = builder.make_config(hidden_sizes=(16,), discount=0.5, learning_rate=3e-3, entropy_cost=0.0)
    sgd_step, optimizer = builder.make_sgd_step(config, SPEC, axis_name=None)
    network = builder.make_networks(config, SPEC)
    state = losses.init_state(network.init, optimizer, seed=0)
    batch = sequence_batch(np.random.default_rng(0))
    probe = batch["observation"].reshape(-1, 3)

    def mean_probability_of_action_0(params):
        return float(np.mean(jax.nn.softmax(network.apply(params, probe)[0])[:, 0]))

    before = mean_probability_of_action_0(state.params)
    step = jax.jit(sgd_step)
    for _ in range(30):
        state, metrics = step(state, batch)
    assert int(state.step) == 30
    assert mean_probability_of_action_0(state.params) > before + 0.2
    assert np.isfinite(float(metrics["loss"]))


def test_final_observation_rows_add_no_loss():
    config = builder.make_config(hidden_sizes=(16,))
    network = builder.make_networks(config, SPEC)
    loss = losses.make_impala_loss(network.apply, config.discount, config.baseline_cost, config.entropy_cost)
    params = network.init(jax.random.PRNGKey(0))
    batch = sequence_batch(np.random.default_rng(1))
    batch["valid"][:, 2] = False  # rows holding only a final observation
    batch["discount"][:, 2] = 0.0
    value, _ = loss(params, batch)
    changed = {name: array.copy() for name, array in batch.items()}
    changed["action"][:, 2] = (changed["action"][:, 2] + 1) % 3
    changed["reward"][:, 2] = 100.0
    changed["behaviour_log_prob"][:, 2] = -5.0
    assert float(loss(params, changed)[0]) == pytest.approx(float(value), rel=1e-6)
    changed["reward"][:, 1] += 1.0  # a learned row does count
    assert float(loss(params, changed)[0]) != pytest.approx(float(value), rel=1e-6)


def test_config_names_a_bad_value_and_an_unknown_setting():
    with pytest.raises(ValueError, match=r"impala config: sequence_length=1: expected an integer >= 2"):
        builder.make_config(sequence_length=1)
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['n_step'\]"):
        builder.make_config(n_step=3)
    with pytest.raises(ValueError, match="max_queue_size=8 is below batch_size=32"):
        builder.make_config(max_queue_size=8)


PMAP_SCRIPT = textwrap.dedent(
    """
    import jax
    import numpy as np
    from agents import testing, specs
    from agents.pmap_learner import DEVICE_AXIS
    from agents.impala import builder, losses

    assert len(jax.local_devices()) == 2, jax.local_devices()
    spec = specs.make_environment_spec(testing.CountingEnv(num_actions=3))
    config = builder.make_config(hidden_sizes=(16,), sequence_length=5)
    rng = np.random.default_rng(0)
    size, length = 8, 5
    batch = {
        "observation": rng.normal(size=(size, length, 3)).astype(np.float32),
        "action": rng.integers(0, 3, size=(size, length)).astype(np.int32),
        "reward": rng.normal(size=(size, length)).astype(np.float32),
        "discount": rng.choice([0.0, 1.0], size=(size, length), p=[0.2, 0.8]).astype(np.float32),
        "behaviour_log_prob": np.log(rng.uniform(0.1, 0.9, size=(size, length))).astype(np.float32),
        "valid": rng.uniform(size=(size, length)) > 0.1,
    }
    single_step, optimizer = builder.make_sgd_step(config, spec, axis_name=None)
    state = losses.init_state(builder.make_networks(config, spec).init, optimizer, seed=0)
    single_state, single_metrics = jax.jit(single_step)(state, batch)

    pmap_step, _ = builder.make_sgd_step(config, spec)
    devices = jax.local_devices()
    split = jax.tree.map(lambda x: x.reshape(2, size // 2, *x.shape[1:]), batch)
    pmap_state, pmap_metrics = jax.pmap(pmap_step, axis_name=DEVICE_AXIS, devices=devices)(
        jax.device_put_replicated(state, devices), split)

    for single, replicated in zip(jax.tree.leaves(single_state.params), jax.tree.leaves(pmap_state.params)):
        np.testing.assert_allclose(replicated[0], single, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(replicated[1], single, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pmap_metrics["loss"][0], single_metrics["loss"], rtol=1e-5)
    assert not np.allclose(jax.tree.leaves(single_state.params)[0], jax.tree.leaves(state.params)[0])
    print("PMAP_EQUALS_SINGLE")
    """
)


def test_pmapped_update_on_two_devices_equals_single_device_update():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "PYTHONPATH": REPO_ROOT,
           "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", PMAP_SCRIPT], env=env, cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "PMAP_EQUALS_SINGLE" in result.stdout


def test_a_learner_waiting_on_an_empty_queue_raises_once_the_server_is_gone():
    """Reverb's dataset keeps retrying a server in another process that is gone; the learner
    must not (its node could never stop)."""
    import threading
    import time

    from benchmarks.replay_process import ReplayProcess, agent_tables

    with ReplayProcess(agent_tables, "impala", CONFIG, SPEC) as replay:
        learner = builder.make_learner(CONFIG, SPEC, replay.address, seed=0)
        outcome = []

        def step():
            try:
                learner.step()
                outcome.append("stepped")
            except Exception as error:  # noqa: BLE001 - the outcome under test
                outcome.append(error)

        thread = threading.Thread(target=step, daemon=True)
        thread.start()
        time.sleep(1.0)
        assert outcome == []  # waiting for sequences
        replay.__exit__(None, None, None)  # the server process ends
        thread.join(timeout=60)
    assert not thread.is_alive() and len(outcome) == 1 and isinstance(outcome[0], Exception)
