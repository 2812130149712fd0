"""N-step adder against a real Reverb server: hand-computed returns across termination and truncation."""

import numpy as np
import pytest
reverb = pytest.importorskip("reverb")  # requirements.txt's stack only (BUILD.md)
tf = pytest.importorskip("tensorflow")

from agents import adders, replay, specs, testing

N_STEP = 3
DISCOUNT = 0.5


def layout_for(env) -> adders.TransitionLayout:
    return adders.TransitionLayout.from_spec(specs.make_environment_spec(env), N_STEP)


OBS_LAYOUT = layout_for(testing.CountingEnv())
FRAME_LAYOUT = layout_for(testing.FrameWindowEnv(window=4))


@pytest.fixture(scope="module")
def server():
    tables = [
        replay.make_prioritized_table("observations", OBS_LAYOUT, max_size=100, priority_exponent=1.0),
        replay.make_prioritized_table("frames", FRAME_LAYOUT, max_size=100, priority_exponent=1.0),
        replay.make_prioritized_table("fifo", OBS_LAYOUT, max_size=5, priority_exponent=1.0),
    ]
    server = reverb.Server(tables)
    yield server
    server.stop()


@pytest.fixture
def client(server):
    client = reverb.Client(f"localhost:{server.port}")
    for table in ("observations", "frames", "fifo"):
        client.reset(table)
    return client


def run_episode(adder, env, actions, priorities_by_step=None):
    """Steps one env through `actions` (B = 1), writing with priority 1 + slot; returns its observations."""
    observation, _ = env.reset()
    observations = [observation]
    adder.add_first(observation[None])
    for action in actions:
        observation, reward, terminated, truncated, _ = env.step(action)
        observations.append(observation)
        adder.add(np.array([action]), np.array([reward]), observation[None], np.array([terminated]), np.array([truncated]))
        adder.write(1.0 + np.arange(N_STEP)[None, :])
    return observations


def read_all_items(client, table, layout):
    """Every item of the table, from one sample of 40 * size draws in which every key must appear.

    Priorities here are 1 to 3 (alpha 1) over at most 6 items, so each item has P >= 1/12 per
    draw: missing one in 40 * size draws has probability < 6 (11/12)^240 < 1e-8 per call.
    """
    size = client.server_info()[table].current_size
    dataset = replay.make_dataset(client.server_address, table, batch_size=40 * size)
    batch = replay.to_replay_batch(next(dataset.as_numpy_iterator()))
    _, first = np.unique(batch.keys, return_index=True)
    assert len(first) == size
    observation, next_observation = (np.asarray(x) for x in layout.observations(batch.data))
    return [
        dict(
            action=int(batch.data["action"][i]),
            n_step_return=float(batch.data["n_step_return"][i]),
            discount=float(batch.data["discount"][i]),
            observation=observation[i],
            next_observation=next_observation[i],
        )
        for i in sorted(first, key=lambda i: int(batch.data["action"][i]))
    ]


# Episode 1: actions 10..13 (distinct per step to identify items), rewards 1, 2, 3, 4, terminated.
# Episode 2: actions 20, 21, rewards 1, 2, truncated. gamma = 0.5, n = 3.
# (first step s, k steps, n-step return, discount), by hand:
EXPECTED = [
    (0, 3, 1 + 0.5 * 2 + 0.25 * 3, 0.125),  # 2.75, mid-episode: bootstrap gamma^3 from obs_3
    (1, 3, 2 + 0.5 * 3 + 0.25 * 4, 0.0),  # 4.5, ends at the terminal obs_4: no bootstrap
    (2, 2, 3 + 0.5 * 4, 0.0),  # 5.0
    (3, 1, 4.0, 0.0),
    (0, 2, 1 + 0.5 * 2, 0.25),  # 2.0, truncated: bootstrap gamma^2 from the final obs_2
    (1, 1, 2.0, 0.5),
]


@pytest.mark.parametrize("env_cls,table", [(testing.CountingEnv, "observations"), (testing.FrameWindowEnv, "frames")])
def test_n_step_returns_and_discounts_across_termination_and_truncation(client, env_cls, table):
    layout = OBS_LAYOUT if table == "observations" else FRAME_LAYOUT
    adder = adders.NStepAdder(client, table, layout, num_envs=1, discount=DISCOUNT)
    first = run_episode(adder, env_cls(episode_length=4, num_actions=30, terminates=True), [10, 11, 12, 13])
    second = run_episode(adder, env_cls(episode_length=2, num_actions=30, terminates=False), [20, 21])
    adder.close()
    assert adder.items_written == 6

    items = read_all_items(client, table, layout)
    for item, (start, steps, n_step_return, discount), episode, actions in zip(
        items, EXPECTED, [first] * 4 + [second] * 2, [[10, 11, 12, 13]] * 4 + [[20, 21]] * 2
    ):
        assert item["action"] == actions[start]
        assert item["n_step_return"] == pytest.approx(n_step_return)
        assert item["discount"] == pytest.approx(discount)
        np.testing.assert_array_equal(item["observation"], episode[start])
        np.testing.assert_array_equal(item["next_observation"], episode[start + steps])


