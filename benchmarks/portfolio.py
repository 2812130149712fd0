"""Does the agent learn a portfolio? Ape-X DQN (one action branch per instrument, the
cross-asset torso; or with --agent=impala, IMPALA's product of per-instrument categoricals on the
same torso) trained under anakin on the synthetic panel (environments/data/
synthetic_panel.py: a market factor plus per-instrument mean reversion, with an oracle), one
`launch/apex.py` run per market seed with a fixed learner-step budget, then its test part next
to the baselines on the same bars and costs (environments/evaluation/portfolio_rules.py): the
oracle, 1/N rebalanced, the 1/N basket bought and held, time-series and cross-sectional
momentum, minimum variance fitted on the train part, and random (the median of --random_draws
seeded draws). Prints each seed, the medians over seeds and the issue's targets (#27) as
pass/fail lines.

    python benchmarks/portfolio.py                           # seeds 1000-1004, 10 instruments
    python benchmarks/portfolio.py --max_learner_steps=4000 --apex_flags=--window=4
    python benchmarks/portfolio.py --agent=impala

This is a report step (docs/results.md, "Protocol"): market seeds >= 1000, each run's selected
parameters (or flat, where the run selected flat) tested once at its end; nothing it prints may
be used to choose settings. A seed below 1000 is a tuning market, and the output says so.
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


def define_flags() -> None:
    """The command line's flags (defined when run, so that importing `baselines`, as the tests
    do, defines none beside other benchmarks' flags)."""
    flags.DEFINE_string("agent", "apex_dqn", "apex.py's --agent: apex_dqn (action branches) or "
                        "impala (a product of per-instrument categoricals).")
    flags.DEFINE_list("seeds", ["1000", "1001", "1002", "1003", "1004"], "Market seeds, one panel "
                      "draw and one apex.py run each (>= 1000 for reported figures).")
    flags.DEFINE_integer("instruments", 10, "Instruments of the synthetic panel (apex.py's "
                         "--synthetic_instruments).")
    flags.DEFINE_integer("steps", 4096, "Bars of the synthetic panel (apex.py's --synthetic_steps).")
    flags.DEFINE_integer("max_learner_steps", 20000, "Learner steps of each run (apex.py's "
                         "--max_learner_steps; --max_seconds=0), so the figures do not depend on "
                         "the machine's speed.")
    flags.DEFINE_list("apex_flags", [], "More apex.py flags, e.g. --apex_flags=--window=4 (the "
                      "defaults are apex.py's own).")
    flags.DEFINE_float("oracle_band", 0.5, "The oracle holds -sign(x_i) beyond this many stationary "
                       "standard deviations of its latent component x_i, flat inside.")
    flags.DEFINE_integer("momentum_lookback", 20, "Bars of the momentum rules' trailing return.")
    flags.DEFINE_integer("random_draws", 10, "Random policies per seed; their median Sharpe is random's.")
    flags.DEFINE_float("target", 0.8, "Target of the agent's median test Sharpe as a fraction of "
                       "the oracle's.")
    flags.DEFINE_float("seconds_target", 300.0, "Target wall time of all seeds' runs together.")
    flags.DEFINE_string("out", None, "Output folder (default: benchmarks/out/portfolio_<time>).")


BASELINES = ("oracle", "equal_weight", "basket_buy_and_hold", "ts_momentum", "xs_momentum",
             "minimum_variance", "random")


