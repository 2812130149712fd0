"""Portfolio env throughput and memory as the number of instruments N grows (issue #27):

  jax env      JaxPortfolioEnv stepped under jit + vmap over --num_envs envs in one lax.scan, a
               trivial policy that reads the whole observation (+1 where its sum is > 0, else -1)
  jax acting   the same with Ape-X DQN's greedy policy on the default portfolio network (the
               `small` preset: a shared MLP torso per instrument, the cross-asset attention
               through 4 learned summaries, one dueling branch per instrument), as anakin acts;
               no updates
  full attn    the same network with full self-attention across instruments (cross_asset_points=0)
  pooled MLP   the same with issue 27's reference network: a shared 32 x 32 MLP per
               instrument and mean pooling across instruments, no attention
  numpy env    PortfolioEnv (gymnasium, one env) stepped with a fixed action, resets included
  bare numpy   a bare loop of the same step maths on the same arrays (rebalance, the held
               window, the observation), no checks and no info dict
  numpy vector PortfolioVectorEnv (--num_envs envs stepped together, as an actor of the program
               of nodes steps them), a fixed action, autoresets included
  bare vector  a bare loop of the same batched step maths (no checks, info or episode logic)

Throughput is instrument-steps/s (one env step of N instruments counts N). Then the peak memory
of the whole `launch/apex.py` process that loads a --memory_instruments x --memory_bars wide
CSV and trains on it under anakin for --memory_learner_steps (VmHWM of the process, polled).

    python benchmarks/portfolio_env.py                      # N = 1, 10, 100, 500
    python benchmarks/portfolio_env.py --instruments=1,10 --nomemory
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np
from absl import app, flags

from benchmarks import runs  # noqa: F401 - sets JAX_PLATFORMS=cpu and quiet TF logs by default
from benchmarks.portfolio_bare import BareArrays, BareState, BareVectorState, bare_step, bare_vector_step

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command line's flags (defined when run, so that importing this module defines none
    beside other benchmarks' flags)."""
    flags.DEFINE_list("instruments", ["1", "10", "100", "500"], "Numbers of instruments N.")
    flags.DEFINE_integer("bars", 2048, "Bars of each synthetic panel.")
    flags.DEFINE_integer("window", 2, "The env's window (apex.py's default).")
    flags.DEFINE_integer("num_envs", 64, "Envs stepped together under vmap.")
    flags.DEFINE_float("seconds", 2.0, "Least time of each timed measure (repeated calls).")
    flags.DEFINE_integer("scan_steps", 64, "Env steps of one compiled call (lax.scan).")
    flags.DEFINE_bool("memory", True, "Also measure the peak memory of a training run on a wide CSV.")
    flags.DEFINE_integer("memory_instruments", 500, "Instruments of the memory run's panel.")
    flags.DEFINE_integer("memory_bars", 8000, "Bars of the memory run's panel.")
    flags.DEFINE_integer("memory_learner_steps", 200, "Learner steps of the memory run.")
    flags.DEFINE_string("workdir", None, "Where the memory run's CSV and workdir go (default: a "
                        "temporary folder, removed after).")


def timed(call, seconds: float) -> float:
    """Seconds per call of `call()` (already compiled), over at least `seconds`."""
    call()
    count, start = 0, time.perf_counter()
    while True:
        call()
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / count


def obs_example(env, num_envs: int):
    import jax.numpy as jnp

    return jnp.zeros((num_envs,) + env.observation_shape, jnp.float32)


def make_pooled_mlp(num_actions: int):
    """Q [B, N, K] of a shared 32 x 32 MLP per instrument, the mean of the instruments'
    encodings added before the head: issue 27's reference for acting throughput (a flax module,
    defined here so that importing this file does not import jax)."""
    import flax.linen as nn

    class PooledMLP(nn.Module):
        num_actions: int

        @nn.compact
        def __call__(self, obs):  # [B, N, window, F + 2]
            x = obs.reshape(obs.shape[:2] + (-1,))
            x = nn.relu(nn.Dense(32)(nn.relu(nn.Dense(32)(x))))  # [B, N, 32]
            x = x + x.mean(axis=1, keepdims=True)
            return nn.Dense(self.num_actions)(x)

    return PooledMLP(num_actions=num_actions)


