"""Replay memory per stored item: Reverb server RSS growth / items between two fill levels.

    python benchmarks/replay_memory.py [--low 20000] [--high 120000] [--num_envs 16]
    python benchmarks/replay_memory.py --agent=impala [--windows 2 32 128]

Each table lives alone in a fresh server process. Figures: a bare one-scalar item (Reverb's
fixed cost per item: one chunk + one item), then the agent's items from TradingVectorEnv at
each window with frame-window storage (each step's newest frame stored once) and, for
comparison, at the largest window with ordinary storage (each step's full observation once).
Ape-X items are n-step transitions (window + n frames each); IMPALA items are sequences of
T = 20 rows (T + window - 1 frames each, rebuilt into observations by the learner), and its
figure is per sequence, with the ratio to the sequence at the smallest window.
"""

import argparse
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

from benchmarks.replay_process import ReplayProcess, agent_tables  # noqa: E402

SCALAR_TABLE = "scalars"


def scalar_tables(max_size):
    import reverb
    import tensorflow as tf

    return [
        reverb.Table(
            SCALAR_TABLE,
            sampler=reverb.selectors.Prioritized(0.6),
            remover=reverb.selectors.Fifo(),
            max_size=max_size,
            rate_limiter=reverb.rate_limiters.MinSize(1),
            signature={"x": tf.TensorSpec([], tf.float32)},
        )
    ]


def transition_tables(config, spec):
    from agents.apex_dqn import builder

    return builder.make_replay_tables(config, spec)


def measure(replay, fill, levels):
    """RSS growth per item between the two fill levels; fill(n) adds n items and waits for them."""
    fill(levels[0])
    time.sleep(0.5)
    low_rss = replay.rss_bytes()
    fill(levels[1] - levels[0])
    time.sleep(0.5)
    return (replay.rss_bytes() - low_rss) / (levels[1] - levels[0])


def bare_scalar_bytes_per_item(levels):
    import reverb

    with ReplayProcess(scalar_tables, 2 * levels[1]) as replay:
        writer = reverb.Client(replay.address).trajectory_writer(num_keep_alive_refs=1)

        def fill(count):
            for i in range(count):
                writer.append({"x": np.float32(i)})
                writer.create_item(SCALAR_TABLE, 1.0, {"x": writer.history["x"][-1]})
                if i % 1000 == 999:
                    writer.flush(block_until_num_items=100)
            writer.flush()

        per_item = measure(replay, fill, levels)
        writer.close()
    return per_item


def trading_env_and_spec(window, frame_storage, num_envs):
    """TradingVectorEnv on one OU path and its spec (ordinary storage: not a frame window)."""
    import environments
    from agents import specs

    market = environments.synthetic_market("ou", num_steps=20_000, seed=0)
    env = environments.TradingVectorEnv(market, num_envs=num_envs, window=window)
    spec = specs.make_environment_spec(env)
    if not frame_storage:  # ordinary storage of the same observations
        spec = specs.EnvironmentSpec(spec.observation_shape, spec.observation_dtype, spec.num_actions, False)
    return env, spec


def adder_bytes_per_item(replay, adder, env, num_actions, add, levels):
    """Server RSS growth per item between the two fill levels, the env stepped with random
    actions and each step written by `add(actions, reward, observation, terminated, truncated,
    env_mask)` (autoreset: the step after an episode's end only restarts the env)."""
    rng = np.random.default_rng(0)
    observation, _ = env.reset(seed=0)
    adder.add_first(observation)
    resetting = np.zeros(env.num_envs, bool)

    def fill(count):
        nonlocal observation, resetting
        target = adder.items_written + count
        while adder.items_written < target:
            actions = rng.integers(0, num_actions, env.num_envs)
            observation, reward, terminated, truncated, _ = env.step(actions)
            add(actions, reward, observation, terminated, truncated, ~resetting)
            if resetting.any():
                adder.add_first(observation, env_mask=resetting)
            resetting = ~resetting & (terminated | truncated)
        adder.flush()
        return adder.items_written

    low_items = fill(levels[0])
    time.sleep(0.5)
    low_rss = replay.rss_bytes()
    high_items = fill(levels[1] - levels[0])
    time.sleep(0.5)
    per_item = (replay.rss_bytes() - low_rss) / (high_items - low_items)
    adder.close()
    return per_item


