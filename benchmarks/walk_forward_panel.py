"""Walk-forward on a panel: Ape-X DQN trading every instrument of a panel at once
(`--data=panel:<wide CSV or folder of CSVs>`, docs/portfolios.md), K folds x S seeds under anakin
(one `--num_seeds` program per fold, all seeds on the fold's same bars), against 1/N and the
other portfolio baselines (environments/evaluation/portfolio_rules.py) on the same test bars and
costs. Per fold and chained (the K test parts end to end): Sharpe, return, max drawdown, PSR vs
0, the paired test against 1/N (Jobson-Korkie-Memmel: P(SR > 1/N's)) and the DSR with the trials
the selection chose among; a chained-equity PNG; one line saying whether the agent's edge is
distinguishable from luck and from 1/N.

    python benchmarks/walk_forward_panel.py --data=panel:../shared/panels/SP500_10_DAILY_CLOSE.csv
    python benchmarks/walk_forward_panel.py --data=synthetic:panel --folds=2 --max_learner_steps=500

Per fold, the seed with the best validation Sharpe is tested (trials.select_seeds), or flat
where its run selected flat; its test walk is recomputed from the kept parameters and checked
against the run's own test figure, as 1/N is against the run's. The DSR counts every validation
evaluation of every seed of the fold that had the most (+ flat where it was a candidate) and
their Sharpes' variance; the rules have no parameters chosen here (1 trial each; minimum
variance is fitted on each fold's training part). This is a report step: it reads test, so
nothing it prints may be used to choose settings (docs/results.md, "Protocol").
"""

from __future__ import annotations

import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np
from absl import app, flags

from benchmarks import runs

FLAGS = flags.FLAGS
flags.DEFINE_string("data", "synthetic:panel", "apex.py's --data: panel:<wide CSV or folder of "
                    "OHLCV CSVs> or synthetic:panel.")
flags.DEFINE_integer("synthetic_instruments", 10, "synthetic:panel's instruments.")
flags.DEFINE_integer("synthetic_steps", 4096, "synthetic:panel's bars.")
flags.DEFINE_integer("folds", 5, "Walk-forward folds K.")
flags.DEFINE_integer("seed", 1000, "The first agent seed (and synthetic:panel's draw: >= 1000 for "
                     "reported figures).")
flags.DEFINE_integer("num_seeds", 2, "Agent seeds S trained at once in each fold's program.")
flags.DEFINE_integer("max_learner_steps", 10000, "Learner steps of each fold's run (--max_seconds=0), "
                     "so the figures do not depend on the machine's speed.")
flags.DEFINE_integer("fold_test_bars", 0, "apex.py --fold_test_bars (0: its default).")
flags.DEFINE_integer("fold_validation_bars", 0, "apex.py --fold_validation_bars (0: its default).")
flags.DEFINE_integer("fold_train_bars", 0, "apex.py --fold_train_bars (0: expanding window).")
flags.DEFINE_integer("embargo", -1, "apex.py --embargo (-1: Ape-X's target horizon).")
flags.DEFINE_list("apex_flags", [], "More apex.py flags, e.g. --apex_flags=--window=8.")
flags.DEFINE_integer("momentum_lookback", 20, "Bars of the momentum rules' trailing return.")
flags.DEFINE_float("level", 0.95, "PSR / DSR level for the verdict.")
flags.DEFINE_string("out", None, "Output folder (default: benchmarks/out/walk_forward_panel_<time>).")

RULES = ("equal_weight", "basket_buy_and_hold", "ts_momentum", "xs_momentum", "minimum_variance",
         "random")


def run_fold(out: pathlib.Path, fold: int, embargo: int) -> list[runs.SeedRun]:
    """Fold `fold` trained on every seed in one anakin program; each seed's selection."""
    apex_flags = [
        "--lp_launch_type=anakin", f"--data={FLAGS.data}", f"--folds={FLAGS.folds}",
        f"--fold={fold}", f"--embargo={embargo}", f"--fold_test_bars={FLAGS.fold_test_bars}",
        f"--fold_validation_bars={FLAGS.fold_validation_bars}",
        f"--fold_train_bars={FLAGS.fold_train_bars}", f"--seed={FLAGS.seed}",
        f"--num_seeds={FLAGS.num_seeds}", f"--max_learner_steps={FLAGS.max_learner_steps}",
        "--max_seconds=0", *FLAGS.apex_flags]
    if FLAGS.data.startswith("synthetic"):
        apex_flags += [f"--synthetic_instruments={FLAGS.synthetic_instruments}",
                       f"--synthetic_steps={FLAGS.synthetic_steps}"]
    run = runs.run_apex(out / f"fold{fold}", apex_flags, timeout_s=7200)
    return [runs.SeedRun.of(run, s, FLAGS.num_seeds) for s in range(FLAGS.num_seeds)]


