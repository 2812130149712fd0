"""Actor throughput: env steps/s and inserts of one actor process vs a bare writer loop.

    python benchmarks/actor_throughput.py [--agent apex_dqn|impala] [--window 32] [--num_envs 32] [--seconds 10]

The replay server runs in a child process (as the replay node does). The actor steps a
TradingVectorEnv with its jitted policy and writes what its agent stores. The ceiling is a
bare TrajectoryWriter loop inserting the same items (same columns, references and chunking)
from precomputed data: no env, network or adder bookkeeping. Both are measured in this run.
- apex_dqn: n-step transitions with initial priorities; the ratio is actor inserts/s / ceiling.
- impala: rows of sequences (one row per env step, an item every T - 1 rows) into its queue
  (made large enough not to fill); the ratio is actor env steps/s / ceiling rows/s.
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


def bare_writer_rate(address, config, spec, seconds):
    """Items/s of one TrajectoryWriter appending one frame row per item and creating the same item."""
    import reverb

    from agents import adders

    layout = adders.TransitionLayout.from_spec(spec, config.n_step)
    chunk_length = min(adders.MAX_CHUNK_LENGTH, layout.steps_spanned)
    writer = reverb.Client(address).trajectory_writer(num_keep_alive_refs=layout.steps_spanned)
    for column in ("frame", "action", "n_step_return", "discount", "obs_offset"):
        writer.configure((column,), num_keep_alive_refs=layout.steps_spanned, max_chunk_length=chunk_length)
    frames = np.random.default_rng(0).normal(size=(4096, *spec.observation_shape[1:])).astype(np.float32)
    for frame in frames[: layout.num_frames]:
        writer.append({"frame": frame})
    max_in_flight = chunk_length + config.n_step + 4  # as NStepAdder
    items, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for i in range(1000):
            writer.append(
                {
                    "frame": frames[i % len(frames)],
                    "action": np.int32(i % 3),
                    "n_step_return": np.float32(0.5),
                    "discount": np.float32(0.97),
                    "obs_offset": np.int32(0),
                }
            )
            history = writer.history
            item = {
                "frames": history["frame"][-layout.num_frames :],
                "obs_offset": history["obs_offset"][-1],
                "action": history["action"][-1],
                "n_step_return": history["n_step_return"][-1],
                "discount": history["discount"][-1],
            }
            writer.create_item(config.replay_table_name, 1.0, item)
            writer.flush(block_until_num_items=max_in_flight)
        items += 1000
    writer.flush()
    elapsed = time.perf_counter() - start
    writer.close()
    return items / elapsed


def bare_sequence_writer_rate(address, config, spec, seconds):
    """Rows/s of one TrajectoryWriter appending IMPALA's rows and creating a sequence every T - 1 rows."""
    import reverb

    from agents import sequence_adder

    T = config.sequence_length
    writer = reverb.Client(address).trajectory_writer(num_keep_alive_refs=T)
    for column in sequence_adder.COLUMNS:
        writer.configure((column,), num_keep_alive_refs=T, max_chunk_length=T - 1)  # as SequenceAdder
    observations = np.random.default_rng(0).normal(size=(4096, *spec.observation_shape)).astype(np.float32)
    rows, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for i in range(1000):
            writer.append({"observation": observations[i % len(observations)], "action": np.int32(i % 3),
                           "reward": np.float32(0.5), "discount": np.float32(1.0),
                           "behaviour_log_prob": np.float32(-1.1), "valid": True})
            rows += 1
            if rows >= T and (rows - T) % (T - 1) == 0:
                writer.create_item(config.queue_table_name, 1.0,
                                   {column: writer.history[column][-T:] for column in sequence_adder.COLUMNS})
                writer.flush(block_until_num_items=4)  # as SequenceAdder's wait for room
    writer.flush()
    elapsed = time.perf_counter() - start
    writer.close()
    return rows / elapsed


def actor_rates(agent, address, config, spec, env, seconds):
    import jax

    from agents import testing
    from agents.registry import get_builder

    builder = get_builder(agent)
    from agents.environment_loop import EnvironmentLoop

    params = builder.make_networks(config, spec).init(jax.random.PRNGKey(0))
    source = testing.StaticVariableSource({"params": params, "version": 0})
    actor = builder.make_actor(config, spec, source, address, actor_id=0, num_actors=8, seed=0)
    loop = EnvironmentLoop(env, actor, label="actor_0", seed=0)
    loop.run(num_env_steps=20 * env.num_envs)  # compile and warm up
    items_before, steps_before, start = actor.items_written, loop.env_steps, time.perf_counter()
    deadline = start + seconds
    loop._should_stop = lambda: time.perf_counter() > deadline
    loop.run()
    actor._adder.flush()
    elapsed = time.perf_counter() - start
    items, steps = actor.items_written - items_before, loop.env_steps - steps_before
    actor.close()
    return steps / elapsed, items / elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", choices=["apex_dqn", "impala"], default="apex_dqn")
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--num_envs", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    import environments
    from agents import specs
    from agents.registry import get_builder

    market = environments.synthetic_market("ou", num_steps=20_000, seed=0)
    env = environments.TradingVectorEnv(market, num_envs=args.num_envs, window=args.window)
    spec = specs.make_environment_spec(env)
    builder = get_builder(args.agent)
    if args.agent == "apex_dqn":
        config = builder.make_config(max_replay_size=5_000_000, min_replay_size=1)
        bare_rate, unit = bare_writer_rate, "inserts/s"
    else:
        config = builder.make_config(max_queue_size=1_000_000)  # never full: measures the writes
        bare_rate, unit = bare_sequence_writer_rate, "rows/s"
    with ReplayProcess(agent_tables, args.agent, config, spec) as replay:
        ceiling = bare_rate(replay.address, config, spec, args.seconds)
    with ReplayProcess(agent_tables, args.agent, config, spec) as replay:
        env_steps_per_s, inserts_per_s = actor_rates(args.agent, replay.address, config, spec, env, args.seconds)
    actor_rate = inserts_per_s if args.agent == "apex_dqn" else env_steps_per_s
    print(f"{args.agent}: window {args.window}, {args.num_envs} envs, network {config.hidden_sizes}")
    print(f"bare TrajectoryWriter loop (ceiling): {ceiling:8.0f} {unit}")
    print(f"actor:                                {inserts_per_s:8.0f} items/s  {env_steps_per_s:8.0f} env steps/s")
    print(f"actor {unit} / ceiling:          {actor_rate / ceiling:8.2f}")


if __name__ == "__main__":
    main()