def test_items_carry_the_priority_given_to_write(client):
    adder = adders.NStepAdder(client, "observations", OBS_LAYOUT, num_envs=1, discount=DISCOUNT)
    run_episode(adder, testing.CountingEnv(episode_length=4, num_actions=30), [10, 11, 12, 13])
    adder.close()
    dataset = replay.make_dataset(client.server_address, "observations", batch_size=200)
    sample = next(dataset.as_numpy_iterator())
    # Slot j (a transition of n - j steps) was written with priority 1 + j.
    steps = {10: 3, 11: 3, 12: 2, 13: 1}
    for action, priority in zip(sample.data["action"], sample.info.priority):
        assert priority == 1.0 + N_STEP - steps[int(action)]


def test_batched_envs_write_to_their_own_episodes(client):
    """Two envs of different episode lengths, stepped together with next-step autoreset semantics."""
    adder = adders.NStepAdder(client, "observations", OBS_LAYOUT, num_envs=2, discount=DISCOUNT)
    envs = [testing.CountingEnv(episode_length=2, tag=0.0), testing.CountingEnv(episode_length=5, tag=1.0)]
    observation = np.stack([env.reset()[0] for env in envs])
    adder.add_first(observation)
    for _ in range(5):
        steps = [env.step(0) for env in envs]
        next_observation = np.stack([s[0] for s in steps])
        terminated = np.array([s[2] for s in steps])
        adder.add(np.zeros(2, int), np.array([s[1] for s in steps]), next_observation, terminated, np.zeros(2, bool))
        adder.write(np.ones((2, N_STEP)))
        if terminated[0]:  # restart env 0 (what the loop does after an autoreset step)
            adder.add_first(np.stack([envs[0].reset()[0]] * 2), env_mask=np.array([True, False]))
    adder.close()
    # env 0: two episodes of 2 steps done, a third 1 step in (no item yet); env 1: 5 steps, terminated.
    assert adder.items_written == 2 + 2 + 5
    assert client.server_info()["observations"].current_size == 9


def test_fifo_eviction_at_capacity(client):
    adder = adders.NStepAdder(client, "fifo", OBS_LAYOUT, num_envs=1, discount=DISCOUNT)
    run_episode(adder, testing.CountingEnv(episode_length=8, num_actions=30), list(range(10, 18)))
    adder.close()
    assert client.server_info()["fifo"].current_size == 5
    # The three oldest transitions (actions 10, 11, 12) were evicted.
    assert [item["action"] for item in read_all_items(client, "fifo", OBS_LAYOUT)] == [13, 14, 15, 16, 17]


# One item, written out by hand from the envs' specs (obs [3] float32; frames of 3 with window 4)
# and n = 3, so a change of the item that the table silently follows still fails here.
SCALARS = {
    "action": tf.TensorSpec([], tf.int32),
    "n_step_return": tf.TensorSpec([], tf.float32),
    "discount": tf.TensorSpec([], tf.float32),
}
EXPECTED_SIGNATURES = {
    "observations": {
        "observation": tf.TensorSpec([3], tf.float32),
        "next_observation": tf.TensorSpec([3], tf.float32),
        **SCALARS,
    },
    "frames": {
        "frames": tf.TensorSpec([4 + N_STEP, 3], tf.float32),  # window + n frames: obs_t .. obs_{t+n}
        "obs_offset": tf.TensorSpec([], tf.int32),
        **SCALARS,
    },
}


@pytest.mark.parametrize("table", ["observations", "frames"])
def test_table_signature_is_the_item_written_out_by_hand(server, table):
    info = reverb.Client(f"localhost:{server.port}").server_info()
    assert info[table].signature == EXPECTED_SIGNATURES[table]


def test_a_writer_held_back_by_the_rate_limiter_stops_when_the_server_stops():
    """Without a learner sampling, SampleToInsertRatio holds inserts back, so the adder's
    write blocks; once the server stops (as the launcher does to unblock nodes), it raises
    within a few seconds instead of waiting forever, and close() does not wait again."""
    import threading
    import time

    table = replay.make_prioritized_table("limited", OBS_LAYOUT, max_size=1000, priority_exponent=1.0,
                                          min_size_to_sample=10, samples_per_insert=4.0)
    server = reverb.Server([table])
    adder = adders.NStepAdder(reverb.Client(f"localhost:{server.port}"), "limited", OBS_LAYOUT,
                              num_envs=1, discount=DISCOUNT)
    env = testing.CountingEnv(episode_length=1000)
    outcome = {}

    def write_forever():
        try:
            run_episode(adder, env, actions=[0] * 999)
        except reverb.errors.DeadlineExceededError as error:
            outcome["error"] = error

    writer = threading.Thread(target=write_forever, daemon=True)
    writer.start()
    deadline, last = time.monotonic() + 60, -1
    while adder.items_written != last and time.monotonic() < deadline:  # until it stalls
        last = adder.items_written
        time.sleep(1.0)
    assert writer.is_alive()  # held back: 10 items to start sampling + the error buffer
    assert 10 <= adder.items_written < 100
    stopped = time.monotonic()
    server.stop()
    writer.join(timeout=30)
    assert not writer.is_alive() and "error" in outcome
    assert time.monotonic() - stopped < 15
    started_close = time.monotonic()
    adder.close()
    assert time.monotonic() - started_close < 1.0
