"""Learner throughput: updates/s and samples/s of a learner vs the bare TrajectoryDataset rate.

    python benchmarks/learner_throughput.py [--agent apex_dqn|impala] [--batch_size 256] [--hidden_sizes 64 64] [--seconds 10]
        [--window 32] [--torso mlp|conv|transformer] [--torso_width 64] [--torso_depth 2] [--torso_heads 4]

--torso picks the network's observation encoder (agents/torsos.py; the sizes are the agent
config's torso_* settings); the output names it and the network's parameter count.

impala: the queue is filled with --items sequences (random actions), drained once by the bare
dataset (same settings as the learner's: one worker, one batch in flight), filled again and
drained by the learner; samples are sequences. The rest of this text is about apex_dqn.

The replay server runs in a child process, filled with --items TradingVectorEnv transitions
(window 32). The ceiling is a bare `reverb.TrajectoryDataset` (batched, prefetched, numpy)
reading the same table; the learner samples the same way, runs its pmapped update and sends
new priorities back. Both are measured in this run. On a CPU the update itself dominates at
Ape-X's network size; --hidden_sizes picks the network (default: a small one, to measure the
learner's own overhead).
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


def play_randomly(env, spec, add_first, add, done):
    """Steps `env` with uniformly random actions until done(), telling an adder's add_first /
    add what the environment loop would (next-step autoreset)."""
    rng = np.random.default_rng(0)
    observation, _ = env.reset(seed=0)
    add_first(observation, None)
    resetting = np.zeros(env.num_envs, bool)
    while not done():
        actions = rng.integers(0, spec.num_actions, env.num_envs)
        observation, reward, terminated, truncated, _ = env.step(actions)
        add(actions, reward, observation, terminated, truncated, ~resetting, rng)
        if resetting.any():
            add_first(observation, resetting)
        resetting = ~resetting & (terminated | truncated)


def fill(address, config, spec, env, count):
    """Writes `count` transitions of random-action episodes with random priorities."""
    import reverb

    from agents import adders

    layout = adders.TransitionLayout.from_spec(spec, config.n_step)
    adder = adders.NStepAdder(reverb.Client(address), config.replay_table_name, layout, env.num_envs, config.discount)

    def add(actions, reward, observation, terminated, truncated, env_mask, rng):
        adder.add(actions, reward, observation, terminated, truncated, env_mask=env_mask)
        adder.write(rng.uniform(0.1, 2.0, (env.num_envs, config.n_step)))

    play_randomly(env, spec, adder.add_first, add, lambda: adder.items_written >= count)
    adder.close()


def dataset_rate(address, config, seconds):
    from agents import replay

    iterator = replay.make_dataset(address, config.replay_table_name, config.batch_size, config.prefetch_batches).as_numpy_iterator()
    for _ in range(5):
        next(iterator)
    batches, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        next(iterator)
        batches += 1
    return batches * config.batch_size / (time.perf_counter() - start)


def fill_queue(address, config, spec, env, count):
    """Writes `count` sequences of random-action episodes to the IMPALA queue."""
    import reverb

    from agents.impala import builder
    from agents.sequence_adder import SequenceAdder

    adder = SequenceAdder(reverb.Client(address), config.queue_table_name,
                                  builder.make_sequence_layout(config, spec), env.num_envs)
    uniform_log_prob = np.full(env.num_envs, -np.log(spec.num_actions))

    def add(actions, reward, observation, terminated, truncated, env_mask, rng):
        adder.add(actions, reward, observation, terminated, truncated, env_mask=env_mask,
                  behaviour_log_prob=uniform_log_prob)

    play_randomly(env, spec, adder.add_first, add, lambda: adder.items_written >= count)
    adder.close()
    return adder.items_written


def drain_rates(address, config, spec, env, count):
    """(bare dataset sequences/s, learner sequences/s), each draining a queue of `count` sequences."""
    from agents import replay
    from agents.impala import builder

    usable = fill_queue(address, config, spec, env, count) // config.batch_size - 1  # the last may be partial
    iterator = replay.make_dataset(address, config.queue_table_name, config.batch_size, config.prefetch_batches,
                                   max_in_flight_samples_per_worker=config.batch_size,
                                   num_workers_per_iterator=1).as_numpy_iterator()
    next(iterator)
    start = time.perf_counter()
    for _ in range(usable - 1):
        next(iterator)
    ceiling = (usable - 1) * config.batch_size / (time.perf_counter() - start)
    del iterator
    import reverb

    reverb.Client(address).reset(config.queue_table_name)
    usable = fill_queue(address, config, spec, env, count) // config.batch_size - 1
    learner = builder.make_learner(config, spec, address, seed=0)
    learner.step()  # compile
    start = time.perf_counter()
    for _ in range(usable - 1):
        learner.step()
    rate = (usable - 1) * config.batch_size / (time.perf_counter() - start)
    learner.close()
    return ceiling, rate


def learner_rate(address, config, spec, seconds):
    from agents.apex_dqn import builder

    learner = builder.make_learner(config, spec, address, seed=0)
    for _ in range(5):  # compile
        learner.step()
    updates, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        learner.step()
        updates += 1
    learner.flush_priorities()
    elapsed = time.perf_counter() - start
    learner.close()
    return updates / elapsed


def describe_torso(config):
    if config.torso == "mlp":
        return "torso mlp"
    heads = f", {config.torso_heads} heads" if config.torso == "transformer" else ""
    return f"torso {config.torso} (width {config.torso_width}, depth {config.torso_depth}{heads})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", choices=["apex_dqn", "impala"], default="apex_dqn")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--hidden_sizes", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--torso", choices=["mlp", "conv", "transformer"], default="mlp")
    parser.add_argument("--torso_width", type=int, default=64)
    parser.add_argument("--torso_depth", type=int, default=2)
    parser.add_argument("--torso_heads", type=int, default=4)
    args = parser.parse_args()
    torso = dict(torso=args.torso, torso_width=args.torso_width, torso_depth=args.torso_depth,
                 torso_heads=args.torso_heads)

    import environments
    from agents import specs
    from agents.apex_dqn import builder

    market = environments.synthetic_market("ou", num_steps=20_000, seed=0)
    env = environments.TradingVectorEnv(market, num_envs=16, window=args.window)
    spec = specs.make_environment_spec(env)
    if args.agent == "impala":
        from agents.impala import builder as impala_builder

        config = impala_builder.make_config(batch_size=args.batch_size, hidden_sizes=tuple(args.hidden_sizes),
                                            max_queue_size=args.items + 64, **torso)
        with ReplayProcess(agent_tables, "impala", config, spec) as replay:
            ceiling, sequences_per_s = drain_rates(replay.address, config, spec, env, args.items)
        print(f"impala: window {args.window}, batch {config.batch_size} sequences of {config.sequence_length}, "
              f"network {config.hidden_sizes}, {describe_torso(config)}, "
              f"{impala_builder.parameter_count(config, spec)} parameters, {args.items} sequences")
        print(f"bare TrajectoryDataset (ceiling): {ceiling:8.0f} sequences/s")
        print(f"learner:                          {sequences_per_s:8.0f} sequences/s  "
              f"{sequences_per_s / config.batch_size:6.1f} updates/s")
        print(f"learner samples / ceiling:        {sequences_per_s / ceiling:8.2f}")
        return
    config = builder.make_config(
        batch_size=args.batch_size, hidden_sizes=tuple(args.hidden_sizes), max_replay_size=10 * args.items, min_replay_size=1,
        **torso,
    )
    with ReplayProcess(agent_tables, "apex_dqn", config, spec) as replay:
        fill(replay.address, config, spec, env, args.items)
        ceiling = dataset_rate(replay.address, config, args.seconds)
        updates_per_s = learner_rate(replay.address, config, spec, args.seconds)
    samples_per_s = updates_per_s * config.batch_size
    print(f"window {args.window}, batch {config.batch_size}, network {config.hidden_sizes}, {describe_torso(config)}, "
          f"{builder.parameter_count(config, spec)} parameters, {args.items} items")
    print(f"bare TrajectoryDataset (ceiling): {ceiling:8.0f} samples/s")
    print(f"learner:                          {samples_per_s:8.0f} samples/s  {updates_per_s:6.1f} updates/s")
    print(f"learner samples / ceiling:        {samples_per_s / ceiling:8.2f}")


if __name__ == "__main__":
    main()