def baselines(summary: dict, seed: int, oracle_band: float = 0.5, momentum_lookback: int = 20,
              random_draws: int = 10) -> dict[str, dict]:
    """Each baseline's test metrics on the test part of the run that wrote `summary` (its
    summary.json), with the run's EnvConfig and annualization; random's Sharpe is the median of
    `random_draws` seeded draws. The momentum rules and the oracle are computed on the whole
    panel (trailing returns reach back before the test part, never past a bar) and their test
    rows taken. RuntimeError if the regenerated panel or the run's own 1/N and basket Sharpe
    (launch/run/portfolio_evaluation.py) differ from what is computed here."""
    import numpy as np

    from environments import EnvConfig, PanelSource
    from environments.data.synthetic_panel import synthetic_panel
    from environments.evaluation import portfolio_rules as rules

    where = summary.get("workdir", "summary.json")
    source = PanelSource(**summary["market"])
    if not source.is_synthetic or source.folds:
        raise ValueError(f"{where}: expected a synthetic panel with one split, got "
                         f"market={summary['market']}")
    config = EnvConfig.from_dict(summary["env"])
    periods = summary["test"]["periods_per_year"]
    splits = source.load()
    train, test = splits.train, splits.test
    panel, oracle = synthetic_panel(source.synthetic_instruments, source.synthetic_steps, source.seed)
    first = int(np.searchsorted(panel.timestamps, test.timestamps[0]))
    rows = slice(first, first + len(test))
    if not np.array_equal(panel.close[rows], test.close):  # the regenerated panel is the run's
        raise RuntimeError(f"{where}: synthetic_panel(seed={source.seed}) rows {first}.. do "
                           f"not match the run's test part {test.source}")

    def walk(levels) -> dict:
        return rules.walk_levels(test, levels, config, periods)["metrics"]

    lookback = momentum_lookback
    results = {
        "oracle": walk(oracle.levels(oracle_band)[rows]),
        "equal_weight": walk(rules.equal_weight(test)),
        "basket_buy_and_hold": rules.basket_buy_and_hold(test, config, periods)["metrics"],
        "ts_momentum": walk(rules.ts_momentum(panel, lookback)[rows]),
        "xs_momentum": walk(rules.xs_momentum(panel, lookback)[rows]),
        "minimum_variance": walk(rules.minimum_variance(test, train)),
    }
    draws = [walk(rules.random_levels(test, config, seed * 1000 + draw))
             for draw in range(random_draws)]
    results["random"] = {"sharpe": statistics.median(d["sharpe"] for d in draws)}
    # the run's own 1/N and basket (launch/run/portfolio_evaluation.py) are these walks
    for name, key in (("equal_weight", "equal_weight_sharpe"),
                      ("basket_buy_and_hold", "buy_and_hold_sharpe")):
        if abs(results[name]["sharpe"] - summary["test"][key]) > 1e-6:
            raise RuntimeError(f"{where}: {name} Sharpe {results[name]['sharpe']:.6f} here, "
                               f"{summary['test'][key]:.6f} in summary.json (test.{key})")
    return results


def train(out: pathlib.Path, seeds: list[int]) -> tuple[dict[int, runs.Run], dict[int, float]]:
    """One apex.py run per market seed (an anakin --num_seeds program would train all its seeds
    on its first seed's panel) and each run's wall time, compilation included."""
    common = ["--lp_launch_type=anakin", "--data=synthetic:panel", f"--agent={FLAGS.agent}",
              f"--synthetic_instruments={FLAGS.instruments}", f"--synthetic_steps={FLAGS.steps}",
              f"--max_learner_steps={FLAGS.max_learner_steps}", "--max_seconds=0", *FLAGS.apex_flags]
    seed_runs, seconds = {}, {}
    for seed in seeds:
        start = time.monotonic()
        seed_runs[seed] = runs.run_apex(out / f"seed{seed}", [*common, f"--seed={seed}"],
                                        timeout_s=3600)
        seconds[seed] = time.monotonic() - start
    return seed_runs, seconds


