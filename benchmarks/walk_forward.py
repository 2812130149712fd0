"""Walk-forward evaluation: the agent(s) over K folds x S seeds (launch/apex.py subprocesses,
`--folds=K --fold=k`: one run per seed, or with --launch_type=anakin one run of all seeds per
fold) and every practitioner baseline on the same folds, costs and positions.
Per fold and chained (the test periods end to end, per instrument): Sharpe, return, PSR vs 0
and vs buy-and-hold, DSR; a chained-equity PNG per instrument; one line per agent and
instrument saying whether its edge is distinguishable from luck.

    python benchmarks/walk_forward.py --data=../shared/data --folds=5 --seeds=0,1,2,3,4
    python benchmarks/walk_forward.py --data=synthetic:ou --folds=5   # the control (edge real)
    python benchmarks/walk_forward.py --data=../shared/data --launch_type=anakin --seconds=30
    python benchmarks/walk_forward.py --data=prices.csv --folds=2 --seeds=0 --seconds=10  # tiny

A synthetic process is walked through one path of --synthetic_steps bars (seed
--market_seed), written as a CSV in --out, so every seed and fold sees the same market.
Per fold, the agent's seed with the best validation Sharpe is the one tested into the
"agent" record; its DSR counts the trials that selection chose among: seeds x validation
evaluations (the largest count of any fold), with the variance of all their per-period
validation Sharpes. Rules chosen on training (momentum, crossover) count their grid.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np
from absl import app, flags

from benchmarks import runs

FLAGS = flags.FLAGS
flags.DEFINE_list("agents", ["apex_dqn"], "Agents to run (names in agents/registry.py).")
flags.DEFINE_string("data", "synthetic:ou", "A CSV, a folder of CSVs, a glob, or synthetic:<kind> "
                    "(one path of --synthetic_steps bars, written as a CSV).")
flags.DEFINE_integer("synthetic_steps", 12000, "Bars of the synthetic path.")
flags.DEFINE_integer("market_seed", 0, "Seed of the synthetic path.")
flags.DEFINE_integer("folds", 5, "Walk-forward folds K.")
flags.DEFINE_list("seeds", ["0", "1", "2", "3", "4"], "Agent seeds S (each fold trains each).")
flags.DEFINE_float("seconds", 60.0, "apex.py --max_seconds of each (fold, seed) run.")
flags.DEFINE_string("launch_type", None, "apex.py --lp_launch_type (default: apex.py's).")
flags.DEFINE_integer("fold_test_bars", 0, "apex.py --fold_test_bars (0: its default).")
flags.DEFINE_integer("fold_validation_bars", 0, "apex.py --fold_validation_bars (0: its default).")
flags.DEFINE_integer("fold_train_bars", 0, "apex.py --fold_train_bars (0: expanding window).")
flags.DEFINE_integer("embargo", -1, "apex.py --embargo (-1: the agent's target horizon).")
flags.DEFINE_list("apex_flags", [], "More apex.py flags, e.g. --apex_flags=--window=8.")
flags.DEFINE_float("level", 0.95, "PSR / DSR level for the verdicts.")
flags.DEFINE_integer("baseline_seed", 0, "Seed of the random baseline.")
flags.DEFINE_string("out", None, "Output folder (default: benchmarks/out/walk_forward_<time>).")


def prepare_data(out: pathlib.Path) -> str:
    """--data, or the CSV of the synthetic path it names."""
    if not FLAGS.data.startswith("synthetic"):
        return FLAGS.data
    from environments import synthetic_market

    kind = FLAGS.data.partition(":")[2] or "ou"
    market = synthetic_market(kind=kind, num_steps=FLAGS.synthetic_steps, seed=FLAGS.market_seed)
    path = out / f"synthetic_{kind}_seed{FLAGS.market_seed}_{FLAGS.synthetic_steps}.csv"
    with open(path, "w") as file:
        file.write("date,open,high,low,close,volume\n")
        for i in range(len(market)):
            file.write(f"{str(market.timestamps[i])[:10]},{market.open[i]!r},{market.high[i]!r},"
                       f"{market.low[i]!r},{market.close[i]!r},{market.volume[i]!r}\n")
    return str(path)


def run_fold(out: pathlib.Path, data: str, agent: str, fold: int,
             seeds: list[int]) -> list[SeedRun]:
    """Trains fold `fold` on every seed: one apex.py run per seed, or one anakin run of all
    seeds (--num_seeds); returns each seed's selection."""
    apex_flags = [f"--agent={agent}", f"--data={data}", f"--folds={FLAGS.folds}", f"--fold={fold}",
                  f"--max_seconds={FLAGS.seconds}", f"--embargo={FLAGS.embargo}",
                  f"--fold_test_bars={FLAGS.fold_test_bars}",
                  f"--fold_validation_bars={FLAGS.fold_validation_bars}",
                  f"--fold_train_bars={FLAGS.fold_train_bars}", *FLAGS.apex_flags]
    if FLAGS.launch_type:
        apex_flags.append(f"--lp_launch_type={FLAGS.launch_type}")
    timeout_s = FLAGS.seconds + 600
    if FLAGS.launch_type == "anakin":
        run = runs.run_apex(out / agent / f"fold{fold}", [
            *apex_flags, f"--seed={seeds[0]}", f"--num_seeds={len(seeds)}"], timeout_s)
        return [SeedRun.of(run, s, len(seeds)) for s in range(len(seeds))]
    return [SeedRun.of(runs.run_apex(out / agent / f"fold{fold}_seed{seed}",
                                     [*apex_flags, f"--seed={seed}"], timeout_s), 0, 1)
            for seed in seeds]