class FoldPanel:
    """One fold's panel parts as its run saw them, its env settings and annualization."""

    def __init__(self, run: runs.Run):
        from environments import EnvConfig, PanelSource

        self.summary = run.summary
        self.source = PanelSource(**run.summary["market"])
        self.config = EnvConfig.from_dict(run.summary["env"])
        self.periods_per_year = float(run.summary["test"]["periods_per_year"])
        splits = self.source.load()
        self.train, self.test = splits.train, splits.test
        self.whole = self.source.whole_panel()
        first = int(np.searchsorted(self.whole.timestamps, self.test.timestamps[0]))
        self.rows = slice(first, first + len(self.test))  # the test part's rows of the whole

    def walk(self, levels: np.ndarray) -> dict:
        from environments.evaluation.portfolio_rules import walk_levels

        return walk_levels(self.test, levels, self.config, self.periods_per_year)

    def rules(self, seed: int) -> dict[str, dict]:
        """Each rule's test walk; momentum reads trailing returns of the whole panel (never a
        bar past the one it acts at); minimum variance is fitted on the training part."""
        from environments.evaluation import portfolio_rules as rules

        lookback = FLAGS.momentum_lookback
        return {
            "equal_weight": self.walk(rules.equal_weight(self.test)),
            "basket_buy_and_hold": rules.basket_buy_and_hold(self.test, self.config,
                                                             self.periods_per_year),
            "ts_momentum": self.walk(rules.ts_momentum(self.whole, lookback)[self.rows]),
            "xs_momentum": self.walk(rules.xs_momentum(self.whole, lookback)[self.rows]),
            "minimum_variance": self.walk(rules.minimum_variance(self.test, self.train)),
            "random": self.walk(rules.random_levels(self.test, self.config, seed)),
        }

    def agent(self, seed_run: runs.SeedRun) -> dict:
        """The seed's selection walked over the test part: its kept parameters, or flat."""
        import jax

        from agents.registry import get_builder
        from environments.envs.portfolio import JaxPortfolioEnv, evaluate_portfolio_policy, host_trace
        from environments.envs.portfolio_gym import PortfolioEnv
        from environments.evaluation.portfolio_rules import walk_result
        from launch.run import checkpoints

        if seed_run.selected_flat:
            return self.walk(np.zeros(self.test.close.shape))
        builder = get_builder(self.summary["agent"])
        agent_config = builder.make_config(**self.summary["agent_config"])
        spec = builder.make_environment_spec(PortfolioEnv(self.test, self.config, mode="eval"))
        policy = builder.make_eval_policy(agent_config, spec)
        params = checkpoints.load_best_params(str(seed_run.best_dir))
        env = JaxPortfolioEnv(self.test, self.config, mode="eval")
        walk = jax.jit(lambda p: evaluate_portfolio_policy(
            self.config.window, lambda obs: policy(params, obs[None])[0], p))
        trace = host_trace(walk(env.params))
        return walk_result(self.test, trace["portfolio_values"], trace["weights"],
                           self.periods_per_year)


def turnover(fold_results: list[dict]) -> float:
    """The mean traded weight sum |w_t - w_{t-1}| a bar over the folds' test walks (their own
    metric, weighted by bars: the chained record's positions are gross exposures only)."""
    bars = [len(r["weights"]) for r in fold_results]
    return float(sum(r["turnover"] * n for r, n in zip(fold_results, bars)) / sum(bars))


def check(name: str, here: float, run_figure: float, where: pathlib.Path) -> None:
    """RuntimeError where a walk recomputed here is not the run's own."""
    if abs(here - run_figure) > 1e-3 * max(1.0, abs(run_figure)):
        raise RuntimeError(f"{where}: {name}'s test Sharpe {here:.6f} here, {run_figure:.6f} in "
                           "summary.json: the walk recomputed here is not the run's")