def jax_rates(panel, config) -> dict[str, float]:
    """Instrument-steps/s of the jittable env, alone and acting with the default network."""
    import jax
    import jax.numpy as jnp

    from agents.apex_dqn import builder
    from agents.apex_dqn.config import make_config
    from environments.envs.portfolio import JaxPortfolioEnv
    from environments.envs.portfolio_gym import PortfolioEnv

    env = JaxPortfolioEnv(panel, config, mode="train")
    params, num_envs, num_steps = env.params, FLAGS.num_envs, FLAGS.scan_steps
    spec = builder.make_environment_spec(PortfolioEnv(panel, config))
    agent_config = make_config(preset="small")
    networks = builder.make_networks(agent_config, spec)
    network_params = networks.init(jax.random.PRNGKey(0))

    def trivial(obs):  # [E, N, window, F + 2] -> [E, N]
        return jnp.where(obs.sum(axis=(-2, -1)) > 0, 2, 0).astype(jnp.int32)

    def greedy(obs):
        return jnp.argmax(networks.apply(network_params, obs), axis=-1).astype(jnp.int32)

    full = builder.make_networks(make_config(preset="small", cross_asset_points=0), spec)
    full_params = full.init(jax.random.PRNGKey(0))

    def full_greedy(obs):
        return jnp.argmax(full.apply(full_params, obs), axis=-1).astype(jnp.int32)

    mlp = make_pooled_mlp(len(config.positions))
    mlp_params = mlp.init(jax.random.PRNGKey(0), obs_example(env, num_envs))

    def pooled(obs):
        return jnp.argmax(mlp.apply(mlp_params, obs), axis=-1).astype(jnp.int32)

    def make_run(policy):
        step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

        def run(carry, key):
            def one(carry, key):
                obs, state = carry
                obs, state, reward, done, info = step(jax.random.split(key, num_envs), state,
                                                      policy(obs), params)
                return (obs, state), reward.sum()
            return jax.lax.scan(one, carry, jax.random.split(key, num_steps))
        return jax.jit(run)

    obs, state = jax.vmap(env.reset, in_axes=(0, None))(
        jax.random.split(jax.random.PRNGKey(1), num_envs), params)
    rates = {}
    for name, policy in (("jax_env", trivial), ("jax_acting", greedy), ("jax_full_attention_acting", full_greedy),
                         ("jax_mlp_acting", pooled)):
        run = make_run(policy)
        carry = {"value": (obs, state)}
        key = {"value": jax.random.PRNGKey(2)}

        def call():
            key["value"], sub = jax.random.split(key["value"])
            carry["value"], rewards = run(carry["value"], sub)
            rewards.block_until_ready()

        seconds = timed(call, FLAGS.seconds)
        rates[name] = num_envs * num_steps * panel.num_instruments / seconds
    return rates


def vector_rates(panel, config) -> dict[str, float]:
    """Instrument-steps/s of PortfolioVectorEnv and of a bare loop of its batched step maths."""
    from environments.envs.portfolio_vector import PortfolioVectorEnv

    num, envs = panel.num_instruments, FLAGS.num_envs
    env = PortfolioVectorEnv(panel, config, envs, mode="train")
    actions = np.full((envs, num), 2)  # +1 everywhere: the equally weighted portfolio
    env.reset(seed=0)
    batch = 32

    def env_steps():
        for _ in range(batch):
            env.step(actions)

    arrays = BareArrays(panel.features, panel.can_hold, panel.step_returns,
                        np.asarray(config.positions, np.float64))
    first, length = config.window, config.episode_length
    rng = np.random.default_rng(0)

    def start() -> BareVectorState:
        t = first + rng.integers(len(panel) - 1 - first - length + 1, size=envs)
        return BareVectorState(t, np.zeros((envs, num)), np.ones(envs), np.zeros((envs, config.window, num)))

    state = {"bare": start(), "steps": 0}

    def bare_steps():
        bare = state["bare"]
        for _ in range(batch):
            obs, bare, reward, bankrupt = bare_vector_step(bare, actions, arrays, config)
            state["steps"] += 1
            if state["steps"] % length == 0:  # every env starts anew each episode_length steps
                bare = start()
        state["bare"] = bare
        return obs

    return {"numpy_vector": batch * envs * num / timed(env_steps, FLAGS.seconds),
            "bare_vector": batch * envs * num / timed(bare_steps, FLAGS.seconds)}


