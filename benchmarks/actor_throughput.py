"""Actor throughput: env steps/s and inserts/s of one Ape-X actor process vs a bare writer loop.

    python benchmarks/actor_throughput.py [--window 32] [--num_envs 32] [--seconds 10]

The replay server runs in a child process (as the replay node does). The actor steps a
TradingVectorEnv with its jitted epsilon-greedy policy and writes n-step transitions with
initial priorities. The ceiling is a bare TrajectoryWriter loop inserting the same items
(same columns, references and chunking) from precomputed frames: no env, network or n-step
bookkeeping. Both are measured in this run; the ratio is actor inserts/s / ceiling.
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

from benchmarks.replay_process import ReplayProcess, apex_dqn_tables  # noqa: E402


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


def actor_rates(address, config, spec, env, seconds):
    import jax

    from agents import testing
    from agents.apex_dqn import builder
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
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--num_envs", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    import environments
    from agents import specs
    from agents.apex_dqn import builder

    market = environments.synthetic_market("ou", num_steps=20_000, seed=0)
    env = environments.TradingVectorEnv(market, num_envs=args.num_envs, window=args.window)
    spec = specs.make_environment_spec(env)
    config = builder.make_config(max_replay_size=5_000_000, min_replay_size=1)
    with ReplayProcess(apex_dqn_tables, config, spec) as replay:
        ceiling = bare_writer_rate(replay.address, config, spec, args.seconds)
    with ReplayProcess(apex_dqn_tables, config, spec) as replay:
        env_steps_per_s, inserts_per_s = actor_rates(replay.address, config, spec, env, args.seconds)
    print(f"window {args.window}, {args.num_envs} envs, network {config.hidden_sizes}")
    print(f"bare TrajectoryWriter loop (ceiling): {ceiling:8.0f} inserts/s")
    print(f"actor:                                {inserts_per_s:8.0f} inserts/s  {env_steps_per_s:8.0f} env steps/s")
    print(f"actor inserts / ceiling:              {inserts_per_s / ceiling:8.2f}")


if __name__ == "__main__":
    main()
