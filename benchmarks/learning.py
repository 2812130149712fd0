"""Does the agent learn? Train with `launch/apex.py` at its defaults (local_mp, 2 actors, the
small preset) for each seed; the run selects its parameters on validation and tests them
once. Next to that test result, on the same test markets: buy-and-hold, a uniformly random
policy and (on the OU process) a mean-reversion rule that knows the generator's parameters.
Every figure is the median over the test markets of a seed; the verdicts use the medians
over seeds. Saves validation/test learning curves and equity curves as PNGs.

    python benchmarks/learning.py                  # OU process, seeds 0-4, apex.py's defaults
    python benchmarks/learning.py --agent=apex_dqn,impala   # both agents, side by side
    python benchmarks/learning.py --data=../shared/data/STOCKS_GOOGL.csv --seeds=0
    python benchmarks/learning.py --lp_launch_type=anakin --seconds=60   # the 5 seeds at once

Under --lp_launch_type=anakin the seeds of an agent train as one `--num_seeds` program (their
own parameters, replay, envs and exploration, each selected on its own validation), all on
the market of the first seed (one --seed draws the market): --seeds must then be consecutive.

Every agent of --agent trains on the same markets (a seed fixes them) with the same budget and
the same apex.py flags (each with its own `small` preset).

Test curves come from --report_test_curve (logged for the plots only; the run's selection
reads validation alone).
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
flags.DEFINE_list("agent", ["apex_dqn"], "Agents to train (names in agents/registry.py), each "
                  "on every seed.")
flags.DEFINE_string("data", "synthetic:ou", "Market: synthetic:ou or an OHLCV CSV path (apex.py's --data).")
flags.DEFINE_list("seeds", ["0", "1", "2", "3", "4"], "Seeds; on a synthetic process each seed "
                  "also draws its own train/validation/test paths.")
flags.DEFINE_float("seconds", 240.0, "Training budget of each run (apex.py's --max_seconds; its "
                   "default); under anakin one run trains all the seeds of an agent.")
flags.DEFINE_string("lp_launch_type", "local_mp", "apex.py's --lp_launch_type (its default); "
                    "anakin: the seeds of an agent as one --num_seeds program.")
flags.DEFINE_list("apex_flags", [], "More apex.py flags, e.g. --apex_flags=--num_actors=4,--window=8 "
                  "(the defaults are apex.py's own).")
flags.DEFINE_string("out", None, "Output folder (default: benchmarks/out/learning_<time>).")
flags.DEFINE_float("rule_threshold", 0.5, "|z| beyond which the mean-reversion rule takes a position.")
flags.DEFINE_float("target", 0.8, "Target of the agent's median test Sharpe as a fraction of the rule's.")

METRICS = ("total_return", "sharpe", "max_drawdown")


def evaluate_references(run: runs.Run, seed: int) -> dict[str, dict]:
    """Median test metrics of the references, each run on a fresh eval env of every test
    market of `run` (every agent's run of a seed has the same markets)."""
    from environments import EnvConfig, MarketSource, TradingEnv, median_metrics, run_episode
    from environments.evaluation.metrics import buy_and_hold

    source = MarketSource(**run.summary["market"])
    env_config = EnvConfig.from_dict(run.summary["env"])
    periods = run.summary["test"]["periods_per_year"]

    def fresh_envs():
        return [TradingEnv.from_config(market, env_config) for market in source.split("test")]

    references = {
        "buy_and_hold": [buy_and_hold(env, periods) for env in fresh_envs()],
        "random": [run_episode(env, runs.random_policy(env.action_space.n, seed + i),
                               periods_per_year=periods) for i, env in enumerate(fresh_envs())],
    }
    if source.is_synthetic and source.synthetic_kind == "ou":
        references["mean_reversion_rule"] = [
            run_episode(env, runs.mean_reversion_rule(env, FLAGS.rule_threshold),
                        periods_per_year=periods) for env in fresh_envs()]
    results = {name: median_metrics(per_market) for name, per_market in references.items()}
    results["_equity"] = {name: per_market[0] for name, per_market in references.items()}
    return results


def plot(out: pathlib.Path, agent_runs, seed_results) -> list[pathlib.Path]:
    """Validation/test learning curves of each agent, and test equity curves of every seed."""
    paths = [plot_curves(out / f"learning_curves_{agent}.png", agent, seed_runs, seed_results)
             for agent, seed_runs in agent_runs.items()]
    return paths + plot_equity(out, agent_runs, seed_results)


def plot_curves(curve_path: pathlib.Path, agent: str, seed_runs, seed_results) -> pathlib.Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    for seed, run in seed_runs.items():
        validation, test = run.eval_curve("sharpe"), run.eval_curve("test_sharpe")
        line, = top.plot([c[1] for c in validation], [c[2] for c in validation], marker=".",
                         label=f"seed {seed}")
        bottom.plot([c[1] for c in test], [c[2] for c in test], marker=".", color=line.get_color(),
                    label=f"seed {seed}")
        best = run.summary["validation"]["learner_steps"]
        if best is not None:
            top.axvline(best, color=line.get_color(), lw=0.6, ls=":")
            bottom.axvline(best, color=line.get_color(), lw=0.6, ls=":")
        rule = seed_results[seed].get("mean_reversion_rule")
        if rule:
            bottom.axhline(rule["sharpe"], color=line.get_color(), lw=0.6, ls="--")
    top.set_ylabel("validation Sharpe (median of markets)")
    bottom.set_ylabel("test Sharpe (reported only)")
    bottom.set_xlabel("learner steps (dotted: the step selected on validation; dashed: the rule on test)")
    top.legend(fontsize=8)
    figure.suptitle(f"{agent}, apex.py defaults ({FLAGS.lp_launch_type}), {FLAGS.data}")
    figure.tight_layout()
    figure.savefig(curve_path, dpi=100)
    plt.close(figure)
    return curve_path


def plot_equity(out: pathlib.Path, agent_runs, seed_results) -> list[pathlib.Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from environments import EnvConfig, MarketSource, TradingEnv, run_episode

    paths = []
    for seed, results in seed_results.items():
        first = next(iter(agent_runs.values()))[seed]
        source = MarketSource(**first.summary["market"])
        env_config = EnvConfig.from_dict(first.summary["env"])
        path = out / f"equity_seed{seed}.png"
        figure, axis = plt.subplots(figsize=(8, 4))
        for agent, seed_runs in agent_runs.items():
            env = TradingEnv.from_config(source.split("test")[0], env_config)
            curve = run_episode(env, runs.greedy_policy(seed_runs[seed], env))
            axis.plot(curve["timestamps"], curve["portfolio_values"], label=agent, lw=1)
        for name, result in results["_equity"].items():
            axis.plot(result["timestamps"], result["portfolio_values"], label=name, lw=1)
        axis.set_yscale("log")  # years of compounding: a line per constant growth rate
        axis.set_ylabel("portfolio value (log scale)")
        axis.set_title(f"Test equity, seed {seed}, first test market ({source.split('test')[0].source})",
                       fontsize=9)
        axis.legend()
        figure.autofmt_xdate()
        figure.tight_layout()
        figure.savefig(path, dpi=100)
        plt.close(figure)
        paths.append(path)
    return paths


def train(out: pathlib.Path, agents: list[str], seeds: list[int]) -> dict[str, dict[int, runs.Run]]:
    """Every agent on every seed: one apex.py run per seed, or under anakin one --num_seeds
    run per agent (seen per seed through Run.for_seed)."""
    anakin = FLAGS.lp_launch_type == "anakin"
    if anakin and seeds != list(range(seeds[0], seeds[0] + len(seeds))):
        raise app.UsageError(f"--seeds={','.join(map(str, seeds))}: under anakin the seeds are "
                             "--seed, --seed+1, ... of one program: give consecutive seeds")
    common = [f"--data={FLAGS.data}", f"--max_seconds={FLAGS.seconds}", "--report_test_curve",
              f"--lp_launch_type={FLAGS.lp_launch_type}", *FLAGS.apex_flags]
    agent_runs: dict[str, dict[int, runs.Run]] = {agent: {} for agent in agents}
    for agent in agents:
        if anakin:
            run = runs.run_apex(out / f"{agent}_anakin", [*common, f"--agent={agent}",
                                                          f"--seed={seeds[0]}", f"--num_seeds={len(seeds)}"],
                                timeout_s=FLAGS.seconds + 300)
            agent_runs[agent] = {seed: run.for_seed(k) for k, seed in enumerate(seeds)}
            continue
        for seed in seeds:
            workdir = out / (f"seed{seed}" if agents == ["apex_dqn"] else f"{agent}_seed{seed}")
            agent_runs[agent][seed] = runs.run_apex(workdir, [*common, f"--agent={agent}", f"--seed={seed}"],
                                                    timeout_s=FLAGS.seconds + 300)
    return agent_runs


def main(argv) -> None:
    del argv
    out = pathlib.Path(FLAGS.out or runs.REPO_ROOT / "benchmarks" / "out" /
                       f"learning_{time.strftime('%Y%m%d_%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    agents = list(FLAGS.agent)
    seeds = [int(seed) for seed in FLAGS.seeds]
    agent_runs = train(out, agents, seeds)  # agent -> seed -> Run
    seed_results, rows = {}, []
    for seed in seeds:
        results = {agent: {key: agent_runs[agent][seed].summary["test"][key] for key in METRICS}
                   for agent in agents}
        results.update(evaluate_references(agent_runs[agents[0]][seed], seed))
        seed_results[seed] = results
        for name, result in results.items():
            if name.startswith("_"):
                continue
            validation = agent_runs[name][seed].summary["validation"] if name in agents else {}
            rows.append([seed, name, result["total_return"], result["sharpe"], result["max_drawdown"],
                         validation.get("best_sharpe"), validation.get("learner_steps"),
                         agent_runs[name][seed].summary["learner_steps"] if name in agents else None])

    markets = agent_runs[agents[0]][seeds[0]].summary["test"]["num_markets"]
    budget = ("per agent, all seeds in one anakin program" if FLAGS.lp_launch_type == "anakin"
              else "per seed and agent")
    print(f"\nTest markets of {FLAGS.data} (median of {markets} per seed), {FLAGS.seconds:g} s of "
          f"training {budget}, apex.py defaults (--lp_launch_type={FLAGS.lp_launch_type}); "
          "parameters selected on validation:")
    table = runs.print_table(["seed", "policy", "total return", "Sharpe", "max drawdown",
                              "validation Sharpe", "selected step", "learner steps"], rows)
    names = [name for name in next(iter(seed_results.values())) if not name.startswith("_")]
    median = {name: {metric: statistics.median(r[name][metric] for r in seed_results.values())
                     for metric in METRICS} for name in names}
    print("\nMedian over seeds:")
    median_table = runs.print_table(["policy", "total return", "Sharpe", "max drawdown"],
                                    [[name, *median[name].values()] for name in names])
    verdicts = []
    for agent in agents:
        beats = [r[agent]["sharpe"] > max(r["buy_and_hold"]["sharpe"], r["random"]["sharpe"])
                 for r in seed_results.values()]
        verdicts.append(f"{agent} above buy-and-hold and random on every seed: "
                        f"{'yes' if all(beats) else 'NO'} ({sum(beats)} of {len(beats)})")
        if "mean_reversion_rule" in names:
            sharpe, rule = median[agent]["sharpe"], median["mean_reversion_rule"]["sharpe"]
            verdicts.append(f"{agent} / rule Sharpe (medians over seeds): {sharpe / rule:.2f} (target >= "
                            f"{FLAGS.target:.2f}): {'met' if sharpe >= FLAGS.target * rule else 'NOT met'}")
    for line in verdicts:
        print(line)
    paths = plot(out, agent_runs, seed_results)
    (out / "results.md").write_text(table + "\n\n" + median_table + "\n\n" + "\n".join(verdicts) + "\n")
    print("plots:", *map(str, paths), sep="\n  ")


if __name__ == "__main__":
    app.run(main)
