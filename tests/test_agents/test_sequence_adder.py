"""Sequence adder and queue table against a real Reverb server: rows by hand, FIFO, blocking."""

import threading
import time

import numpy as np
import pytest
reverb = pytest.importorskip("reverb")  # requirements.txt's stack only (BUILD.md)

from agents import replay, specs, testing
from agents.sequence_adder import SequenceAdder, SequenceLayout

SPEC = specs.make_environment_spec(testing.CountingEnv())
QUEUES = {"seq3": (3, 100), "seq4": (4, 100), "small": (2, 2)}  # name: (T, max_size)


def layout(length):
    return SequenceLayout(SPEC.observation_shape, SPEC.observation_dtype, length)


@pytest.fixture(scope="module")
def server():
    server = reverb.Server([replay.make_queue_table(name, layout(length).item_spec(), size)
                            for name, (length, size) in QUEUES.items()])
    yield server
    server.stop()


@pytest.fixture
def client(server):
    client = reverb.Client(f"localhost:{server.port}")
    for table in QUEUES:
        client.reset(table)
    return client


def size_of(client, table):
    return client.server_info()[table].current_size


def take(client, table, count):
    """`count` items, in the order the queue gives them: dicts of [T, ...] arrays."""
    return [{name: np.asarray(value) for name, value in sample.data.items()}
            for sample in client.sample(table, num_samples=count, emit_timesteps=False,
                                        unpack_as_table_signature=True)]


def play(adder, env, actions, log_prob=-1.0):
    """Steps one env (B = 1) through `actions`, restarting episodes as the loop does."""
    observation, _ = env.reset()
    adder.add_first(observation[None])
    for action in actions:
        observation, reward, terminated, truncated, _ = env.step(action)
        adder.add(np.array([action]), np.array([reward]), observation[None], np.array([terminated]),
                  np.array([truncated]), behaviour_log_prob=np.array([log_prob]))
        if terminated or truncated:
            observation, _ = env.reset()
            adder.add_first(observation[None])


@pytest.mark.parametrize("terminates", [False, True])
def test_rows_and_overlapping_items_by_hand(client, terminates):
    # Episodes of 3 steps, T = 3. Rows (t of the observation, action, reward, discount, valid):
    #   0:(0,a0,1,1,T) 1:(1,a1,2,1,T) 2:(2,a2,3,d,T) 3:(3,-,0,0,F) 4:(0,a3,1,1,T) 5:(1,a4,2,1,T) 6:(2,a5,3,d,T) ...
    # with d = 0 after a termination, 1 after a time limit. Items start every T - 1 = 2 rows.
    adder = SequenceAdder(client, "seq3", layout(3), num_envs=1)
    play(adder, testing.CountingEnv(episode_length=3, terminates=terminates), [0, 1, 2, 2, 1, 0])
    adder.flush()
    assert adder.items_written == 3 and size_of(client, "seq3") == 3  # rows 0-2, 2-4, 4-6
    items = take(client, "seq3", 3)
    d = 0.0 if terminates else 1.0
    assert [item["observation"][:, 0].tolist() for item in items] == [[0, 1, 2], [2, 3, 0], [0, 1, 2]]
    assert [item["action"].tolist() for item in items] == [[0, 1, 2], [2, 0, 2], [2, 1, 0]]
    assert [item["reward"].tolist() for item in items] == [[1, 2, 3], [3, 0, 1], [1, 2, 3]]
    assert [item["discount"].tolist() for item in items] == [[1, 1, d], [d, 0, 1], [1, 1, d]]
    assert [item["valid"].tolist() for item in items] == [[True] * 3, [True, False, True], [True] * 3]
    assert [item["behaviour_log_prob"].tolist() for item in items] == [[-1, -1, -1], [-1, 0, -1], [-1, -1, -1]]
    # Every row but the newest is learned (as a non-last row) in exactly one item.
    learned = [row for index, item in enumerate(items) for row in range(2 * index, 2 * index + 2)]
    assert learned == list(range(6))
    adder.close()


def test_queue_gives_each_sequence_once_in_order(client):
    adder = SequenceAdder(client, "seq4", layout(4), num_envs=1)
    play(adder, testing.CountingEnv(episode_length=1000), [1] * 30)
    adder.flush()
    assert adder.items_written == 9  # rows 30: items at 4, 7, ..., 28 rows
    batches = replay.sample_batches(client.server_address, "seq4",
                                    batch_size=3, prefetch_batches=1, max_in_flight_samples_per_worker=3,
                                    num_workers_per_iterator=1)
    first_steps = [batch.data["observation"][:, 0, 0].tolist() for batch in (next(batches) for _ in range(3))]
    assert first_steps == [[0, 3, 6], [9, 12, 15], [18, 21, 24]]  # FIFO, items start every T - 1 rows
    assert size_of(client, "seq4") == 0  # each sampled once, then removed
    adder.close()


