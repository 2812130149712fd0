"""Ape-X DQN components working together against one real in-process Reverb server.

Actors in threads and in separate processes feed one table; the learner, fed a fixed cycle of its
items, learns and writes priorities back; actors' variable clients follow the learner; one
pmapped update on two devices equals the single-device update."""

import itertools
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
reverb = pytest.importorskip("reverb")  # requirements.txt's stack only (BUILD.md)

from agents import environment_loop, replay, specs, testing
from agents.apex_dqn import builder, learning, losses
from agents.pmap_learner import DEVICE_AXIS

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


class ZeroRewardEnv(testing.CountingEnv):
    """CountingEnv that pays reward 0: with Q = 0 every TD error is exactly 0."""

    def step(self, action):
        observation, _, terminated, truncated, info = super().step(action)
        return observation, 0.0, terminated, truncated, info


def run_actor(address: str, actor_id: int, num_actors: int, num_env_steps: int, zero_rewards: bool = False) -> int:
    """One actor (4 envs tagged with its id) collecting into the table; returns items written."""
    env_cls = ZeroRewardEnv if zero_rewards else testing.CountingEnv
    env = testing.make_vector_env(env_cls, num_envs=4, episode_length=5, tag=float(actor_id))
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


# 2. The learner learns from replayed experience and writes priorities back to the table.
#
# Reverb's prioritized sampler cannot be seeded, so a learner that samples for itself sees
# different batches every run. These tests read every item of the table once, fix an order by
# content (keys are random), and feed the real learner (pmapped update, priority write-back
# through a real client) a fixed cycle of batches of them, so the outcome is the same each run.


def all_items(address: str) -> replay.ReplayBatch:
    """Every item of the table once, ordered by its data: [N] arrays, N = the table size."""
    size = table_size(address)
    batches = replay.sample_batches(address, CONFIG.replay_table_name, batch_size=40 * size)
    sampled = [next(batches)]
    # One sample almost surely holds every item (here each has P > 0.017 per draw); more if not.
    while len(np.unique(np.concatenate([b.keys for b in sampled]))) < size and len(sampled) < 10:
        sampled.append(next(batches))
    joined = jax.tree.map(lambda *x: np.concatenate(x), *sampled)
    _, first = np.unique(joined.keys, return_index=True)
    assert len(first) == size, f"saw {len(first)} of {size} items in {len(sampled)} samples"
    data = joined.data
    columns = [data["observation"], data["next_observation"], data["action"], data["n_step_return"], data["discount"]]
    by_content = np.lexsort(np.column_stack(columns)[first].T[::-1])
    return jax.tree.map(lambda x: x[first[by_content]], joined)


def fixed_batches(items: replay.ReplayBatch, batch_size: int) -> list[replay.ReplayBatch]:
    """The items in their fixed order, repeated to fill whole batches (40 items of 16: twice, 5 batches)."""
    repeats = np.lcm(len(items.keys), batch_size) // len(items.keys)
    order = np.tile(np.arange(len(items.keys)), repeats).reshape(-1, batch_size)  # [num_batches, batch_size]
    return [jax.tree.map(lambda x: x[rows], items) for rows in order]


def learner_on(address: str, batches: list[replay.ReplayBatch], learning_rate: float, zero_params: bool = False):
    """The real ApexDQNLearner, fed `batches` in a cycle, with CONFIG except the learning rate.

    Built as builder.make_sgd_step builds it, with the learning rate as an argument: the
    frozen control needs 0, which a config rightly refuses.
    """
    network = builder.make_networks(CONFIG, SPEC)
    layout = builder.make_transition_layout(CONFIG, SPEC)
    loss = losses.make_double_q_loss(
        network.apply, layout, CONFIG.importance_sampling_exponent, CONFIG.huber_delta, DEVICE_AXIS,
        priority_epsilon=CONFIG.priority_epsilon,
    )
    optimizer = losses.make_optimizer(learning_rate, CONFIG.adam_eps, CONFIG.max_gradient_norm)
    sgd_step = losses.make_sgd_step(loss, optimizer, CONFIG.target_update_period, DEVICE_AXIS)
    state = losses.init_state(network.init, optimizer, seed=0)
    if zero_params:
        zeros = jax.tree.map(np.zeros_like, state.params)
        state = state._replace(params=zeros, target_params=zeros, opt_state=optimizer.init(zeros))
    return learning.ApexDQNLearner(sgd_step, state, itertools.cycle(batches), reverb.Client(address),
                                   CONFIG.replay_table_name)


