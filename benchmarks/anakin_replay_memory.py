"""How big is Anakin's in-graph replay? Ape-X's replay of ~100k items (the small preset's, at
25 cycles of 256 envs x 16 steps = 102,400 items) per observation window, holding the
observations themselves or their refs (environments.envs.jittable.ObservationRef: the bar and the
int8 held positions, rebuilt into observations by the update). Bytes come from the train
state's shapes (jax.eval_shape: nothing is allocated); `--run_window` then builds the by-ref
agent at that window for real, runs a few cycles and prints the process's peak RSS.

    python benchmarks/anakin_replay_memory.py                      # windows 2 32 128 512
    python benchmarks/anakin_replay_memory.py --run_window=0       # shapes only
"""

from __future__ import annotations

import argparse
import os
import pathlib
import resource
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))


def build(window: int, by_ref: bool, capacity: int):
    """The Ape-X Anakin agent (small preset) on the default OU market at `window`, and its env."""
    from agents import core, specs
    from agents.apex_dqn import builder
    from environments import TradingEnv, synthetic_market
    from environments.envs.jittable import JaxTradingEnv

    train_env = TradingEnv([synthetic_market("ou", 4 * window + 2_000, seed=seed) for seed in range(4)],
                           window=window)
    env = JaxTradingEnv(train_env.setup)
    spec = specs.make_environment_spec(train_env)
    config = builder.make_config("small", max_replay_size=capacity)
    functional = (core.FunctionalEnv(env.reset, env.step, env.observation_ref, env.observation_from_ref)
                  if by_ref else core.FunctionalEnv(env.reset, env.step))
    return builder.make_anakin(config, spec, functional, None), env, builder.make_anakin_sizes(config)


def nbytes(tree) -> int:
    import jax
    import numpy as np

    return sum(int(np.prod(leaf.shape)) * leaf.dtype.itemsize for leaf in jax.tree.leaves(tree))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, nargs="+", default=[2, 32, 128, 512])
    parser.add_argument("--capacity", type=int, default=102_400, help="max_replay_size (items)")
    parser.add_argument("--run_window", type=int, default=512, help="window of the real run (0: none)")
    parser.add_argument("--cycles", type=int, default=5, help="cycles of the real run")
    args = parser.parse_args()

    import jax

    print(f"{'window':>6} {'items':>8} {'observations':>14} {'refs':>10} {'ratio':>6}   per item", flush=True)
    for window in args.windows:
        sizes = {}
        for by_ref in (False, True):
            agent, env, anakin_sizes = build(window, by_ref, args.capacity)
            state = jax.eval_shape(agent.init, jax.random.PRNGKey(0), env.params)
            sizes[by_ref] = nbytes(state.replay)
        items = anakin_sizes.replay_capacity
        print(f"{window:6d} {items:8d} {sizes[False] / 2**20:11.1f} MB {sizes[True] / 2**20:7.1f} MB "
              f"{sizes[False] / sizes[True]:5.1f}x   {sizes[False] / items:8.0f} B -> {sizes[True] / items:5.0f} B",
              flush=True)

    if args.run_window:
        start = time.perf_counter()
        agent, env, anakin_sizes = build(args.run_window, True, args.capacity)
        state = jax.jit(agent.init)(jax.random.PRNGKey(0), env.params)
        train_step = jax.jit(agent.train_step, donate_argnums=(0,))
        for _ in range(args.cycles):
            state, metrics = train_step(state, env.params)
        jax.block_until_ready(state)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(f"window {args.run_window}, refs: {args.cycles} cycles, {int(agent.learner_steps(state))} updates, "
              f"replay {int(metrics['replay_size'])} items of {anakin_sizes.replay_capacity}, "
              f"replay state {nbytes(state.replay) / 2**20:.1f} MB, process peak RSS "
              f"{peak / 2**30:.2f} GiB, {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