def main(argv) -> None:
    del argv
    from environments.evaluation.chaining import chain, chained_report, plot_chained
    from environments.evaluation.significance import verdict
    from environments.evaluation.trials import agent_trials, select_seeds

    out = pathlib.Path(FLAGS.out or runs.REPO_ROOT / "benchmarks" / "out" /
                       f"walk_forward_panel_{time.strftime('%Y%m%d_%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    embargo = runs.fold_embargo(["apex_dqn"], FLAGS.embargo, FLAGS.folds, FLAGS.apex_flags)
    start = time.monotonic()
    per_fold = [run_fold(out, k, embargo) for k in range(FLAGS.folds)]  # [K][S]
    train_seconds = time.monotonic() - start
    panels = [FoldPanel(seed_runs[0].run) for seed_runs in per_fold]
    ppy = panels[0].periods_per_year
    folds_trials = [[r.trials for r in seed_runs] for seed_runs in per_fold]
    chosen = select_seeds(folds_trials)
    results: dict[str, list[dict]] = {"agent": [], **{rule: [] for rule in RULES}}
    selections = []
    for k, (seed_runs, panel) in enumerate(zip(per_fold, panels)):
        seed_run = seed_runs[chosen[k]]
        agent = panel.agent(seed_run)
        check("agent", agent["sharpe"], seed_run.test["sharpe"], seed_run.run.workdir)
        results["agent"].append(agent)
        for rule, result in panel.rules(seed=FLAGS.seed + k).items():
            results[rule].append(result)
        check("1/N", results["equal_weight"][-1]["sharpe"],
              seed_run.test["equal_weight_sharpe"], seed_run.run.workdir)
        tested = "flat" if seed_run.selected_flat else "its best parameters"
        selections.append(f"fold {k}: seed {FLAGS.seed + chosen[k]} selected (best validation "
                          f"Sharpe {runs.fmt(seed_run.trials.best_sharpe)}); tested {tested}")
    flat_candidate = any(r.flat_candidate for seed_runs in per_fold for r in seed_runs)
    trials = {"agent": agent_trials(folds_trials, 0, ppy, flat_candidate),
              **{rule: (1, 0.0) for rule in RULES}}
    chained = {policy: chain(fold_results) for policy, fold_results in results.items()}
    benchmark = chained["equal_weight"]
    report = {policy: chained_report(c, benchmark, *trials[policy]) for policy, c in chained.items()}

    rows = []
    for policy, result in report.items():
        sig = result["significance"]
        rows.append([policy, *[f["sharpe"] for f in result["folds"]], result["chained"]["sharpe"],
                     100 * result["chained"]["total_return"], 100 * result["chained"]["max_drawdown"],
                     turnover(results[policy]), sig["psr_vs_zero"],
                     "-" if policy == "equal_weight" else sig["p_above_benchmark"],
                     f"{sig['dsr']:.2f} ({sig['num_trials']})"])
    stamps = chained["agent"]["timestamps"]
    names = panels[0].test.names
    title = (f"{FLAGS.data}: {len(names)} instruments, {FLAGS.folds} folds tested "
             f"{str(stamps[0])[:10]} to {str(stamps[-1])[:10]} (embargo {embargo}), Ape-X DQN "
             f"under anakin, seeds {FLAGS.seed}..{FLAGS.seed + FLAGS.num_seeds - 1}, "
             f"{FLAGS.max_learner_steps} learner steps per fold"
             f"{' + ' + ' '.join(FLAGS.apex_flags) if FLAGS.apex_flags else ''}; Sharpe annualized "
             f"at {ppy:g} periods per year; P(SR > 1/N): Jobson-Korkie-Memmel on the same bars")
    for line in selections:
        print(line)
    print("\n" + title)
    table = runs.print_table(["policy", *[f"fold {k}" for k in range(FLAGS.folds)], "chained Sharpe",
                              "return %", "max DD %", "turnover", "PSR vs 0", "P(SR > 1/N)",
                              "DSR (trials)"], rows)
    sharpe = {policy: r["chained"]["sharpe"] for policy, r in report.items()}
    best = max(RULES, key=sharpe.get)
    ahead = "ahead of" if sharpe["agent"] > sharpe[best] else "NOT ahead of"
    verdicts = [f"agent: {verdict(report['agent']['significance'], FLAGS.level)}; {ahead} every "
                f"baseline (best: {best}, chained Sharpe {sharpe[best]:.2f})"]
    if FLAGS.seed < runs.REPORT_SEEDS_START and FLAGS.data.startswith("synthetic"):
        verdicts.append(f"NOT for reporting: market seed {FLAGS.seed} is a tuning market (below "
                        f"{runs.REPORT_SEEDS_START}; docs/results.md, \"Protocol\")")
    plot = plot_chained(out / "chained_equity.png",
                        {p: chained[p] for p in ("agent", "equal_weight", "basket_buy_and_hold",
                                                 "minimum_variance")},
                        title=f"Chained out-of-sample equity, {FLAGS.data}")
    reported_at = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    footer = (f"{FLAGS.folds} folds x {FLAGS.num_seeds} seeds trained in {train_seconds:.0f} s; "
              f"reported {reported_at}")
    for line in (*verdicts, f"plot: {plot}", footer):
        print(line)
    (out / "walk_forward_panel.md").write_text("\n".join(
        ["Fold selection (validation only):", *selections, "", title, table, *verdicts,
         f"plot: {plot}", footer]) + "\n")
    (out / "walk_forward_panel.json").write_text(json.dumps(
        {"data": FLAGS.data, "folds": FLAGS.folds, "embargo": embargo, "seed": FLAGS.seed,
         "num_seeds": FLAGS.num_seeds, "instruments": list(names), "selections": selections,
         "train_seconds": train_seconds, "reported_at": reported_at, "policies": report},
        indent=2, default=float))
    print("results:", out / "walk_forward_panel.md")


if __name__ == "__main__":
    app.run(main)
