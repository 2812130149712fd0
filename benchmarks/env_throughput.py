"""Environment throughput: env steps/s of one TradingEnv and of TradingVectorEnv at several
batch sizes, against a bare numpy step of the same accounting (no observations, info or
autoreset) and, when gym_anytrading is importable, its stocks-v0 at the same window.

    python benchmarks/env_throughput.py [--csv PATH] [--window 32] [--repeats 3]

Each figure is the best of --repeats timed runs (the machine may be shared). Random actions
are drawn before timing; training mode (random starts, 256-step episodes, autoreset).
"""

import argparse
import pathlib
import sys
import time

import numpy as np

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from environments import TradingEnv, TradingVectorEnv, load_csv, synthetic_market  # noqa: E402
from environments.envs.config import EnvConfig  # noqa: E402
from environments.envs.trading import make_setup  # noqa: E402

DEFAULT_CSV = REPO_ROOT.parent / "shared" / "data" / "STOCKS_GOOGL.csv"
BATCH_SIZES = (1, 64, 256, 1024)


def best_rate(run, num_env_steps, repeats):
    """Env steps/s of the fastest of `repeats` calls of run()."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return num_env_steps / best


def single_env_rate(market, window, num_steps, repeats, mode="train"):
    env = TradingEnv(market, window=window, mode=mode)
    env.reset(seed=0)
    actions = np.random.default_rng(0).integers(0, 3, num_steps).tolist()

    def run():
        step, reset = env.step, env.reset
        for action in actions:
            _, _, terminated, truncated, _ = step(action)
            if terminated or truncated:
                reset()
    return best_rate(run, num_steps, repeats)


def vector_env_rate(market, window, num_envs, num_steps, repeats):
    env = TradingVectorEnv(market, num_envs=num_envs, window=window)
    env.reset(seed=0)
    actions = np.random.default_rng(0).integers(0, 3, (num_steps, num_envs))

    def run():
        step = env.step
        for batch in actions:
            step(batch)
    return best_rate(run, num_steps * num_envs, repeats)


def bare_numpy_rate(market, window, num_envs, num_steps, repeats):
    """The accounting alone: cost lookup, growth, log reward, value, clock, episode end."""
    setup = make_setup(market, EnvConfig(window=window))
    levels, returns = setup.positions, setup.step_returns
    cost_table = np.abs(levels[None, :] - np.append(levels, 0.0)[:, None]) * setup.trade_cost_rate
    cost_table += np.maximum(-levels, 0.0)[None, :] * setup.borrow_rate  # [K + 1, K]
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 3, (num_steps, num_envs))
    start = setup.first_step + rng.integers(0, setup.num_starts, num_envs)

    def run():
        t, end = start.copy(), start + setup.episode_length
        value, previous = np.ones(num_envs), np.full(num_envs, len(levels))
        for action in actions:
            target = levels[action]
            growth = target * returns[t]
            growth += 1.0
            growth -= cost_table[previous, action]
            reward = np.log(growth)  # noqa: F841 (computed as the env does)
            value = value * growth
            previous = action
            t = t + 1
            done = t >= end
            t = np.where(done, start, t)
    return best_rate(run, num_steps * num_envs, repeats)


def anytrading_rate(window, num_steps, repeats):
    try:
        import gymnasium as gym
        import gym_anytrading  # noqa: F401  (registers stocks-v0)
        from gym_anytrading.datasets import STOCKS_GOOGL
    except ImportError:
        return None
    env = gym.make("stocks-v0", window_size=window,  # its GOOGL data, the whole series
                   frame_bound=(window, len(STOCKS_GOOGL))).unwrapped
    env.reset(seed=0)
    actions = np.random.default_rng(0).integers(0, 2, num_steps).tolist()

    def run():
        for action in actions:
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()
    return best_rate(run, num_steps, repeats)


def memory_per_row(market, window):
    """Bytes per market row: the MarketData arrays with its features (one copy: every env on
    the market reads the features in place), and what each TradingEnv adds (its returns)."""
    stored = sum(getattr(market, name).nbytes for name in
                 ("timestamps", "open", "high", "low", "close", "volume", "features"))
    env = TradingEnv(market, window=window)
    assert np.shares_memory(env.setup.features, market.features)
    per_env = env.setup.step_returns.nbytes
    rows = len(market)
    vector = TradingVectorEnv(market, num_envs=1, window=window)
    return stored / rows, per_env / rows, vector._recent.nbytes


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", default=str(DEFAULT_CSV),
                        help="market CSV (default: ../shared/data/STOCKS_GOOGL.csv; a synthetic "
                             "4096-bar OU market when absent)")
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--single_steps", type=int, default=50_000)
    parser.add_argument("--vector_env_steps", type=int, default=256_000,
                        help="env steps per timed vector run (200 to 2,000 batched steps)")
    args = parser.parse_args()

    if pathlib.Path(args.csv).exists():
        market = load_csv(args.csv)
    else:
        market = synthetic_market("ou", num_steps=4096, seed=0)
    print(f"market: {market.source} ({len(market)} rows), window {args.window}, "
          f"best of {args.repeats} runs")
    print(f"{'environment':<34}{'env steps/s':>14}{'baseline steps/s':>18}{'ratio':>8}")

    def row(name, rate, baseline=None):
        base = f"{baseline:>18,.0f}{rate / baseline:>8.2f}" if baseline else f"{'-':>18}{'-':>8}"
        print(f"{name:<34}{rate:>14,.0f}{base}", flush=True)

    anytrading = anytrading_rate(args.window, args.single_steps, args.repeats)
    single = single_env_rate(market, args.window, args.single_steps, args.repeats)
    row("TradingEnv (train)", single, anytrading)
    row("TradingEnv (eval)", single_env_rate(market, args.window, args.single_steps,
                                             args.repeats, mode="eval"), anytrading)
    if anytrading is None:
        print("  (gym_anytrading not importable: no stocks-v0 baseline)")
    else:
        row("gym_anytrading stocks-v0", anytrading)
    for num_envs in BATCH_SIZES:
        num_steps = min(2_000, max(200, args.vector_env_steps // num_envs))
        vector = vector_env_rate(market, args.window, num_envs, num_steps, args.repeats)
        bare = bare_numpy_rate(market, args.window, num_envs, num_steps, args.repeats)
        row(f"TradingVectorEnv B={num_envs}", vector, bare)
    print("baseline: stocks-v0 (unwrapped, same window) for TradingEnv; a bare numpy step of "
          "the same accounting for TradingVectorEnv")
    stored, per_env, vector_per_env = memory_per_row(market, args.window)
    print(f"memory per market row: {stored:.0f} B MarketData with its features (read in place "
          f"by every env on it) + {per_env:.0f} B per TradingEnv (its returns) "
          f"(TradingVectorEnv adds {vector_per_env:,} B per env, independent of rows)")


if __name__ == "__main__":
    main()