def verdicts(rows: dict[int, dict[str, dict]], seconds: float) -> list[str]:
    """The issue's targets as pass/fail lines, each a ratio measured in this run."""
    median = {name: statistics.median(r[name]["sharpe"] for r in rows.values())
              for name in ("agent", *BASELINES)}
    agent, oracle, equal = median["agent"], median["oracle"], median["equal_weight"]
    above_random = [seed for seed, r in rows.items() if r["agent"]["sharpe"] > r["random"]["sharpe"]]
    ratio = agent / oracle if oracle > 0 else float("nan")
    learned = agent >= FLAGS.target * oracle
    return [
        f"agent / oracle median test Sharpe: {agent:.2f} / {oracle:.2f} = {ratio:.2f} (target >= "
        f"{FLAGS.target:.2f}): {'PASS' if learned else 'FAIL'}",
        f"agent above 1/N (median test Sharpe {agent:.2f} vs {equal:.2f}): "
        f"{'PASS' if agent > equal else 'FAIL'}",
        f"agent above random on every seed: {len(above_random)} of {len(rows)}: "
        f"{'PASS' if len(above_random) == len(rows) else 'FAIL'}",
        f"{len(rows)} seeds under anakin in {seconds:.0f} s of wall time, compilation included "
        f"(target: the Sharpe target above met in <= {FLAGS.seconds_target:.0f} s): "
        f"{'PASS' if learned and seconds <= FLAGS.seconds_target else 'FAIL'}",
    ]


def main(argv) -> None:
    del argv
    out = pathlib.Path(FLAGS.out or runs.REPO_ROOT / "benchmarks" / "out" /
                       f"portfolio_{time.strftime('%Y%m%d_%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(seed) for seed in FLAGS.seeds]
    seed_runs, seconds = train(out, seeds)
    rows, table_rows = {}, []
    for seed in seeds:
        run = seed_runs[seed]
        test = run.summary["test"]
        rows[seed] = {"agent": test, **baselines(run.summary, seed, FLAGS.oracle_band,
                                                 FLAGS.momentum_lookback, FLAGS.random_draws)}
        validation = run.summary["validation"]
        table_rows.append([seed, test.get("policy", "agent"), test["sharpe"], test["turnover"],
                           test.get("exposure"), validation["best_sharpe"], validation["learner_steps"],
                           *(rows[seed][name]["sharpe"] for name in BASELINES), seconds[seed]])
    heading = (f"Test part of synthetic:panel ({FLAGS.instruments} instruments x {FLAGS.steps} "
               f"bars, one draw per market seed, the last 20% of bars), {FLAGS.agent} under anakin, "
               f"{FLAGS.max_learner_steps} learner steps per seed, apex.py defaults"
               f"{' + ' + ' '.join(FLAGS.apex_flags) if FLAGS.apex_flags else ''}; tested: the "
               "parameters selected on validation, or flat. Test Sharpe of the agent and of each "
               "baseline on the same bars and costs (random: the median of "
               f"{FLAGS.random_draws} draws):")
    print("\n" + heading)
    table = runs.print_table(
        ["seed", "tested", "agent", "turnover", "exposure", "validation", "selected step",
         *BASELINES, "run s"], table_rows)
    names = ("agent", *BASELINES)
    print("\nMedian over seeds (test Sharpe):")
    median_table = runs.print_table(list(names), [[statistics.median(
        r[name]["sharpe"] for r in rows.values()) for name in names]])
    lines = verdicts(rows, sum(seconds.values()))
    flat_seeds = [seed for seed in seeds if rows[seed]["agent"].get("policy") == "flat"]
    lines.append(f"selected flat on validation: {len(flat_seeds)} of {len(seeds)} seeds {flat_seeds}")
    tuning = [seed for seed in seeds if seed < runs.REPORT_SEEDS_START]
    if tuning:
        lines.append(f"NOT for reporting: market seed(s) {tuning} are tuning markets (below "
                     f"{runs.REPORT_SEEDS_START}; docs/results.md, \"Protocol\")")
    lines.append(f"reported {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    for line in lines:
        print(line)
    (out / "results.md").write_text("\n\n".join([heading, table, median_table, "\n".join(lines)]) + "\n")
    print(f"results: {out / 'results.md'}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