def transition_bytes_per_item(window, frame_storage, levels, num_envs, chunk_length=None):
    """Ape-X: server RSS growth per n-step transition of the prioritized table."""
    import reverb

    from agents import adders
    from agents.apex_dqn import builder

    env, spec = trading_env_and_spec(window, frame_storage, num_envs)
    config = builder.make_config(max_replay_size=2 * levels[1], min_replay_size=1)
    layout = builder.make_transition_layout(config, spec)
    priorities = np.random.default_rng(1)
    with ReplayProcess(transition_tables, config, spec) as replay:
        adder = adders.NStepAdder(reverb.Client(replay.address), config.replay_table_name, layout, num_envs,
                                  config.discount, chunk_length=chunk_length)

        def add(actions, reward, observation, terminated, truncated, env_mask):
            adder.add(actions, reward, observation, terminated, truncated, env_mask=env_mask)
            adder.write(priorities.uniform(0.1, 2.0, (num_envs, config.n_step)))

        return adder_bytes_per_item(replay, adder, env, spec.num_actions, add, levels)


def sequence_bytes_per_item(window, frame_storage, levels, num_envs):
    """IMPALA: server RSS growth per sequence of the sequence adder's queue."""
    import reverb

    from agents.impala import builder
    from agents.sequence_adder import SequenceAdder

    env, spec = trading_env_and_spec(window, frame_storage, num_envs)
    config = builder.make_config(max_queue_size=2 * levels[1])
    log_prob = np.full(num_envs, -np.log(spec.num_actions), np.float32)  # a uniform policy's
    with ReplayProcess(agent_tables, "impala", config, spec) as replay:
        adder = SequenceAdder(reverb.Client(replay.address), config.queue_table_name,
                              builder.make_sequence_layout(config, spec), num_envs)

        def add(actions, reward, observation, terminated, truncated, env_mask):
            adder.add(actions, reward, observation, terminated, truncated, env_mask=env_mask,
                      behaviour_log_prob=log_prob)

        return adder_bytes_per_item(replay, adder, env, spec.num_actions, add, levels)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", choices=["apex_dqn", "impala"], default="apex_dqn")
    parser.add_argument("--low", type=int, default=None,
                        help="items before the first RSS reading (default 20000; impala 2000)")
    parser.add_argument("--high", type=int, default=None,
                        help="items at the second RSS reading (default 120000; impala 12000)")
    parser.add_argument("--num_envs", type=int, default=16)
    parser.add_argument("--chunk_length", type=int, default=None, help="Ape-X adder chunk length (default: its own)")
    parser.add_argument("--windows", type=int, nargs="+", default=None,
                        help="observation windows (default 32 128; impala 2 32 128)")
    args = parser.parse_args()
    impala = args.agent == "impala"
    levels = (args.low or (2_000 if impala else 20_000), args.high or (12_000 if impala else 120_000))
    windows = args.windows or ([2, 32, 128] if impala else [32, 128])
    if not levels[0] < levels[1]:
        parser.error(f"--low ({levels[0]}) must be below --high ({levels[1]})")

    floor = bare_scalar_bytes_per_item(levels)
    print(f"bare one-scalar item:                     {floor:8.0f} B/item (floor)")
    smallest = None
    for window, frame_storage in [(w, True) for w in windows] + [(windows[-1], False)]:
        storage = "frames once per step " if frame_storage else "full obs once per step"
        if impala:
            per_item = sequence_bytes_per_item(window, frame_storage, levels, args.num_envs)
            smallest = smallest or per_item
            print(f"window {window:3d}, {storage}:         {per_item:8.0f} B/sequence  "
                  f"ratio {per_item / smallest:5.2f}x window {windows[0]}", flush=True)
        else:
            per_item = transition_bytes_per_item(window, frame_storage, levels, args.num_envs, args.chunk_length)
            print(f"window {window:3d}, {storage}:         {per_item:8.0f} B/item  ratio {per_item / floor:5.2f}x floor",
                  flush=True)


if __name__ == "__main__":
    main()
