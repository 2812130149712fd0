"""Ape-X DQN components working together against one real in-process Reverb server.

Actors in threads and in separate processes feed one table; the learner learns from it and
changes priorities; actors' variable clients follow the learner; one pmapped update on two
devices equals the single-device update.
"""

import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import time

import chex
import jax
import numpy as np
import pytest
import reverb

from agents import environment_loop, replay, specs, testing
from agents.apex_dqn import builder, learning

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC = specs.make_environment_spec(testing.CountingEnv())
CONFIG = builder.make_config(
    hidden_sizes=(32,),
    batch_size=16,
    n_step=2,
    min_replay_size=1,
    max_replay_size=10_000,
    learning_rate=1e-2,
    discount=0.9,
    target_update_period=20,
    variable_update_period=1,
    prefetch_batches=1,
)


@pytest.fixture(scope="module")
def server():
    server = reverb.Server(builder.make_replay_tables(CONFIG, SPEC))
    yield server
    server.stop()


@pytest.fixture
def address(server):
    address = f"localhost:{server.port}"
    reverb.Client(address).reset(CONFIG.replay_table_name)
    return address


def table_size(address: str) -> int:
    return reverb.Client(address).server_info()[CONFIG.replay_table_name].current_size


def initial_params(seed: int = 0):
    return builder.make_networks(CONFIG, SPEC).init(jax.random.PRNGKey(seed))


def run_actor(address: str, actor_id: int, num_actors: int, num_env_steps: int) -> int:
    """One actor (4 envs tagged with its id) collecting into the table; returns items written."""
    env = testing.make_vector_env(testing.CountingEnv, num_envs=4, episode_length=5, tag=float(actor_id))
    source = testing.StaticVariableSource({"params": initial_params(), "version": 0})
    actor = builder.make_actor(CONFIG, SPEC, source, address, actor_id, num_actors, seed=actor_id)
    environment_loop.EnvironmentLoop(env, actor, label=f"actor_{actor_id}", seed=actor_id).run(num_env_steps)
    actor.close()
    env.close()
    return actor.items_written


def run_actor_process(address: str, actor_id: int, num_actors: int, num_env_steps: int, results) -> None:
    """Entry point of a spawned actor process: reports (actor_id, items written or the error)."""
    try:
        results.put((actor_id, run_actor(address, actor_id, num_actors, num_env_steps)))
    except BaseException as error:  # reported to the parent, which fails the test with it
        results.put((actor_id, f"{type(error).__name__}: {error}"))
        raise


def actor_tags(address: str) -> set[int]:
    batch = next(replay.sample_batches(address, CONFIG.replay_table_name, batch_size=500))
    return set(batch.data["observation"][:, 2].astype(int).tolist())


# 1. Several actors collect in parallel into the same table.


