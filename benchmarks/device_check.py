"""One prepared device check: anakin's env steps/s and updates/s over anakin_num_envs and
--num_seeds for both agents, and the Reverb learner's pmapped Ape-X update (agents/pmap_learner.py's
shape, fed random batches) over batch sizes; one table at the end. It needs only the compiled
path's stack (requirements-today.txt) and runs on the devices JAX finds (JAX_PLATFORMS unset: the
accelerator when its jaxlib plugin is installed, else the CPU); docs/gpu.md says how to run it.

    python benchmarks/device_check.py           # accelerator sizes: envs 256..8,192, seeds 1..64
    python benchmarks/device_check.py --tiny    # CPU sizes: checks that the script works
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
import time

# jax 0.4's random bits on every stack, as launch/apex.py draws them (BUILD.md).
os.environ.setdefault("JAX_THREEFRY_PARTITIONABLE", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

# The smallest sizes that still run every piece (apex_dqn learns from its 2nd cycle on).
TINY = dict(num_envs=[16, 32], num_seeds=[1, 2], batch_sizes=[32], cycles=3,
            apex_config="max_replay_size=4096,min_replay_size=256")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    numbers = lambda text: [int(n) for n in text.split(",") if n]  # noqa: E731
    parser.add_argument("--agents", default="apex_dqn,impala", help="agents to run under anakin")
    parser.add_argument("--num_envs", type=numbers, default=[256, 1024, 4096, 8192],
                        help="anakin_num_envs per device, each at one seed")
    parser.add_argument("--num_seeds", type=numbers, default=[1, 8, 64],
                        help="seeds trained at once, each at the smallest --num_envs")
    parser.add_argument("--batch_sizes", type=numbers, default=[128, 512, 2048],
                        help="batch sizes of the pmapped Ape-X learner update (0: skip it)")
    parser.add_argument("--cycles", type=int, default=20, help="timed anakin cycles per row")
    parser.add_argument("--updates", type=int, default=200, help="timed learner updates per row")
    parser.add_argument("--apex_config", default="", help="apex_dqn --agent_config additions")
    parser.add_argument("--impala_config", default="", help="impala --agent_config additions")
    parser.add_argument("--max_minutes", type=float, default=8.0,
                        help="rows not started by then are listed as skipped")
    parser.add_argument("--tiny", action="store_true", help=f"CPU sizes: {TINY}")
    args = parser.parse_args(argv)
    if args.tiny:
        for name, value in TINY.items():
            setattr(args, name, value)
    bad = [f"--{name}={','.join(map(str, getattr(args, name)))}" for name in ("num_envs", "num_seeds")
           if not getattr(args, name) or min(getattr(args, name)) < 1]
    bad += [f"--batch_sizes={','.join(map(str, args.batch_sizes))}"] if min(args.batch_sizes, default=0) < 0 else []
    bad += [f"--{name}={getattr(args, name)}" for name in ("cycles", "updates") if getattr(args, name) < 1]
    unknown = sorted(set(args.agents.split(",")) - {"apex_dqn", "impala"})
    if bad or unknown:
        parser.error(f"{' '.join(bad + [f'--agents={args.agents}'] * bool(unknown))}: expected "
                     "positive integers separated by commas, agents among apex_dqn,impala")
    return args


def make_program(agent: str, num_envs: int, num_seeds: int, extra_config: str):
    """launch/anakin/program.py's Program of apex.py's flags for this row, and the setup."""
    from launch import flags as launch_flags  # defines apex.py's flags
    from launch.anakin.program import Program
    from launch.run.setup import make_setup

    config = ",".join(part for part in (f"anakin_num_envs={num_envs}", extra_config) if part)
    workdir = os.path.join(tempfile.gettempdir(), "device_check_unused")  # never created
    launch_flags.FLAGS.unparse_flags()
    launch_flags.FLAGS(["device_check", "--lp_launch_type=anakin", f"--agent={agent}",
                        f"--num_seeds={num_seeds}", f"--agent_config={config}", f"--workdir={workdir}"])
    setup = make_setup(launch_flags.FLAGS)
    return Program(setup), setup


def anakin_row(agent: str, num_envs: int, num_seeds: int, args: argparse.Namespace) -> dict:
    """Compiles one row's cycle, runs it until the learner updates, then times args.cycles cycles."""
    import jax
    import numpy as np

    extra = args.apex_config if agent == "apex_dqn" else args.impala_config
    program, _ = make_program(agent, num_envs, num_seeds, extra)
    start = time.perf_counter()
    state = program.init(program.keys, program.env.params)
    state, _ = program.train_step(state, program.env.params)
    learner, _ = jax.device_get(program.counters(state))
    compile_s = time.perf_counter() - start
    for _ in range(1000):  # apex_dqn fills its replay to min_replay_size before learning
        if learner[0, 0] > 0:
            break
        state, _ = program.train_step(state, program.env.params)
        learner, _ = jax.device_get(program.counters(state))
    learner, envs = (np.asarray(x, np.int64) for x in jax.device_get(program.counters(state)))
    start = time.perf_counter()
    for _ in range(args.cycles):
        state, _ = program.train_step(state, program.env.params)
    after_learner, after_envs = (np.asarray(x, np.int64) for x in jax.device_get(program.counters(state)))
    seconds = time.perf_counter() - start
    updates = int((after_learner[0] - learner[0]).sum())  # every seed's, once (devices share one)
    return dict(what=f"anakin {agent}", devices=len(program.devices), seeds=num_seeds,
                size=num_envs, compile_s=compile_s, ms=1e3 * seconds / args.cycles,
                env_steps_per_s=int((after_envs - envs).sum()) / seconds, updates_per_s=updates / seconds)


