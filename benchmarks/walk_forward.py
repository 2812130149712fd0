"""Walk-forward evaluation: the agent(s) over K folds x S seeds (launch/apex.py subprocesses,
`--folds=K --fold=k`: one run per seed, or with --launch_type=anakin one run of all seeds per
fold) and every practitioner baseline on the same folds, costs and positions.
Per fold and chained (the test periods end to end, per instrument): Sharpe, return, PSR vs 0,
the paired test against buy-and-hold on the same bars (Jobson-Korkie-Memmel: P(SR > B&H's)),
DSR; a chained-equity PNG per instrument; one line per agent and instrument saying whether its
edge is distinguishable from luck. This is a report step: it reads test, so nothing it prints
may be used to choose settings (benchmarks/compare.py chooses on validation; docs/results.md).

    python benchmarks/walk_forward.py --data=../shared/data --folds=5 --seeds=0,1,2,3,4
    python benchmarks/walk_forward.py --data=synthetic:ou --folds=5   # the control (edge real)
    python benchmarks/walk_forward.py --data=../shared/data --launch_type=anakin --seconds=30
    python benchmarks/walk_forward.py --data=prices.csv --folds=2 --seeds=0 --seconds=10  # tiny

A synthetic process is walked through one path of --synthetic_steps bars (seed
--market_seed, by default 1000: reported figures use market seeds >= 1000, tuning seed 0),
written as a CSV in --out, so every seed and fold sees the same market.

Every agent and baseline is walked through one fold geometry: --embargo=-1 resolves to the
largest target horizon of the --agents (Ape-X 3 bars, IMPALA 19), passed to every run, and
the runs' folds are checked to be the same. Per fold, the agent's seed with the best
validation Sharpe is the one tested into the "agent" record, or flat where that seed's run
selected flat (launch/run/selection.py); its DSR counts the trials that selection chose among
and their Sharpes' variance on that instrument (environments/evaluation/trials.py). Rules
chosen on training (momentum, crossover) count their grid.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app, flags

from benchmarks import runs
from environments.evaluation.trials import agent_trials, rule_trials, select_seeds

FLAGS = flags.FLAGS
flags.DEFINE_list("agents", ["apex_dqn"], "Agents to run (names in agents/registry.py).")
flags.DEFINE_string("data", "synthetic:ou", "A CSV, a folder of CSVs, a glob, or synthetic:<kind> "
                    "(one path of --synthetic_steps bars, written as a CSV).")
flags.DEFINE_integer("synthetic_steps", 12000, "Bars of the synthetic path.")
flags.DEFINE_integer("market_seed", 1000, "Seed of the synthetic path (>= 1000 for reported "
                     "figures: seed 0 is the tuning market).")
flags.DEFINE_integer("folds", 5, "Walk-forward folds K.")
flags.DEFINE_list("seeds", ["0", "1", "2", "3", "4"], "Agent seeds S (each fold trains each).")
flags.DEFINE_float("seconds", 60.0, "apex.py --max_seconds of each (fold, seed) run.")
flags.DEFINE_string("launch_type", None, "apex.py --lp_launch_type (default: apex.py's).")
flags.DEFINE_integer("fold_test_bars", 0, "apex.py --fold_test_bars (0: its default).")
flags.DEFINE_integer("fold_validation_bars", 0, "apex.py --fold_validation_bars (0: its default).")
flags.DEFINE_integer("fold_train_bars", 0, "apex.py --fold_train_bars (0: expanding window).")
flags.DEFINE_integer("embargo", -1, "apex.py --embargo of every run (-1: the largest target "
                     "horizon of the --agents, so they all share one fold geometry).")
flags.DEFINE_list("apex_flags", [], "More apex.py flags, e.g. --apex_flags=--window=8 (a flag "
                  "with commas in double quotes: '\"--agent_config=a=1,b=2\",--window=8').")
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


def run_fold(out: pathlib.Path, data: str, agent: str, fold: int, seeds: list[int],
             embargo: int) -> list[runs.SeedRun]:
    """Trains fold `fold` on every seed: one apex.py run per seed, or one anakin run of all
    seeds (--num_seeds); returns each seed's selection."""
    apex_flags = [f"--agent={agent}", f"--data={data}", f"--folds={FLAGS.folds}", f"--fold={fold}",
                  f"--max_seconds={FLAGS.seconds}", f"--embargo={embargo}",
                  f"--fold_test_bars={FLAGS.fold_test_bars}",
                  f"--fold_validation_bars={FLAGS.fold_validation_bars}",
                  f"--fold_train_bars={FLAGS.fold_train_bars}", *FLAGS.apex_flags]
    if FLAGS.launch_type:
        apex_flags.append(f"--lp_launch_type={FLAGS.launch_type}")
    timeout_s = FLAGS.seconds + 600
    if FLAGS.launch_type == "anakin":
        run = runs.run_apex(out / agent / f"fold{fold}", [
            *apex_flags, f"--seed={seeds[0]}", f"--num_seeds={len(seeds)}"], timeout_s)
        return [runs.SeedRun.of(run, s, len(seeds)) for s in range(len(seeds))]
    return [runs.SeedRun.of(runs.run_apex(out / agent / f"fold{fold}_seed{seed}",
                                     [*apex_flags, f"--seed={seed}"], timeout_s), 0, 1)
            for seed in seeds]


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


