"""The scales behind issue 30 (docs/do_no_harm.md), read from finished one-seed apex_dqn runs on
a CSV market: what a bar's return, a trade's cost and the variance penalty weigh in the agent's
reward units; the features' scale on training; and, with the parameters the run kept, the gap
Q(trade) - Q(flat) against its spread over the validation bars, and where the greedy walk's
validation P&L goes (direction against costs). Reads validation only.

    python benchmarks/do_no_harm_scales.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import json
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")  # as benchmarks/runs.py

import numpy as np

def scales(workdir: pathlib.Path) -> dict:
    import jax
    import jax.numpy as jnp

    from agents.registry import get_builder
    from environments import FEATURE_NAMES, NUM_FEATURES, EnvConfig, MarketSource, TradingEnv
    from environments.evaluation.metrics import run_episode
    from launch.run import checkpoints

    summary = json.loads((workdir / "summary.json").read_text())
    if summary["agent"] != "apex_dqn":
        raise ValueError(f"{workdir}: a Q-value agent's run (apex_dqn) is needed, got "
                         f"{summary['agent']}")
    splits = MarketSource(**summary["market"]).load()
    env_config = EnvConfig.from_dict(summary["env"])
    scale = float(summary["agent_config"]["reward_scale"])  # as the run resolved it
    kappa = env_config.risk_aversion
    returns = np.concatenate([np.diff(m.close) / m.close[:-1] for m in splits.train])  # [T]
    sigma = float(returns.std())
    features = np.concatenate([m.features for m in splits.train])  # [T, F]
    result = {
        "workdir": str(workdir), "data": summary["data"], "reward_scale": scale, "kappa": kappa,
        "bar_volatility": sigma,
        "unit_reward_std": scale * sigma,  # one bar's reward of a unit position, agent units
        "unit_trade_cost": scale * env_config.trade_cost_rate,
        "trade_cost_in_bar_volatilities": env_config.trade_cost_rate / sigma,
        "borrow_in_bar_volatilities": env_config.borrow_rate / sigma,
        "variance_penalty_per_bar": scale * kappa / 2 * float(np.mean(returns ** 2)),
        "discount": float(summary["agent_config"]["discount"]),
        "features": {name: (float(features[:, i].mean()), float(features[:, i].std()))
                     for i, name in enumerate(FEATURE_NAMES)},
    }
    builder = get_builder("apex_dqn")
    config = builder.make_config(**summary["agent_config"])
    (validation,) = splits.validation
    env = TradingEnv.from_config(validation, env_config)
    spec = builder.make_environment_spec(env)
    apply = jax.jit(builder.make_networks(config, spec).apply)
    params = checkpoints.load_best_params(str(workdir / "checkpoints" / "best"))
    levels = np.asarray(env_config.positions)
    flat = int(np.argmin(np.abs(levels)))
    gaps = []  # [T, K]: Q(a) - Q(flat) with flat held over the window

    def policy(obs: np.ndarray) -> int:
        held_flat = obs.copy()
        held_flat[:, NUM_FEATURES] = 0.0
        both = np.asarray(apply(params, jnp.asarray(np.stack([obs, held_flat]))))  # [2, K]
        gaps.append(both[1] - both[1, flat])
        return int(np.argmax(both[0]))

    walk = run_episode(env, policy, periods_per_year=float(summary["test"]["periods_per_year"]))
    gaps = np.asarray(gaps)
    others = [k for k in range(len(levels)) if k != flat]
    positions = np.asarray(walk["positions"])  # [T] held after each step
    step_returns = np.diff(np.asarray(walk["portfolio_values"])) / np.asarray(
        walk["portfolio_values"][:-1])
    costs = np.asarray(walk["costs"]) / np.asarray(walk["portfolio_values"][:-1])
    result.update({
        "validation_sharpe": walk["sharpe"], "validation_turnover": walk["turnover"],
        "q_gap_mean": {f"{levels[k]:+g}": float(gaps[:, k].mean()) for k in others},
        "q_gap_std": {f"{levels[k]:+g}": float(gaps[:, k].std()) for k in others},
        "bars_where_a_trade_beats_flat": float(np.mean(gaps[:, others].max(axis=1) > 0)),
        "time_long": float(np.mean(positions > 0)), "time_short": float(np.mean(positions < 0)),
        "net_per_bar": float(step_returns.mean()), "cost_per_bar": float(costs.mean()),
    })
    return result


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit(__doc__)
    for path in argv:
        r = scales(pathlib.Path(path))
        print(f"== {r['workdir']} ({r['data']})")
        print(f"  bar volatility {r['bar_volatility']:.2e}; reward_scale {r['reward_scale']:.0f}, "
              f"kappa {r['kappa']:.1f}")
        print(f"  agent units: a unit position's reward std {r['unit_reward_std']:.3f} a bar; "
              f"trading one unit costs {r['unit_trade_cost']:.3f} "
              f"({r['trade_cost_in_bar_volatilities']:.2f} bar volatilities; borrow "
              f"{r['borrow_in_bar_volatilities']:.3f} a bar short); variance penalty of holding "
              f"it {r['variance_penalty_per_bar']:.4f} a bar (discount {r['discount']:g}: held, it "
              f"counts for ~{1 / (1 - r['discount']):.0f} bars)")
        print("  features (train mean/std): " + ", ".join(
            f"{name} {mean:+.3f}/{std:.3f}" for name, (mean, std) in r["features"].items()))
        print("  validation, kept parameters: Q(a) - Q(flat) while flat: " + ", ".join(
            f"{a} {r['q_gap_mean'][a]:+.3f} +- {r['q_gap_std'][a]:.3f}" for a in r["q_gap_mean"])
            + f"; bars where a trade beats flat {r['bars_where_a_trade_beats_flat']:.2f}")
        print(f"  greedy walk: Sharpe {r['validation_sharpe']:+.2f}, turnover "
              f"{r['validation_turnover']:.3f}, long {r['time_long']:.2f} short "
              f"{r['time_short']:.2f}; per bar net {r['net_per_bar']:+.2e}, costs "
              f"{r['cost_per_bar']:.2e}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