def test_a_full_queue_blocks_the_adder_and_drops_nothing(client):
    # A queue of 2 items of T = 2 (one item per row): 40 rows cannot fit.
    adder = SequenceAdder(client, "small", layout(2), num_envs=1)
    done = threading.Event()

    def act():
        play(adder, testing.CountingEnv(episode_length=1000), [0] * 40)
        adder.flush()
        done.set()

    thread = threading.Thread(target=act, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while size_of(client, "small") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert size_of(client, "small") == 2 and not done.is_set()  # waiting for room, not dropping
    steps = []
    while not (done.is_set() and size_of(client, "small") == 0) and time.monotonic() < deadline:
        if size_of(client, "small"):
            steps += [item["observation"][0, 0] for item in take(client, "small", 1)]
        else:
            time.sleep(0.01)
    thread.join(timeout=10)
    assert done.is_set()
    assert steps == list(range(39))  # 40 rows give 39 items, each starting one row later
    adder.close()


# Frame-window observations: each frame stored once, items never cross an episode.
WINDOW = 3
FRAME_SPEC = specs.make_environment_spec(testing.FrameWindowEnv(window=WINDOW))
FRAME_LAYOUT = SequenceLayout.from_spec(FRAME_SPEC, 3)


@pytest.fixture(scope="module")
def frame_server():
    server = reverb.Server([replay.make_queue_table("frames3", FRAME_LAYOUT.item_spec(), 100)])
    yield server
    server.stop()


def observations_seen(env, actions):
    """What the actor sees, step by step: per episode, its observations x_0 .. x_final."""
    episodes, observation = [], env.reset()[0]
    episode = [observation]
    for action in actions:
        observation, _, terminated, truncated, _ = env.step(action)
        episode.append(observation)
        if terminated or truncated:
            episodes.append(episode)
            observation = env.reset()[0]
            episode = [observation]
    return episodes


@pytest.mark.parametrize("terminates", [False, True])
def test_frame_window_items_rebuild_the_observations_the_actor_saw(frame_server, terminates):
    # Episodes of 4 steps: rows x_0..x_3 and the final x_4 (valid False), 5 rows. T = 3: items
    # at rows 0-2, 2-4; then episode 2 rows 0-2, 2-4 (no padding: 5 - 1 is a multiple of 2).
    # Episodes of 3 steps would give 4 rows: items 0-2 and 2-3 + one padding row.
    client = reverb.Client(f"localhost:{frame_server.port}")
    client.reset("frames3")
    assert FRAME_LAYOUT.frame_window == WINDOW and FRAME_LAYOUT.num_frames == 5
    assert FRAME_LAYOUT.item_signature()["frames"][0] == (5, 3)
    for episode_length, rows_per_episode, padding in [(4, 5, 0), (3, 4, 1)]:
        client.reset("frames3")
        env = testing.FrameWindowEnv(window=WINDOW, episode_length=episode_length, terminates=terminates)
        actions = [1, 2, 0, 2, 1, 0, 1, 2][: 2 * episode_length]
        adder = SequenceAdder(client, "frames3", FRAME_LAYOUT, num_envs=1)
        play(adder, env, actions)
        adder.flush()
        assert adder.padding_rows_written == 2 * padding
        items = take(client, "frames3", adder.items_written)
        assert adder.items_written == 4 and len(items) == 4
        rows = FRAME_LAYOUT.rows({name: np.stack([item[name] for item in items]) for name in items[0]})
        assert "frames" not in rows and rows["observation"].shape == (4, 3, WINDOW, 3)
        # Expected rows: each episode's observations, then padding (zeros, never learned).
        seen = observations_seen(testing.FrameWindowEnv(window=WINDOW, episode_length=episode_length,
                                                        terminates=terminates), actions)
        zero = np.zeros((WINDOW, 3), np.float32)
        for episode_index, episode in enumerate(seen):
            stream = episode + [None] * padding
            for item_index, start in enumerate((0, 2)):
                item = 2 * episode_index + item_index
                for t in range(3):
                    expected = stream[start + t]
                    got = np.asarray(rows["observation"][item, t])
                    if expected is None:  # padding: observation rebuilt from zero frames, never learned
                        assert not rows["valid"][item, t] and rows["discount"][item, t] == 0
                        assert np.array_equal(got[-1], zero[-1])
                    else:
                        np.testing.assert_array_equal(got, expected)
                final_row = rows_per_episode - 1 - start
                if 0 <= final_row < 3:
                    assert not rows["valid"][item, final_row]
                    assert rows["discount"][item, final_row - 1] == (0.0 if terminates else 1.0)
        # Every episode row but the final observation is learned exactly once (as a non-last row).
        learned = [bool(rows["valid"][item, t]) for item in range(4) for t in range(2)]
        assert sum(learned) == 2 * episode_length
        adder.close()