def learner_row(batch_size: int, args: argparse.Namespace) -> dict:
    """The Reverb learner's update as agents/pmap_learner.py runs it (pmap over the local
    devices, the batch split between them), on a random batch of the run's item layout handed
    over from the host at each update, as a Reverb sample is."""
    import jax
    import numpy as np

    from agents.apex_dqn import builder, losses
    from agents.pmap_learner import DEVICE_AXIS

    program, setup = make_program("apex_dqn", 16, 1, args.apex_config)
    del program
    config, spec = setup.config, setup.spec
    devices = jax.local_devices()
    if batch_size % len(devices):
        raise SystemExit(f"--batch_sizes={batch_size}: expected a multiple of the {len(devices)} devices")
    sgd_step, optimizer = builder.make_sgd_step(config, spec, DEVICE_AXIS)
    update = jax.pmap(sgd_step, axis_name=DEVICE_AXIS, devices=devices)
    state = losses.init_state(builder.make_networks(config, spec).init, optimizer, 0)
    # [D, ...] host copies that pmap places (jax.device_put_replicated is gone from jax 0.10).
    state = jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (len(devices),) + np.shape(x)), state)
    rng = np.random.default_rng(0)
    per_device = (len(devices), batch_size // len(devices))
    data = {}
    for name, (shape, dtype) in builder.make_transition_layout(config, spec).item_signature().items():
        data[name] = (rng.integers(0, spec.num_actions, per_device + shape) if dtype.kind == "i"
                      else rng.random(per_device + shape)).astype(dtype)  # [D, B / D, ...]
    batch = losses.Batch(data, np.full(per_device, 1.0 / config.max_replay_size, np.float32),
                         np.full(per_device, float(config.max_replay_size), np.float32))
    start = time.perf_counter()
    state, extra = update(state, batch)
    jax.block_until_ready(extra)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(args.updates):
        state, extra = update(state, batch)
    jax.block_until_ready(extra)
    seconds = time.perf_counter() - start
    return dict(what="pmap learner apex_dqn", devices=len(devices), seeds=1, size=batch_size,
                compile_s=compile_s, ms=1e3 * seconds / args.updates,
                env_steps_per_s=None, updates_per_s=args.updates / seconds)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    import jax

    start = time.perf_counter()
    rows: list[tuple] = []
    for agent in args.agents.split(","):
        sizes = [(n, 1) for n in args.num_envs]
        sizes += [(min(args.num_envs), s) for s in args.num_seeds if (min(args.num_envs), s) not in sizes]
        rows += [(anakin_row, agent, num_envs, seeds) for num_envs, seeds in sizes]
    rows += [(learner_row, batch) for batch in args.batch_sizes if batch]
    device = jax.local_devices()[0]
    print(f"jax {jax.__version__} on {len(jax.local_devices())} x {device.device_kind} "
          f"({device.platform}); {len(rows)} rows, at most {args.max_minutes:g} min", flush=True)
    results = []
    for row in rows:
        if time.perf_counter() - start > 60 * args.max_minutes:
            results.append(dict(what=f"skipped: {row[0].__name__} {row[1:]} (time budget)"))
            continue
        results.append(row[0](*row[1:], args))
        print("  done:", results[-1]["what"], results[-1]["size"], f"({time.perf_counter() - start:.0f} s)",
              flush=True)
    print(f"\n{'what':24s} {'devices':>7s} {'seeds':>5s} {'envs|batch':>10s} {'compile s':>9s} "
          f"{'ms/step':>8s} {'env steps/s':>12s} {'updates/s':>10s}")
    for r in results:
        if "size" not in r:
            print(r["what"])
            continue
        env_steps = f"{r['env_steps_per_s']:12,.0f}" if r["env_steps_per_s"] is not None else f"{'-':>12s}"
        print(f"{r['what']:24s} {r['devices']:7d} {r['seeds']:5d} {r['size']:10d} {r['compile_s']:9.1f} "
              f"{r['ms']:8.2f} {env_steps} {r['updates_per_s']:10,.0f}")
    print(f"total {time.perf_counter() - start:.0f} s; ms/step: per anakin cycle or per learner update")


if __name__ == "__main__":
    main(sys.argv[1:])
