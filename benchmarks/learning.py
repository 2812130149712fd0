"""Does the agent learn? Train with `launch/apex.py` (local_mp, 2 actors) for a wall-clock
budget per seed, then evaluate the final greedy policy on the test split next to buy-and-hold,
a uniformly random policy and (on the OU market) a mean-reversion rule that knows the
generator's parameters. Saves a learning curve and the equity curves as PNGs.

    python benchmarks/learning.py                  # OU market, seeds 0 1 2, 300 s each
    python benchmarks/learning.py --data=../shared/data/STOCKS_GOOGL.csv --seeds=0

The defaults use the small-machine settings of benchmarks/runs.py.
"""

from __future__ import annotations

import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app, flags

from benchmarks import runs

FLAGS = flags.FLAGS
flags.DEFINE_string("data", "synthetic:ou", "Market: synthetic:ou or an OHLCV CSV path (apex.py's --data).")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds; on a synthetic market each seed is also its market.")
flags.DEFINE_float("seconds", 300.0, "Wall-clock training budget of each run (apex.py's --max_seconds).")
flags.DEFINE_integer("num_actors", 2, "Actor processes.")
flags.DEFINE_integer("window", runs.SMALL_MACHINE_WINDOW, "Bars in one observation (apex.py's --window).")
flags.DEFINE_integer("eval_every", 250, "Learner steps between evaluations (the learning curve).")
flags.DEFINE_string("agent_config", runs.SMALL_MACHINE_AGENT_CONFIG,
                    "apex.py's --agent_config overrides (key=value,...); see benchmarks/runs.py.")
flags.DEFINE_string("out", None, "Output folder (default: benchmarks/out/learning_<time>).")
flags.DEFINE_float("rule_threshold", 0.5, "|z| beyond which the mean-reversion rule takes a position.")

PERIODS_PER_YEAR = 252


def evaluate(run: runs.Run, seed: int) -> dict[str, dict]:
    """Final greedy policy and the references, each on a fresh eval env over the test split."""
    from environments import TradingEnv, buy_and_hold, run_episode
    from launch.nodes import MarketSource

    _, test = MarketSource(FLAGS.data, seed=seed).split()  # the market the run trained on
    def fresh_env():
        return TradingEnv(test, window=FLAGS.window, mode="eval")

    env = fresh_env()
    agent = run_episode(env, runs.greedy_policy(run, env))
    results = {
        "agent": agent,
        "buy_and_hold": buy_and_hold(fresh_env(), PERIODS_PER_YEAR),
        "random": run_episode(fresh_env(), runs.random_policy(env.action_space.n, seed)),
    }
    if FLAGS.data.startswith("synthetic:ou") or FLAGS.data == "synthetic":
        rule_env = fresh_env()
        results["mean_reversion_rule"] = run_episode(
            rule_env, runs.mean_reversion_rule(rule_env, FLAGS.rule_threshold))
    return results


def plot(out: pathlib.Path, seed_runs, seed_results) -> list[pathlib.Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve_path = out / "learning_curve.png"
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for seed, run in seed_runs.items():
        curve = run.eval_curve()
        top.plot([c[0] for c in curve], [c[2] for c in curve], marker=".", label=f"seed {seed}")
        returns = run.episode_return_curve()
        bottom.plot([r[0] for r in returns], [r[1] for r in returns], ".", ms=3, label=f"seed {seed}")
    top.set_ylabel("eval Sharpe (test split)")
    top.legend()
    bottom.set_ylabel("mean training episode return")
    bottom.set_xlabel("wall-clock seconds")
    figure.suptitle(f"Ape-X DQN, local_mp, {FLAGS.num_actors} actors, {FLAGS.data}")
    figure.tight_layout()
    figure.savefig(curve_path, dpi=100)
    plt.close(figure)

    paths = [curve_path]
    for seed, results in seed_results.items():
        path = out / f"equity_seed{seed}.png"
        figure, axis = plt.subplots(figsize=(8, 4))
        for name, result in results.items():
            axis.plot(result["timestamps"], result["portfolio_values"], label=name, lw=1)
        axis.set_ylabel("portfolio value")
        axis.set_title(f"Test split equity, seed {seed} ({FLAGS.data})")
        axis.legend()
        figure.autofmt_xdate()
        figure.tight_layout()
        figure.savefig(path, dpi=100)
        plt.close(figure)
        paths.append(path)
    return paths


def main(argv) -> None:
    del argv
    out = pathlib.Path(FLAGS.out or runs.REPO_ROOT / "benchmarks" / "out" /
                       f"learning_{time.strftime('%Y%m%d_%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    seed_runs, seed_results, rows = {}, {}, []
    for seed in map(int, FLAGS.seeds):
        flags_ = ["--lp_launch_type=local_mp", f"--num_actors={FLAGS.num_actors}",
                  f"--data={FLAGS.data}", f"--window={FLAGS.window}", f"--seed={seed}", f"--max_seconds={FLAGS.seconds}",
                  f"--eval_every={FLAGS.eval_every}"]
        if FLAGS.agent_config:
            flags_.append(f"--agent_config={FLAGS.agent_config}")
        run = runs.run_apex(out / f"seed{seed}", flags_, timeout_s=FLAGS.seconds + 300)
        results = evaluate(run, seed)
        seed_runs[seed], seed_results[seed] = run, results
        for name, result in results.items():
            rows.append([seed, name, result["total_return"], result["sharpe"],
                         result["max_drawdown"], run.summary["learner_steps"] if name == "agent" else None])

    print(f"\nTest split of {FLAGS.data}, {FLAGS.seconds:g} s of training per seed, "
          f"{FLAGS.num_actors} actors (local_mp):")
    table = runs.print_table(["seed", "policy", "total return", "Sharpe", "max drawdown",
                              "learner steps"], rows)
    names = list(next(iter(seed_results.values())))
    metrics = ("total_return", "sharpe", "max_drawdown")
    median = {name: {metric: statistics.median(r[name][metric] for r in seed_results.values())
                     for metric in metrics} for name in names}
    print("\nMedian over seeds:")
    median_table = runs.print_table(["policy", "total return", "Sharpe", "max drawdown"],
                                    [[name, *median[name].values()] for name in names])
    verdicts = []
    if "mean_reversion_rule" in names:
        agent, rule = median["agent"]["sharpe"], median["mean_reversion_rule"]["sharpe"]
        best_other = max(median[name]["sharpe"] for name in ("buy_and_hold", "random"))
        verdicts.append(f"agent / rule Sharpe (medians): {agent / rule:.2f} (target >= 0.70): "
                        f"{'met' if agent >= 0.7 * rule else 'NOT met'}")
        verdicts.append("agent above buy-and-hold and random (medians): "
                        f"{'yes' if agent > best_other else 'NO'}")
    for line in verdicts:
        print(line)
    paths = plot(out, seed_runs, seed_results)
    (out / "results.md").write_text(table + "\n\n" + median_table + "\n\n" + "\n".join(verdicts) + "\n")
    print("plots:", *map(str, paths), sep="\n  ")


if __name__ == "__main__":
    app.run(main)