def numpy_rates(panel, config) -> dict[str, float]:
    """Instrument-steps/s of PortfolioEnv and of a bare loop of its step maths."""
    from environments.envs.portfolio_gym import PortfolioEnv

    num = panel.num_instruments
    env = PortfolioEnv(panel, config, mode="train")
    action = np.full(num, 2)  # +1 everywhere: the equally weighted portfolio
    env.reset(seed=0)
    batch = 256

    def env_steps():
        for _ in range(batch):
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()

    arrays = BareArrays(panel.features, panel.can_hold, panel.step_returns,
                        np.asarray(config.positions, np.float64))
    first, length = config.window, config.episode_length
    rng = np.random.default_rng(0)
    state = {"bare": BareState(first, first + length, np.zeros(num), 1.0,
                               np.zeros((config.window, num)))}

    def bare_steps():
        bare = state["bare"]
        for _ in range(batch):
            obs, bare, reward, bankrupt = bare_step(bare, action, arrays, config)
            if bankrupt or bare.t >= bare.end:
                start = first + int(rng.integers(len(panel) - 1 - first - length + 1))
                bare = BareState(start, start + length, np.zeros(num), 1.0,
                                 np.zeros((config.window, num)))
        state["bare"] = bare
        return obs

    return {"numpy_env": batch * num / timed(env_steps, FLAGS.seconds),
            "bare_numpy": batch * num / timed(bare_steps, FLAGS.seconds)}