def test_actor_threads_collect_into_one_table(address):
    written = [0] * 3
    threads = [
        threading.Thread(target=lambda i=i: written.__setitem__(i, run_actor(address, i, 3, 40))) for i in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # 40 env steps = 2 episodes of 5 steps in each of 4 envs: 40 transitions per actor.
    assert written == [40, 40, 40]
    assert table_size(address) == 120
    assert actor_tags(address) == {0, 1, 2}


def test_actor_processes_collect_into_one_table(address):
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [
        context.Process(target=run_actor_process, args=(address, i, 2, 40, results), daemon=True) for i in range(2)
    ]
    for process in processes:
        process.start()
    try:
        written = dict(results.get(timeout=240) for _ in processes)
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    assert written == {0: 40, 1: 40}
    assert all(process.exitcode == 0 for process in processes)
    assert table_size(address) == 80
    assert actor_tags(address) == {0, 1}


# 2. The learner learns from sampled experience and updates priorities.


def dataset_td_error(learner, layout, batch) -> float:
    state = learner.save()["state"]
    apply = builder.make_networks(CONFIG, SPEC).apply
    observation, next_observation = layout.observations(batch.data)
    q = np.asarray(apply(state.params, observation))
    td = learning.double_q_td_error(
        q[np.arange(len(q)), batch.data["action"]],
        batch.data["n_step_return"],
        batch.data["discount"],
        apply(state.params, next_observation),
        apply(state.target_params, next_observation),
    )
    return float(np.mean(np.abs(td)))


def test_learner_reduces_td_error_and_changes_priorities(address):
    run_actor(address, actor_id=0, num_actors=1, num_env_steps=40)  # a fixed dataset of 40 transitions
    assert table_size(address) == 40
    layout = builder.make_transition_layout(CONFIG, SPEC)
    before = next(replay.sample_batches(address, CONFIG.replay_table_name, batch_size=400))
    learner = builder.make_learner(CONFIG, SPEC, address, seed=0)
    td_before = dataset_td_error(learner, layout, before)
    for _ in range(300):
        metrics = learner.step()
    learner.flush_priorities()
    td_after = dataset_td_error(learner, layout, before)
    assert metrics["learner/steps"] == 300
    assert td_after < 0.5 * td_before, (td_before, td_after)  # typically about 0.25

    after = next(replay.sample_batches(address, CONFIG.replay_table_name, batch_size=400))
    priority_before = dict(zip(before.keys.tolist(), before.priorities.tolist()))
    priority_after = dict(zip(after.keys.tolist(), after.priorities.tolist()))
    changed = [key for key in priority_after if key in priority_before and priority_after[key] != priority_before[key]]
    assert len(changed) >= 0.9 * len(priority_after)
    learner.close()


# 3. Weight synchronization.


def test_variable_client_follows_the_learner(address):
    run_actor(address, actor_id=0, num_actors=1, num_env_steps=20)
    learner = builder.make_learner(CONFIG, SPEC, address, seed=0)
    initial_params, source_version = learner.get_variables(["params", "version"])
    actor_config = builder.make_config(**{**vars(CONFIG), "variable_update_period": 50})
    env = testing.make_vector_env(testing.CountingEnv, num_envs=2)
    actor = builder.make_actor(actor_config, SPEC, learner, address, 0, 1, seed=0)
    client = actor._variable_client
    client.update_and_wait()
    assert client.version == source_version == 0

    for _ in range(5):
        learner.step()
    learner_params, learner_version = learner.get_variables(["params", "version"])
    assert learner_version == 5
    for _ in range(49):
        actor.update()
    assert client.version == 0  # stale until the period of 50 calls passes
    chex.assert_trees_all_equal(jax.device_get(client.params), initial_params)
    actor.update()  # the 50th call fetches in the background
    deadline = time.monotonic() + 10
    while client.version != 5 and time.monotonic() < deadline:
        time.sleep(0.01)
        actor.update()
    assert client.version == 5
    chex.assert_trees_all_equal(jax.device_get(client.params), learner_params)

    learner.step()
    actor.update(wait=True)
    assert client.version == 6
    chex.assert_trees_all_equal(jax.device_get(client.params), learner.get_variables(["params"])[0])
    actor.close()
    env.close()
    learner.close()


# 4. Frame-window replay with the real trading environment.


def test_trading_env_transitions_rebuild_the_observations_it_emitted():
    environments = pytest.importorskip("environments")
    market = environments.synthetic_market("ou", num_steps=400, seed=0)
    env = environments.TradingVectorEnv(market, num_envs=3, window=8, episode_length=12)
    spec = specs.make_environment_spec(env)
    assert spec.observation_is_frame_window and spec.frame_window == 8
    config = builder.make_config(**{**vars(CONFIG), "n_step": 3})
    layout = builder.make_transition_layout(config, spec)
    server = reverb.Server(builder.make_replay_tables(config, spec))
    address = f"localhost:{server.port}"
    params = builder.make_networks(config, spec).init(jax.random.PRNGKey(0))
    actor = builder.make_actor(
        config, spec, testing.StaticVariableSource({"params": params, "version": 0}), address, 0, 1, seed=0
    )
    emitted = set()
    observation, _ = env.reset(seed=0)
    emitted.update(o.tobytes() for o in observation)
    actor.observe_first(observation)
    resetting = np.zeros(3, bool)
    for _ in range(30):
        actions = actor.select_action(observation)
        observation, reward, terminated, truncated, _ = env.step(actions)
        emitted.update(o.tobytes() for o in observation)
        actor.observe(actions, reward, observation, terminated, truncated, env_mask=~resetting)
        if resetting.any():
            actor.observe_first(observation, env_mask=resetting)
        resetting = ~resetting & (terminated | truncated)
    actor.close()
    assert actor.items_written == table_size_of(address, config) > 0

    batch = next(replay.sample_batches(address, config.replay_table_name, batch_size=200))
    obs, next_obs = (np.asarray(x) for x in layout.observations(batch.data))
    assert all(o.tobytes() in emitted for o in obs)
    assert all(o.tobytes() in emitted for o in next_obs)
    assert batch.data["frames"].shape == (200, 8 + 3, spec.observation_shape[1])
    server.stop()


def table_size_of(address, config) -> int:
    return reverb.Client(address).server_info()[config.replay_table_name].current_size


# 5. pmap over two devices equals the single-device update.

PMAP_SCRIPT = textwrap.dedent(
    """
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    import jax
    import numpy as np
    from agents import testing, specs
    from agents.apex_dqn import builder, learning

    assert len(jax.local_devices()) == 2, jax.local_devices()
    spec = specs.make_environment_spec(testing.FrameWindowEnv(window=4))
    config = builder.make_config(hidden_sizes=(16,), n_step=2, target_update_period=1)
    rng = np.random.default_rng(0)
    size = 8
    batch = learning.Batch(
        data={
            "frames": rng.normal(size=(size, 6, 3)).astype(np.float32),
            "obs_offset": rng.integers(0, 2, size).astype(np.int32),
            "action": rng.integers(0, 3, size).astype(np.int32),
            "n_step_return": rng.normal(size=size).astype(np.float32),
            "discount": rng.choice([0.0, 0.98], size).astype(np.float32),
        },
        probabilities=rng.uniform(0.01, 0.2, size).astype(np.float32),
        table_size=np.full(size, 50.0, np.float32),
    )
    single_step, optimizer = builder.make_sgd_step(config, spec, axis_name=None)
    state = learning.init_state(builder.make_networks(config, spec).init, optimizer, seed=0)
    single_state, single_extra = jax.jit(single_step)(state, batch)

    pmap_step, _ = builder.make_sgd_step(config, spec)
    devices = jax.local_devices()
    split = jax.tree.map(lambda x: x.reshape(2, size // 2, *x.shape[1:]), batch)
    pmap_state, pmap_extra = jax.pmap(pmap_step, axis_name=learning.DEVICE_AXIS, devices=devices)(
        jax.device_put_replicated(state, devices), split)

    for single, replicated in zip(jax.tree.leaves(single_state.params), jax.tree.leaves(pmap_state.params)):
        np.testing.assert_allclose(replicated[0], single, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(replicated[1], single, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(pmap_extra.priorities).reshape(-1), single_extra.priorities, rtol=1e-5)
    np.testing.assert_allclose(pmap_extra.metrics["loss"][0], single_extra.metrics["loss"], rtol=1e-5)
    assert not np.allclose(jax.tree.leaves(single_state.params)[0], jax.tree.leaves(state.params)[0])
    print("PMAP_EQUALS_SINGLE")
    """
)


def test_pmapped_update_on_two_devices_equals_single_device_update():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "PYTHONPATH": REPO_ROOT}
    result = subprocess.run(
        [sys.executable, "-c", PMAP_SCRIPT], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "PMAP_EQUALS_SINGLE" in result.stdout