def test_episodes(seed_run: runs.SeedRun, markets: FoldMarkets) -> list[dict]:
    """What the seed's run selected, run once on each test market of the fold: its kept
    parameters, or flat where the run selected flat."""
    from environments import flat, run_episode

    results = []
    for market in markets.test:
        env = markets.make_env(market)
        results.append(flat(env, markets.periods_per_year) if seed_run.selected_flat else
                       run_episode(env, seed_run.policy(env),
                                   periods_per_year=markets.periods_per_year))
    return results


def selection_lines(agent: str, per_fold: list[list[runs.SeedRun]], seeds: list[int],
                    chosen: list[int]) -> list[str]:
    """One line per fold: the seed selected on validation and what it tested (agent or flat)."""
    lines = []
    for k, (seed_runs, s) in enumerate(zip(per_fold, chosen)):
        seed_run = seed_runs[s]
        best = seed_run.trials.best_sharpe
        tested = ("flat (its validation Sharpe did not beat flat's threshold "
                  f"{runs.fmt(seed_run.test.get('flat_threshold'))})" if seed_run.selected_flat
                  else "its best parameters")
        lines.append(f"{agent} fold {k}: seed {seeds[s]} selected (best validation Sharpe "
                     f"{runs.fmt(best)}); tested {tested}")
    return lines


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
    embargo = runs.fold_embargo(FLAGS.agents, FLAGS.embargo, FLAGS.folds, FLAGS.apex_flags)
    start = time.monotonic()
    fold_runs = {agent: [run_fold(out, data, agent, k, seeds, embargo) for k in range(FLAGS.folds)]
                 for agent in FLAGS.agents}  # [K][S] runs.SeedRun per agent
    train_seconds = time.monotonic() - start
    runs.check_one_geometry({agent: [[r.run for r in seed_runs] for seed_runs in per_fold]
                             for agent, per_fold in fold_runs.items()})
    fold_markets = [FoldMarkets(seed_runs[0].run) for seed_runs in fold_runs[FLAGS.agents[0]]]
    names = fold_markets[0].names()
    ppy = fold_markets[0].periods_per_year
    # records[policy][k][m]: fold k's test result on market m; trials[policy][m]: (N, V)
    records: dict[str, list[list[dict]]] = {}
    trials: dict[str, list[tuple[int, float]]] = {}
    selections = []
    for agent, per_fold in fold_runs.items():
        episodes = [[test_episodes(seed_run, fm) for seed_run in seed_runs]
                    for seed_runs, fm in zip(per_fold, fold_markets)]  # [K][S][M]
        folds_trials = [[r.trials for r in seed_runs] for seed_runs in per_fold]  # [K][S]
        flat_candidate = any(r.flat_candidate for seed_runs in per_fold for r in seed_runs)
        chosen = select_seeds(folds_trials)  # [K]: the seed selected on validation
        selections += selection_lines(agent, per_fold, seeds, chosen)
        records[agent] = [episodes[k][chosen[k]] for k in range(FLAGS.folds)]
        trials[agent] = [agent_trials(folds_trials, m, ppy, flat_candidate)
                         for m in range(len(names))]
        for s, seed in enumerate(seeds):
            own = [[folds_trials[k][s]] for k in range(FLAGS.folds)]
            records[f"{agent} seed {seed}"] = [episodes[k][s] for k in range(FLAGS.folds)]
            trials[f"{agent} seed {seed}"] = [agent_trials(own, m, ppy, flat_candidate)
                                              for m in range(len(names))]
    for line in selections:
        print(line)
    rule_results = [[baselines(fm.make_env(fm.train[m]), fm.make_env(fm.test[m]),
                               history=fm.whole[m], seed=FLAGS.baseline_seed, oracle=oracle,
                               periods_per_year=ppy) for m in range(len(names))]
                    for fm in fold_markets]  # [K][M]{rule: result}
    rules = list(rule_results[0][0])
    for rule in rules:
        records[rule] = [[per_market[rule] for per_market in fold] for fold in rule_results]
        # per market: the grid's Sharpes on that market's training parts
        trials[rule] = [rule_trials([fold[m][rule]["training_sharpes"] for fold in rule_results],
                                    ppy) for m in range(len(names))]

    lines = ["Fold selection (validation only):", *selections]
    report = {"data": FLAGS.data, "market_seed": FLAGS.market_seed, "folds": FLAGS.folds,
              "embargo": embargo, "seeds": seeds, "seconds_per_run": FLAGS.seconds,
              "train_seconds": train_seconds, "selections": selections,
              "reported_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "markets": {}}
    for m, name in enumerate(names):
        chained = {policy: chain([fold[m] for fold in per_fold])
                   for policy, per_fold in records.items()}
        hold = chained["buy_and_hold"]
        market_report = {policy: chained_report(c, hold, *trials[policy][m])
                         for policy, c in chained.items()}
        fold_bars = [fold.test for fold in fold_markets[0].source.walk_forward()[m]]
        rows = []
        for policy, result in market_report.items():
            sig = result["significance"]
            rows.append([policy, *[f["sharpe"] for f in result["folds"]],
                         result["chained"]["sharpe"], 100 * result["chained"]["total_return"],
                         100 * result["chained"]["max_drawdown"], sig["psr_vs_zero"],
                         sig["p_above_benchmark"], f"{sig['dsr']:.2f} ({sig['num_trials']})"])
        stamps = fold_markets[0].whole[m].timestamps
        span = f"{str(stamps[fold_bars[0][0]])[:10]} to {str(stamps[fold_bars[-1][1]])[:10]}"
        title = (f"\n{name}: {FLAGS.folds} folds tested {span} (bars {fold_bars[0][0]}.."
                 f"{fold_bars[-1][1]}, {fold_bars[0][1] - fold_bars[0][0]} per fold, embargo "
                 f"{embargo}), seeds {seeds}, {FLAGS.seconds:g} s per run; Sharpe annualized at "
                 f"{ppy:g} periods per year; P(SR > B&H): Jobson-Korkie-Memmel on the same bars")
        print(title)
        table = runs.print_table(["policy", *[f"fold {k}" for k in range(FLAGS.folds)],
                                  "chained Sharpe", "return %", "max DD %", "PSR vs 0",
                                  "P(SR > B&H)", "DSR (trials)"], rows)
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
               f"reported {report['reported_at']})")
    print(summary)
    (out / "walk_forward.md").write_text("\n".join([*lines, summary]) + "\n")
    (out / "walk_forward.json").write_text(json.dumps(report, indent=2, default=float))
    print("results:", out / "walk_forward.md")


if __name__ == "__main__":
    app.run(main)
