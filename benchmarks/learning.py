"""Does the agent learn? Train with `launch/apex.py` at its defaults (local_mp, 2 actors, the
small preset) for each seed; the run selects its parameters on validation and tests them
once. Next to that test result, on the same test markets: buy-and-hold, a uniformly random
policy and (on the OU process) a mean-reversion rule that knows the generator's parameters.
Every figure is the median over the test markets of a seed; the verdicts use the medians
over seeds. Saves validation/test learning curves and equity curves as PNGs.

    python benchmarks/learning.py                  # OU process, seeds 1000-1004, apex.py's defaults
    python benchmarks/learning.py --agent=apex_dqn,impala   # both agents, side by side
    python benchmarks/learning.py --data=../shared/data/STOCKS_GOOGL.csv --seeds=0
    python benchmarks/learning.py --lp_launch_type=anakin --seconds=60   # one program a seed

A seed is an agent's seed and, on a synthetic process, its market draw (apex.py's --seed): each
seed trains, selects and tests on its own train/validation/test paths, under every launch type
(under anakin: one program per seed, as a --num_seeds program trains all its seeds on the
market of its first seed). Reported figures use market seeds >= 1000 (the default), which no
tuning tool draws (benchmarks/compare.py refuses them; docs/results.md, "Protocol"); a seed
below 1000 is a tuning market, and the results say so.

Every agent of --agent trains on the same markets (a seed fixes them) with the same budget and
the same apex.py flags (each with its own `small` preset).

This is a report step: each run's selected parameters (or flat, where the run selected flat)
are tested once, at the run's end; nothing it prints may be used to choose settings. No test
curve is logged (the learning curves are validation's).
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
flags.DEFINE_list("seeds", ["1000", "1001", "1002", "1003", "1004"], "Seeds; on a synthetic "
                  "process each seed also draws its own train/validation/test paths (>= 1000 for "
                  "reported figures).")
flags.DEFINE_float("seconds", 240.0, "Training budget of each run (apex.py's --max_seconds; its "
                   "default), one run per seed and agent.")
flags.DEFINE_string("lp_launch_type", "local_mp", "apex.py's --lp_launch_type (its default).")
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
    """Each seed's validation Sharpe against learner steps (dotted: the step selected)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4.5))
    for seed, run in seed_runs.items():
        validation = run.eval_curve("sharpe")
        line, = axis.plot([c[1] for c in validation], [c[2] for c in validation], marker=".",
                          label=f"seed {seed}")
        best = run.summary["validation"]["learner_steps"]
        if best is not None:
            axis.axvline(best, color=line.get_color(), lw=0.6, ls=":")
    axis.set_ylabel("validation Sharpe (median of markets)")
    axis.set_xlabel("learner steps (dotted: the step selected on validation)")
    axis.legend(fontsize=8)
    figure.suptitle(f"{agent}, apex.py defaults ({FLAGS.lp_launch_type}), {FLAGS.data}")
    figure.tight_layout()
    figure.savefig(curve_path, dpi=100)
    plt.close(figure)
    return curve_path


def plot_equity(out: pathlib.Path, agent_runs, seed_results) -> list[pathlib.Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from environments import EnvConfig, MarketSource, TradingEnv, flat, run_episode

    paths = []
    for seed, results in seed_results.items():
        first = next(iter(agent_runs.values()))[seed]
        source = MarketSource(**first.summary["market"])
        env_config = EnvConfig.from_dict(first.summary["env"])
        path = out / f"equity_seed{seed}.png"
        figure, axis = plt.subplots(figsize=(8, 4))
        for agent, seed_runs in agent_runs.items():
            env = TradingEnv.from_config(source.split("test")[0], env_config)
            run = seed_runs[seed]
            selected_flat = run.summary["test"].get("policy", "agent") == "flat"
            curve = flat(env) if selected_flat else run_episode(env, runs.greedy_policy(run, env))
            label = f"{agent} (selected flat)" if selected_flat else agent
            axis.plot(curve["timestamps"], curve["portfolio_values"], label=label, lw=1)
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
    """Every agent on every seed, one apex.py run each (under anakin too: a --num_seeds program
    would train all its seeds on one market)."""
    common = [f"--data={FLAGS.data}", f"--max_seconds={FLAGS.seconds}",
              f"--lp_launch_type={FLAGS.lp_launch_type}", *FLAGS.apex_flags]
    agent_runs: dict[str, dict[int, runs.Run]] = {agent: {} for agent in agents}
    for agent in agents:
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
    synthetic = FLAGS.data.startswith("synthetic")
    tuning = [seed for seed in seeds if synthetic and seed < runs.REPORT_SEEDS_START]
    start = time.monotonic()
    agent_runs = train(out, agents, seeds)  # agent -> seed -> Run
    train_seconds = time.monotonic() - start
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
            tested = (agent_runs[name][seed].summary["test"].get("policy", "agent")
                      if name in agents else None)
            rows.append([seed, name, tested, result["total_return"], result["sharpe"],
                         result["max_drawdown"], validation.get("best_sharpe"),
                         validation.get("learner_steps"),
                         agent_runs[name][seed].summary["learner_steps"] if name in agents else None])

    markets = agent_runs[agents[0]][seeds[0]].summary["test"]["num_markets"]
    draws = (f"market seeds {seeds[0]}..{seeds[-1]}, one market draw per seed" if synthetic
             else "one market, seeds draw the agents")
    heading = (f"Test markets of {FLAGS.data} (median of {markets} per seed; {draws}), "
               f"{FLAGS.seconds:g} s of training per seed and agent, apex.py defaults "
               f"(--lp_launch_type={FLAGS.lp_launch_type}); selected on validation (tested: the "
               "agent's parameters or flat):")
    print("\n" + heading)
    table = runs.print_table(["seed", "policy", "tested", "total return", "Sharpe",
                              "max drawdown", "validation Sharpe", "selected step",
                              "learner steps"], rows)
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
    verdicts.append(f"{len(agents)} agent(s) x {len(seeds)} seeds trained in {train_seconds:.0f} s "
                    f"of wall time; reported {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    if tuning:
        verdicts.append(f"NOT for reporting: market seed(s) {tuning} are tuning markets (below "
                        f"{runs.REPORT_SEEDS_START}; docs/results.md, \"Protocol\")")
    for line in verdicts:
        print(line)
    paths = plot(out, agent_runs, seed_results)
    (out / "results.md").write_text("\n\n".join([heading, table, median_table, "\n".join(verdicts)])
                                    + "\n")
    print("plots:", *map(str, paths), sep="\n  ")


if __name__ == "__main__":
    app.run(main)