@dataclasses.dataclass
class SeedRun:
    """One seed's training of one fold: its run, where its selection is kept, its best
    validation Sharpe and every validation evaluation's Sharpe (annualized: its trials)."""

    run: runs.Run
    best_dir: pathlib.Path
    best_sharpe: float | None
    validation_sharpes: list[float]

    @classmethod
    def of(cls, run: runs.Run, index: int, num_seeds: int) -> "SeedRun":
        best = run.workdir / "checkpoints" / "best"
        if num_seeds == 1:
            return cls(run, best, run.summary["validation"].get("best_sharpe"),
                       [sharpe for _, _, sharpe in run.eval_curve()])
        # an anakin run of several seeds (launch/anakin/driver.py): best/seed_<k>, sharpe_by_seed
        sharpes = [record["evaluator/sharpe_by_seed"][index]
                   for record in run.node_records("evaluator")
                   if "evaluator/sharpe_by_seed" in record]
        return cls(run, best / f"seed_{index}",
                   run.summary["seeds"][index]["validation"].get("best_sharpe"), sharpes)

    def policy(self, env):
        """policy(obs) -> action of this seed's selected parameters (runs.greedy_policy)."""
        from agents.registry import get_builder
        from launch.run import checkpoints

        builder = get_builder(self.run.summary["agent"])
        config = builder.make_config(**self.run.summary["agent_config"])
        policy = builder.make_eval_policy(config, builder.make_environment_spec(env))
        params = checkpoints.load_best_params(str(self.best_dir))
        return lambda obs: int(np.asarray(policy(params, obs[None]))[0])


class FoldMarkets:
    """The markets of one fold as a run saw them: whole markets, eval envs of the training and
    test parts, the env settings and the annualization."""

    def __init__(self, run: runs.Run):
        from environments import EnvConfig, MarketSource, TradingEnv

        self.source = MarketSource(**run.summary["market"])
        self.env_config = EnvConfig.from_dict(run.summary["env"])
        self.periods_per_year = float(run.summary["test"]["periods_per_year"])
        self.whole = self.source.whole_markets()
        splits = self.source.load()
        self.train, self.test = splits.train, splits.test
        self.make_env = lambda market: TradingEnv.from_config(market, self.env_config)

    def names(self) -> list[str]:
        return [pathlib.Path(market.source).stem for market in self.whole]


