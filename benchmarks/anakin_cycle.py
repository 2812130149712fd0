"""How fast is one compiled Anakin cycle, and where does its time go? Builds the run's
`launch.anakin.driver.Program` (apex.py's flags through launch/run/setup.py; one device:
`jit(vmap(vmap(train_step)))` with the state donated) and times the cycle alone, with no
host work between cycles, then the same with the launcher's per-cycle counter read (a host
sync). `--split` adds the
cycle at twice the updates (the difference is what U more updates cost), at twice the
rollout (what K more acting steps and their replay writes cost) and with a replay of a quarter
of the capacity (what sampling's reads of every priority cost). With `--num_seeds=S` in
--apex_flags every figure is for all S members together (updates/s: S x U per cycle).

    python benchmarks/anakin_cycle.py                       # apex_dqn, the small preset
    python benchmarks/anakin_cycle.py --split --repeats=3
    python benchmarks/anakin_cycle.py --apex_flags=--agent_config=anakin_num_envs=512
    python benchmarks/anakin_cycle.py --split --apex_flags=--num_seeds=16
"""

from __future__ import annotations

import os
import pathlib
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("cycles", 200, "Timed cycles per measurement (after 20 warm-up cycles).")
flags.DEFINE_integer("repeats", 3, "Measurements of each variant, interleaved.")
flags.DEFINE_bool("split", False, "Also time the cycle at 2x updates and at 2x rollout steps.")
flags.DEFINE_list("apex_flags", [], "apex.py flags (e.g. --agent_config=...).")


def build(extra_config: str = "") -> dict:
    """The jitted train_step and counters, the state and env params, and the cycle's sizes,
    from launch/anakin/driver.py's own Program (this host's devices, one seed)."""
    from launch import flags as launch_flags  # noqa: F401  (defines apex.py's flags)
    from launch.anakin.driver import Program
    from launch.run.setup import make_setup as make_launch_setup

    argv = ["apex.py", "--lp_launch_type=anakin", "--workdir=/tmp/anakin_cycle_unused", *FLAGS.apex_flags]
    if extra_config:
        argv.append(f"--agent_config={extra_config}")
    own = {name: FLAGS[name].value for name in ("cycles", "repeats", "split", "apex_flags")}
    FLAGS.unparse_flags()
    FLAGS(argv)
    for name, value in own.items():
        FLAGS[name].value = value
    setup = make_launch_setup(FLAGS)
    program = Program(setup)
    config = setup.config
    members = program.keys.shape[1]
    return {
        "train_step": program.train_step,
        "counters": program.counters,
        "state": program.init(program.keys, program.env.params),
        "params": program.env.params,
        "rollout_steps": config.anakin_rollout_steps,
        "env_steps": config.anakin_num_envs * config.anakin_rollout_steps * members,
        "updates": config.anakin_updates_per_cycle,  # each member's
        "members": members,
        "replay_size": config.max_replay_size,
    }


def timed(program: dict, sync: bool) -> tuple[float, float]:
    """(wall, CPU) seconds per cycle over FLAGS.cycles cycles (after 20 untimed ones). The CPU
    time is this process's, all threads: on a shared machine it moves less than the wall time."""
    import jax

    train_step, counters, params = program["train_step"], program["counters"], program["params"]
    state = program["state"]
    for _ in range(20):
        state, _ = train_step(state, params)
    jax.block_until_ready(state)
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(FLAGS.cycles):
        state, _ = train_step(state, params)
        if sync:
            jax.device_get(counters(state))
    jax.block_until_ready(state)
    program["state"] = state
    return (time.perf_counter() - start) / FLAGS.cycles, (time.process_time() - cpu_start) / FLAGS.cycles


def main(argv) -> None:
    del argv
    start = time.perf_counter()
    base = build()
    print(f"built in {time.perf_counter() - start:.1f} s", flush=True)
    variants = [("cycle", base, False), ("cycle + counter read", base, True)]
    if FLAGS.split:
        variants.append((f"2x updates ({2 * base['updates']})", build(
            f"anakin_updates_per_cycle={2 * base['updates']}"), False))
        variants.append((f"2x rollout ({2 * base['rollout_steps']} steps)", build(
            f"anakin_rollout_steps={2 * base['rollout_steps']}"), False))
        variants.append((f"replay / 4 ({base['replay_size'] // 4} items)", build(
            f"max_replay_size={base['replay_size'] // 4}"), False))
    start = time.perf_counter()
    for _, program, sync in variants:
        timed(program, sync)  # compiles
    print(f"compiled and warmed up in {time.perf_counter() - start:.1f} s", flush=True)
    results = {name: [] for name, _, _ in variants}
    for _ in range(FLAGS.repeats):
        for name, program, sync in variants:
            results[name].append(timed(program, sync))
    for name, program, _ in variants:
        times = [wall for wall, _ in results[name]]
        best = min(times)
        cpu = min(cpu for _, cpu in results[name])
        print(f"{name:28s} ms/cycle {' '.join(f'{1e3 * t:6.2f}' for t in times)} (CPU ms, best: {1e3 * cpu:6.2f})  "
              f"best: {program['updates'] * program['members'] / best:6.0f} updates/s {program['env_steps'] / best / 1e3:5.0f}k env steps/s",
              flush=True)
    if FLAGS.split:
        # From the CPU times (less noisy than the wall times on a shared machine).
        cycle, _, more_updates, more_rollout, less_replay = (min(cpu for _, cpu in results[name])
                                                             for name, _, _ in variants)
        updates = base["updates"]
        per_update = (more_updates - cycle) / updates
        acting = more_rollout - cycle
        print(f"{base['members']} member(s), CPU time: one update of all (sample, sgd_step, set_priorities): "
              f"{1e3 * per_update:.3f} ms; the {updates} updates: {1e3 * per_update * updates:.2f} ms; acting + "
              f"add of one rollout: {1e3 * acting:.2f} ms; the rest: "
              f"{1e3 * (cycle - per_update * updates - acting):.2f} ms; 3/4 of the replay's capacity: "
              f"{1e3 * (cycle - less_replay):.2f} ms")


if __name__ == "__main__":
    app.run(main)