def td_errors(params, target_params, items: replay.ReplayBatch) -> np.ndarray:
    """[N] double-Q TD errors of the items under the given online and target params."""
    apply = builder.make_networks(CONFIG, SPEC).apply
    observation, next_observation = builder.make_transition_layout(CONFIG, SPEC).observations(items.data)
    q = np.asarray(apply(params, observation))
    return np.asarray(losses.double_q_td_error(
        q[np.arange(len(q)), items.data["action"]],
        items.data["n_step_return"],
        items.data["discount"],
        apply(params, next_observation),
        apply(target_params, next_observation),
    ))


def mean_abs_td_error(learner, items: replay.ReplayBatch) -> float:
    state = learner.save()["state"]
    return float(np.mean(np.abs(td_errors(state.params, state.target_params, items))))


def test_learner_reduces_td_error_and_a_frozen_one_does_not(address):
    run_actor(address, actor_id=0, num_actors=1, num_env_steps=40)  # a fixed dataset of 40 transitions
    items = all_items(address)
    assert len(items.keys) == 40
    batches = fixed_batches(items, CONFIG.batch_size)
    results = {}
    for learning_rate in (CONFIG.learning_rate, 0.0):
        learner = learner_on(address, batches, learning_rate)
        td_before = mean_abs_td_error(learner, items)
        for _ in range(300):  # 60 passes over the 40 items
            metrics = learner.step()
        learner.close()
        assert metrics["learner/steps"] == 300
        results[learning_rate] = (td_before, mean_abs_td_error(learner, items))
    (td_before, td_after), (frozen_before, frozen_after) = results[CONFIG.learning_rate], results[0.0]
    assert frozen_before == td_before  # the same start
    assert frozen_after == pytest.approx(frozen_before, rel=1e-6)  # no learning, no change: 300 steps alone do nothing
    assert td_after < 0.5 * td_before, (td_before, td_after)


def test_learner_writes_priorities_of_its_td_errors_back_to_the_table(address):
    run_actor(address, actor_id=0, num_actors=1, num_env_steps=40)
    items = all_items(address)
    actor_priorities = dict(zip(items.keys.tolist(), items.priorities.tolist()))
    # Frozen (learning rate 0), so the priorities it writes are those of its initial params.
    learner = learner_on(address, fixed_batches(items, CONFIG.batch_size), learning_rate=0.0)
    for _ in range(5):  # one pass: every item once or twice
        learner.step()
    learner.close()  # waits for the last write
    state = learner.save()["state"]

    after = next(replay.sample_batches(address, CONFIG.replay_table_name, batch_size=400))
    expected = np.abs(td_errors(state.params, state.target_params, after)) + CONFIG.priority_epsilon
    np.testing.assert_allclose(after.priorities, expected, rtol=1e-5)
    # The actor's priorities came from other params (its own init), so every one changed.
    assert all(p != actor_priorities[k] for k, p in zip(after.keys.tolist(), after.priorities.tolist()))


def test_learner_gives_a_zero_td_error_priority_epsilon(address):
    # Zero rewards and a learner with all-zero params (Q = 0): every TD error is exactly 0.
    run_actor(address, actor_id=0, num_actors=1, num_env_steps=40, zero_rewards=True)
    items = all_items(address)
    assert np.all(items.priorities > CONFIG.priority_epsilon)  # the actor's params give Q != 0
    learner = learner_on(address, fixed_batches(items, CONFIG.batch_size), learning_rate=0.0, zero_params=True)
    for _ in range(5):
        learner.step()
    learner.close()
    after = next(replay.sample_batches(address, CONFIG.replay_table_name, batch_size=400))
    np.testing.assert_allclose(after.priorities, CONFIG.priority_epsilon, rtol=1e-6)


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
    from agents.pmap_learner import DEVICE_AXIS
    from agents.apex_dqn import builder, learning, losses

    assert len(jax.local_devices()) == 2, jax.local_devices()
    spec = specs.make_environment_spec(testing.FrameWindowEnv(window=4))
    config = builder.make_config(hidden_sizes=(16,), n_step=2, target_update_period=1)
    rng = np.random.default_rng(0)
    size = 8
    batch = losses.Batch(
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
    state = losses.init_state(builder.make_networks(config, spec).init, optimizer, seed=0)
    single_state, single_extra = jax.jit(single_step)(state, batch)

    pmap_step, _ = builder.make_sgd_step(config, spec)
    devices = jax.local_devices()
    split = jax.tree.map(lambda x: x.reshape(2, size // 2, *x.shape[1:]), batch)
    pmap_state, pmap_extra = jax.pmap(pmap_step, axis_name=DEVICE_AXIS, devices=devices)(
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