def agent_test_episodes(seed_run: SeedRun, markets: FoldMarkets) -> list[dict]:
    """The seed's selected parameters run once on each test market of the fold."""
    from environments import run_episode

    results = []
    for market in markets.test:
        env = markets.make_env(market)
        results.append(run_episode(env, seed_run.policy(env),
                                   periods_per_year=markets.periods_per_year))
    return results


def per_period_variance(sharpes: list[float], periods_per_year: float) -> float:
    values = np.asarray(sharpes) / math.sqrt(periods_per_year)
    return float(np.var(values, ddof=1)) if len(values) > 1 else 0.0


def rule_trials(fold_results: list[dict]) -> tuple[int, float]:
    """(grid size, mean over folds of the variance of the candidates' per-period training
    Sharpes) of a rule chosen on training; (1, 0) for a rule without parameters."""
    grids = [list(result["training_sharpes"].values()) for result in fold_results]
    if not grids[0]:
        return 1, 0.0
    ppy = fold_results[0]["periods_per_year"]
    variances = [float(np.var(np.asarray(grid) / math.sqrt(ppy), ddof=1)) for grid in grids]
    return len(grids[0]), float(np.mean(variances))


def main(argv):
    del argv
    from environments.evaluation.chaining import chain, chained_report, plot_chained
    from environments.evaluation.rules import baselines
    from environments.evaluation.significance import verdict

    out = pathlib.Path(FLAGS.out or pathlib.Path(__file__).parent / "out" /
                       f"walk_forward_{time.strftime('%Y%m%d_%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    data = prepare_data(out)
    seeds = [int(seed) for seed in FLAGS.seeds]
    if FLAGS.launch_type == "anakin" and seeds != list(range(seeds[0], seeds[0] + len(seeds))):
        raise app.UsageError(f"--seeds={','.join(FLAGS.seeds)}: an anakin run trains the seeds "
                             "s, s+1, ..., s+S-1 at once; give consecutive seeds")
    oracle = FLAGS.data.startswith("synthetic") and FLAGS.data.partition(":")[2] in ("", "ou")
    start = time.monotonic()
    fold_runs = {agent: [run_fold(out, data, agent, k, seeds) for k in range(FLAGS.folds)]
                 for agent in FLAGS.agents}  # [K][S] SeedRun per agent
    train_seconds = time.monotonic() - start
    fold_markets = [FoldMarkets(seed_runs[0].run) for seed_runs in fold_runs[FLAGS.agents[0]]]
    names = fold_markets[0].names()
    ppy = fold_markets[0].periods_per_year
    # records[policy][k][m]: fold k's test result on market m
    records: dict[str, list[list[dict]]] = {}
    trials: dict[str, tuple[int, float]] = {}
    for agent, per_fold in fold_runs.items():
        episodes = [[agent_test_episodes(seed_run, fm) for seed_run in seed_runs]
                    for seed_runs, fm in zip(per_fold, fold_markets)]  # [K][S][M]
        chosen = [max(range(len(seeds)), key=lambda s, seed_runs=seed_runs: (
            -math.inf if seed_runs[s].best_sharpe is None else seed_runs[s].best_sharpe, -s))
            for seed_runs in per_fold]  # [K]: the seed selected on validation
        records[agent] = [episodes[k][chosen[k]] for k in range(FLAGS.folds)]
        trials[agent] = (
            max(sum(len(r.validation_sharpes) for r in seed_runs) for seed_runs in per_fold),
            per_period_variance([x for seed_runs in per_fold for r in seed_runs
                                 for x in r.validation_sharpes], ppy))
        for s, seed in enumerate(seeds):
            own = [per_fold[k][s] for k in range(FLAGS.folds)]
            records[f"{agent} seed {seed}"] = [episodes[k][s] for k in range(FLAGS.folds)]
            trials[f"{agent} seed {seed}"] = (
                max(len(r.validation_sharpes) for r in own),
                per_period_variance([x for r in own for x in r.validation_sharpes], ppy))
    rule_results = [[baselines(fm.make_env(fm.train[m]), fm.make_env(fm.test[m]),
                               history=fm.whole[m], seed=FLAGS.baseline_seed, oracle=oracle,
                               periods_per_year=ppy) for m in range(len(names))]
                    for fm in fold_markets]  # [K][M]{rule: result}
    rules = list(rule_results[0][0])
    for rule in rules:
        records[rule] = [[per_market[rule] for per_market in fold] for fold in rule_results]

    lines, report = [], {"data": FLAGS.data, "folds": FLAGS.folds, "seeds": seeds,
                         "seconds_per_run": FLAGS.seconds, "train_seconds": train_seconds,
                         "markets": {}}
    for m, name in enumerate(names):
        chained = {policy: chain([fold[m] for fold in per_fold])
                   for policy, per_fold in records.items()}
        hold = chained["buy_and_hold"]
        for rule in rules:  # per market: the grid's Sharpes on this market's training parts
            trials[rule] = rule_trials([fold[m][rule] for fold in rule_results])
        market_report = {policy: chained_report(c, hold, *trials[policy])
                         for policy, c in chained.items()}
        fold_bars = [fold.test for fold in fold_markets[0].source.walk_forward()[m]]
        rows = []
        for policy, result in market_report.items():
            sig = result["significance"]
            rows.append([policy, *[f["sharpe"] for f in result["folds"]],
                         result["chained"]["sharpe"], 100 * result["chained"]["total_return"],
                         100 * result["chained"]["max_drawdown"], sig["psr_vs_zero"],
                         sig["psr_vs_benchmark"], f"{sig['dsr']:.2f} ({sig['num_trials']})"])
        stamps = fold_markets[0].whole[m].timestamps
        span = f"{str(stamps[fold_bars[0][0]])[:10]} to {str(stamps[fold_bars[-1][1]])[:10]}"
        title = (f"\n{name}: {FLAGS.folds} folds tested {span} (bars {fold_bars[0][0]}.."
                 f"{fold_bars[-1][1]}, {fold_bars[0][1] - fold_bars[0][0]} per fold), seeds "
                 f"{seeds}, {FLAGS.seconds:g} s per run; Sharpe annualized at {ppy:g} periods "
                 "per year")
        print(title)
        table = runs.print_table(["policy", *[f"fold {k}" for k in range(FLAGS.folds)],
                                  "chained Sharpe", "return %", "max DD %", "PSR vs 0",
                                  "PSR vs B&H", "DSR (trials)"], rows)
        verdicts = []
        for agent in FLAGS.agents:
            sharpe = {p: market_report[p]["chained"]["sharpe"] for p in market_report}
            best = max((p for p in rules if p != "ou_mean_reversion"), key=sharpe.get)
            ahead = "ahead of" if sharpe[agent] > sharpe[best] else "NOT ahead of"
            luck = verdict(market_report[agent]["significance"], FLAGS.level)
            verdicts.append(f"{agent} on {name}: {luck}; {ahead} every baseline but the oracle "
                            f"(best: {best}, Sharpe {sharpe[best]:.2f})")
        for line in verdicts:
            print(line)
        plot = plot_chained(out / f"chained_equity_{name}.png",
                            {p: chained[p] for p in (*FLAGS.agents, "buy_and_hold", "momentum",
                                                     "ma_crossover", "ou_mean_reversion")
                             if p in chained}, title=f"Chained out-of-sample equity on {name}")
        print("plot:", plot)
        lines += [title, table, *verdicts, f"plot: {plot}"]
        report["markets"][name] = market_report
    summary = (f"{len(FLAGS.agents)} agent(s) x {FLAGS.folds} folds x {len(seeds)} seeds trained "
               f"in {train_seconds:.0f} s (launch type {FLAGS.launch_type or 'apex.py default'}; "
               f"{time.strftime('%Y-%m-%d')})")
    print(summary)
    (out / "walk_forward.md").write_text("\n".join([*lines, summary]) + "\n")
    (out / "walk_forward.json").write_text(json.dumps(report, indent=2, default=float))
    print("results:", out / "walk_forward.md")


if __name__ == "__main__":
    app.run(main)