def write_wide_csv(path: pathlib.Path, instruments: int, bars: int, seed: int = 0) -> None:
    """A daily wide CSV (`Date,I000,...`) of random walks; a third of the instruments list in
    the first 30% of the bars or delist in the last 10% (empty cells there), so every
    instrument has bars in each part of apex.py's 60/20/20 split (benchmarks/panel_load.py's
    panel delists some before the test part, which a run refuses)."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(0.01 * rng.standard_normal((bars, instruments)), axis=0))
    late = rng.random(instruments) < 1 / 3
    first = np.where(late, rng.integers(0, int(0.3 * bars), instruments), 0)
    last = np.where(late, bars, rng.integers(int(0.9 * bars), bars + 1, instruments))
    index = np.arange(bars)[:, None]
    cells = np.char.mod("%.4f", close)
    cells[(index < first) | (index >= last)] = ""
    stamps = np.busday_offset(np.datetime64("1990-01-01", "D"), np.arange(bars), roll="forward")
    with open(path, "w") as file:
        file.write("Date," + ",".join(f"I{i:03d}" for i in range(instruments)) + "\n")
        for stamp, row in zip(np.datetime_as_string(stamps), cells):
            file.write(stamp + "," + ",".join(row) + "\n")


def memory_run(workdir: pathlib.Path) -> dict:
    """Peak RSS of the whole apex.py process loading a wide CSV and training on it (anakin)."""
    csv = workdir / "wide.csv"
    write_wide_csv(csv, FLAGS.memory_instruments, FLAGS.memory_bars)
    command = [sys.executable, str(runs.REPO_ROOT / "launch" / "apex.py"),
               "--lp_launch_type=anakin", f"--data=panel:{csv}", f"--data_cache={workdir / 'cache'}",
               f"--max_learner_steps={FLAGS.memory_learner_steps}", "--max_seconds=0",
               f"--workdir={workdir / 'run'}", f"--eval_every={FLAGS.memory_learner_steps}"]
    print("$", " ".join(command[1:]), flush=True)
    start = time.monotonic()
    with open(workdir / "run.log", "w") as log:
        process = subprocess.Popen(command, cwd=runs.REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        peak = 0
        while process.poll() is None:
            try:  # VmHWM: the process's own high-water mark, kept until it exits
                status = pathlib.Path(f"/proc/{process.pid}/status").read_text()
                peak = max(peak, int(status.split("VmHWM:")[1].split()[0]) * 1024)
            except (FileNotFoundError, IndexError, ProcessLookupError):
                pass
            time.sleep(0.1)
    if process.returncode != 0:
        tail = (workdir / "run.log").read_text().splitlines()[-20:]
        raise RuntimeError(f"launch/apex.py exited {process.returncode}:\n" + "\n".join(tail))
    summary = json.loads((workdir / "run" / "summary.json").read_text())
    return {"peak_rss_mb": peak / 1e6, "seconds": time.monotonic() - start,
            "compile_s": summary["launch"]["compile_s"], "learner_steps": summary["learner_steps"],
            "csv_mb": csv.stat().st_size / 1e6}


def main(argv) -> None:
    del argv
    from environments.data.synthetic_panel import synthetic_panel
    from environments.envs.config import EnvConfig

    config = EnvConfig(window=FLAGS.window)
    rows, results = [], {}
    for num in [int(n) for n in FLAGS.instruments]:
        panel, _ = synthetic_panel(num, FLAGS.bars, seed=0)
        panel.features  # noqa: B018 - computed before timing
        result = {**jax_rates(panel, config), **numpy_rates(panel, config), **vector_rates(panel, config)}
        results[num] = result
        rows.append([num, result["jax_env"] / 1e6, result["jax_acting"] / 1e6,
                     result["jax_full_attention_acting"] / 1e6, result["jax_mlp_acting"] / 1e6,
                     result["numpy_env"] / 1e6, result["bare_numpy"] / 1e6,
                     result["numpy_env"] / result["bare_numpy"],
                     result["numpy_vector"] / 1e6, result["bare_vector"] / 1e6,
                     result["numpy_vector"] / result["bare_vector"],
                     1e9 / result["jax_env"], 1e9 / result["jax_acting"], 1e9 / result["numpy_env"],
                     1e9 / result["numpy_vector"]])
        print(f"N={num}: done", flush=True)
    print(f"\nInstrument-steps/s (M) and ns per instrument-step; jax: {FLAGS.num_envs} envs under "
          f"vmap, {FLAGS.scan_steps} steps per compiled call; numpy vector: {FLAGS.num_envs} envs; "
          f"window {FLAGS.window}, {FLAGS.bars} bars:")
    runs.print_table(["N", "jax env M/s", "jax acting M/s", "jax full-attention acting M/s",
                      "jax pooled-MLP acting M/s",
                      "numpy env M/s", "bare numpy M/s", "numpy env / bare", "numpy vector M/s",
                      "bare vector M/s", "vector / bare", "jax env ns", "jax acting ns", "numpy env ns",
                      "numpy vector ns"], rows)
    sizes = sorted(results)
    if 100 in results:
        acting = results[100]["jax_acting"]
        print(f"acting under anakin at N=100 (default network, no updates): {acting / 1e6:.2f}M "
              f"instrument-steps/s (target >= 5M): {'PASS' if acting >= 5e6 else 'FAIL'}; "
              f"{acting / results[100]['jax_full_attention_acting']:.2f}x full self-attention's")
    worst = min(results[n]["numpy_vector"] / results[n]["bare_vector"] for n in sizes)
    print(f"numpy vector env / bare numpy loop of its maths, worst N: {worst:.2f} (target >= 0.5): "
          f"{'PASS' if worst >= 0.5 else 'FAIL'}")
    worst = min(results[n]["numpy_env"] / results[n]["bare_numpy"] for n in sizes)
    print(f"gymnasium PortfolioEnv / bare numpy loop, worst N: {worst:.2f}")
    for name in ("jax_env", "jax_acting", "jax_full_attention_acting", "jax_mlp_acting", "numpy_env",
                 "numpy_vector") if len(sizes) > 1 else ():
        # linear cost in N: the cost per instrument-step does not grow from the second-largest N
        small, large = sizes[-2], sizes[-1]
        growth = results[small][name] / results[large][name]
        print(f"{name}: cost per instrument-step at N={large} / at N={small}: {growth:.2f} "
              f"(linear or better: <= 1.25): {'PASS' if growth <= 1.25 else 'FAIL'}")
    if FLAGS.memory:
        workdir = pathlib.Path(FLAGS.workdir or tempfile.mkdtemp(prefix="portfolio-env-"))
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            memory = memory_run(workdir)
        finally:
            if not FLAGS.workdir:
                import shutil

                shutil.rmtree(workdir, ignore_errors=True)
        print(f"\n{FLAGS.memory_instruments} x {FLAGS.memory_bars} wide CSV ({memory['csv_mb']:.0f} "
              f"MB) loaded and trained under anakin for {memory['learner_steps']} learner steps "
              f"in {memory['seconds']:.0f} s (compile {memory['compile_s']:.0f} s): peak RSS "
              f"{memory['peak_rss_mb']:.0f} MB of the whole process (target <= 2000 MB): "
              f"{'PASS' if memory['peak_rss_mb'] <= 2000 else 'FAIL'}")
    print(f"measured {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
