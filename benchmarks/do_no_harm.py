"""Do no harm (issue 30): where a market has no edge after costs the agent should stand aside,
at any bar frequency; where it has one, it should still find it.

Each market is one seeded synthetic path (environments.data.synthetic's processes, our own
code), written as an OHLCV CSV and split 60/20/20 by apex.py as any CSV is:

    walk_daily    driftless random walk, daily bars, 1% a bar            no edge: flat is right
    walk_hourly   driftless random walk, weekday hourly bars, 0.1% a bar no edge: flat is right
    drift_daily   random walk with synthetic:gbm's drift (+0.02%/bar)    buy-and-hold is right
    ou_daily      mean-reverting (OU, 5%/bar), daily bars, 1% a bar      an edge (the default OU's)
    ou_hourly     mean-reverting (OU, 5%/bar), hourly bars, 0.1% a bar   an edge: the rule's

For each market seed (FRESH seeds, 1000.. by default: the unseen-test protocol of issue 26,
tuning uses seed 0) and each agent, one `launch/apex.py --lp_launch_type=anakin` subprocess with
a fixed --max_learner_steps (deterministic, not time-limited) and the run's own seed = the
market seed. Per market, a table: the learned policy BEFORE the flat fallback (its best
validation Sharpe and that evaluation's turnover), the kappa the run trained with (the agent's
own unless --apex_flags sets --risk_aversion) and K, the validation evaluations its best was
chosen among, flat's bar for that best (launch/run/selection.py flat_threshold), the selected
policy (agent or flat) and its test return and Sharpe, buy-and-hold's, and on the OU markets the oracle rule's
(environments.evaluation.rules.ou_mean_reversion, told the generator's parameters); then the
issue's targets as PASS/FAIL lines.

This is a report: it prints test figures, so nothing it prints may be used to choose settings
(choose on validation, on seed 0: docs/results.md). docs/do_no_harm.md discusses the results.

    python benchmarks/do_no_harm.py                       # the full benchmark (~25 min, 2 cores)
    python benchmarks/do_no_harm.py --markets=walk_hourly --agents=apex_dqn --seeds=1 \\
        --learner_steps=2000                              # a smoke test
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np
from absl import app, flags

from benchmarks import runs

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command line's flags (defined when run, so that importing the generator, as the
    tests do, defines none beside other benchmarks' flags)."""
    flags.DEFINE_list("markets", None, "Markets to run (default: all of MARKETS).")
    flags.DEFINE_list("agents", ["apex_dqn", "impala"], "Agents (names in agents/registry.py).")
    flags.DEFINE_integer("first_seed", 1000, "First market seed (>= 1000 for reported figures: "
                         "seed 0 is the tuning market).")
    flags.DEFINE_integer("seeds", 5, "Market seeds: first_seed .. first_seed + seeds - 1.")
    flags.DEFINE_integer("bars", 12000, "Bars of each market (60/20/20 train/validation/test).")
    flags.DEFINE_integer("learner_steps", 0, "apex.py --max_learner_steps of every run; 0: the "
                         "agent's entry in LEARNER_STEPS.")
    flags.DEFINE_float("timeout", 900.0, "Seconds before one run is killed.")
    flags.DEFINE_list("apex_flags", [], "More apex.py flags for every run, e.g. --apex_flags="
                      "--flat_margin=0.5.")
    flags.DEFINE_string("out", None, "Output folder (default: benchmarks/out/do_no_harm_<time>).")


# Per agent, learner steps that fit the whole benchmark in ~25 min on 2 busy cores. On the
# default synthetic market (seed 0) Ape-X's validation Sharpe is ~2.0 at 20000 steps; IMPALA's
# is ~1.8 at 3000 with its own kappa 0 (under Ape-X's 24 its policy collapsed to flat within a
# few hundred steps: docs/do_no_harm.md).
LEARNER_STEPS = {"apex_dqn": 20000, "impala": 10000}

NO_EDGE_TURNOVER = 0.01  # the target: mean |change of position| per bar
RULE_RATIO = 0.8  # the agent's median test Sharpe against the rule's, on the markets with an edge


@dataclasses.dataclass(frozen=True)
class MarketSpec:
    """One benchmark market: a synthetic process and its bar spacing."""

    name: str
    process: str  # "walk" (environments' gbm_market) or "ou" (ou_market)
    bar: str  # "day" (weekdays) or "hour" (24 bars each weekday)
    volatility: float  # of a bar's return
    drift: float = 0.0  # walk: mean arithmetic return of a bar (0: the price is a martingale)
    mean_reversion: float = 0.05  # ou: pull to the mean price per bar
    edge: str = "none"  # "none" (flat is right), "drift" (buy-and-hold), "rule" (the OU rule)


MARKETS = {spec.name: spec for spec in (
    MarketSpec("walk_daily", "walk", "day", volatility=0.01),
    MarketSpec("walk_hourly", "walk", "hour", volatility=0.001),
    MarketSpec("drift_daily", "walk", "day", volatility=0.01, drift=0.0002, edge="drift"),
    MarketSpec("ou_daily", "ou", "day", volatility=0.01, edge="rule"),
    MarketSpec("ou_hourly", "ou", "hour", volatility=0.001, edge="rule"),
)}


def make_market(spec: MarketSpec, seed: int, num_bars: int):
    """The seeded path of `spec` as MarketData: environments' gbm_market (drift 0: no edge) or
    ou_market, on weekday dates, or restamped as 24 hourly bars each weekday."""
    from environments import MarketData, gbm_market, ou_market

    if spec.process == "walk":
        market = gbm_market(num_bars, seed=seed, drift=spec.drift, volatility=spec.volatility)
    elif spec.process == "ou":
        market = ou_market(num_bars, seed=seed, mean_reversion=spec.mean_reversion,
                           volatility=spec.volatility)
    else:
        raise ValueError(f"{spec.name}: unknown process {spec.process!r}, expected walk or ou")
    if spec.bar == "day":
        return market
    if spec.bar != "hour":
        raise ValueError(f"{spec.name}: unknown bar {spec.bar!r}, expected day or hour")
    days = np.busday_offset(np.datetime64("2015-01-05", "D"), np.arange(num_bars // 24 + 1),
                            roll="forward")
    hours = (days[:, None].astype("datetime64[h]") + np.arange(24)).ravel()[:num_bars]  # [T]
    return MarketData(hours.astype("datetime64[ns]"), market.open, market.high, market.low,
                      market.close, market.volume, source=f"{spec.name}(seed={seed})")


def write_csv(market, path: pathlib.Path) -> pathlib.Path:
    """An OHLCV CSV of `market` (ISO timestamps), as a user's file would be."""
    stamps = np.datetime_as_string(market.timestamps, unit="s")
    with open(path, "w") as file:
        file.write("timestamp,open,high,low,close,volume\n")
        for i in range(len(market)):
            file.write(f"{stamps[i]},{market.open[i]!r},{market.high[i]!r},{market.low[i]!r},"
                       f"{market.close[i]!r},{market.volume[i]!r}\n")
    return path


@dataclasses.dataclass
class Outcome:
    """One (market, seed, agent) run, as the report reads it."""

    seed: int
    learned_sharpe: float  # best validation Sharpe, before the flat fallback
    learned_turnover: float  # validation turnover of that evaluation
    learned_step: int
    policy: str  # what the run tested: "agent" or "flat"
    flat_threshold: float | None  # the validation Sharpe the learned policy had to beat
    trials: int | None  # K: the validation evaluations the learned policy is the best of
    risk_aversion: float | None  # kappa as quoted for 1% bars (before the volatility units)
    test_return: float
    test_sharpe: float
    test_turnover: float
    buy_and_hold_return: float
    buy_and_hold_sharpe: float
    rule_return: float | None = None
    rule_sharpe: float | None = None


def learned_policy(run: runs.Run) -> tuple[float, float, int]:
    """(best validation Sharpe, its evaluation's validation turnover, its learner step) of a
    one-seed run: the evaluator record of the step the run kept (checkpoints/best)."""
    best_step = int(run.summary["validation"]["learner_steps"])
    for record in run.node_records("evaluator"):
        if int(record["evaluator/learner_steps"]) == best_step:
            return (float(record["evaluator/sharpe"]), float(record["evaluator/turnover"]),
                    best_step)
    raise RuntimeError(f"{run.workdir}: no evaluator record at the kept step {best_step}")


def rule_result(run: runs.Run, spec: MarketSpec) -> dict:
    """The OU oracle rule on the run's test market, with the run's env settings."""
    from environments import EnvConfig, MarketSource, TradingEnv
    from environments.evaluation.rules import ou_mean_reversion, run_rule

    (market,) = MarketSource(**run.summary["market"]).load().test
    env = TradingEnv.from_config(market, EnvConfig.from_dict(run.summary["env"]))
    rule = ou_mean_reversion(mean_reversion=spec.mean_reversion, volatility=spec.volatility)
    return run_rule(env, rule, periods_per_year=float(run.summary["test"]["periods_per_year"]))


def run_market(out: pathlib.Path, spec: MarketSpec, seed: int, agent: str) -> Outcome:
    data = out / f"{spec.name}_seed{seed}.csv"
    if not data.exists():
        write_csv(make_market(spec, seed, FLAGS.bars), data)
    steps = FLAGS.learner_steps or LEARNER_STEPS[agent]
    run = runs.run_apex(out / f"{spec.name}_seed{seed}_{agent}", [
        f"--data={data}", f"--agent={agent}", "--lp_launch_type=anakin", f"--seed={seed}",
        f"--max_learner_steps={steps}", "--max_seconds=0", "--data_cache=off",
        *FLAGS.apex_flags], FLAGS.timeout)
    sharpe, turnover, step = learned_policy(run)
    test = run.summary["test"]
    outcome = Outcome(seed, sharpe, turnover, step, test.get("policy", "agent"),
                      test.get("flat_threshold"), run.summary["validation"].get("evaluations"),
                      quoted_risk_aversion(run.summary), float(test["total_return"]),
                      float(test["sharpe"]), float(test["turnover"]),
                      float(test["buy_and_hold_return"]), float(test["buy_and_hold_sharpe"]))
    if spec.edge == "rule":
        rule = rule_result(run, spec)
        outcome.rule_return, outcome.rule_sharpe = rule["total_return"], rule["sharpe"]
    return outcome


def quoted_risk_aversion(summary: dict) -> float | None:
    """The run's --risk_aversion as quoted for bars moving 1%: the env's kappa divided by the
    volatility units (1% / the training markets' per-step volatility, launch/run/setup.py)."""
    from launch.run.setup import REFERENCE_VOLATILITY

    kappa, volatility = summary["env"].get("risk_aversion"), summary.get("return_volatility")
    if kappa is None or not volatility:
        return None
    return float(kappa) * float(volatility) / REFERENCE_VOLATILITY


def round_trip_cost(apex_flags: list[str]) -> float:
    """Into a position and out of it, as a fraction of value: 2 x (commission + half-spread)."""
    from environments import EnvConfig

    settings = {"commission_bps": EnvConfig.commission_bps, "spread_bps": EnvConfig.spread_bps}
    for word in apex_flags:
        name, _, value = word.removeprefix("--").partition("=")
        if name in settings:
            settings[name] = float(value)
    return 2 * (settings["commission_bps"] + settings["spread_bps"]) / 1e4


def median(values) -> float:
    return float(statistics.median(values))


def market_table(spec: MarketSpec, outcomes: dict[str, list[Outcome]]) -> str:
    headers = ["agent", "seed", "kappa", "learned val Sharpe", "learned val turnover", "K",
               "flat threshold", "selected", "test return %", "test Sharpe", "test turnover",
               "b&h return %", "b&h Sharpe"]
    if spec.edge == "rule":
        headers += ["rule return %", "rule Sharpe"]
    rows = []
    for agent, per_seed in outcomes.items():
        for o in per_seed:
            row = [agent, o.seed, o.risk_aversion, o.learned_sharpe, f"{o.learned_turnover:.3f}",
                   o.trials, o.flat_threshold, o.policy, 100 * o.test_return, o.test_sharpe,
                   f"{o.test_turnover:.3f}", 100 * o.buy_and_hold_return, o.buy_and_hold_sharpe]
            if spec.edge == "rule":
                row += [100 * o.rule_return, o.rule_sharpe]
            rows.append(row)
        row = [agent, "median", None, median(o.learned_sharpe for o in per_seed),
               f"{median(o.learned_turnover for o in per_seed):.3f}", None, None,
               f"{sum(o.policy == 'flat' for o in per_seed)}/{len(per_seed)} flat",
               100 * median(o.test_return for o in per_seed),
               median(o.test_sharpe for o in per_seed),
               f"{median(o.test_turnover for o in per_seed):.3f}",
               100 * median(o.buy_and_hold_return for o in per_seed),
               median(o.buy_and_hold_sharpe for o in per_seed)]
        if spec.edge == "rule":
            row += [100 * median(o.rule_return for o in per_seed),
                    median(o.rule_sharpe for o in per_seed)]
        rows.append(row)
    print(f"\n### {spec.name}: {spec.process}, {spec.bar} bars, volatility {spec.volatility:g} "
          f"a bar, drift {spec.drift:g}, edge: {spec.edge}\n", flush=True)
    return runs.print_table(headers, rows)


def target_lines(spec: MarketSpec, outcomes: dict[str, list[Outcome]], cost: float) -> list[str]:
    """The issue's targets on this market, one PASS/FAIL line each, per agent."""
    lines = []
    verdict = lambda ok: "PASS" if ok else "FAIL"
    for agent, per_seed in outcomes.items():
        where = f"{spec.name} {agent}"
        if spec.edge == "none":
            sharpe = median(o.learned_sharpe for o in per_seed)
            turnover = median(o.learned_turnover for o in per_seed)
            lines.append(f"{verdict(sharpe >= 0)} {where}: learned policy's median validation "
                         f"Sharpe {sharpe:.2f} >= 0")
            lines.append(f"{verdict(turnover <= NO_EDGE_TURNOVER)} {where}: learned policy's "
                         f"median validation turnover {turnover:.3f} <= {NO_EDGE_TURNOVER}")
        if spec.edge in ("none", "drift"):
            worst = min(o.test_return for o in per_seed)
            harmed = sum(o.test_return < -cost for o in per_seed)
            lines.append(f"{verdict(harmed == 0)} {where}: selected policy's test return >= "
                         f"-{100 * cost:.2f}% (one round trip) on {len(per_seed) - harmed}/"
                         f"{len(per_seed)} seeds (worst {100 * worst:.2f}%)")
        if spec.edge == "drift":
            agent_sharpe = median(o.test_sharpe for o in per_seed)
            held = median(o.buy_and_hold_sharpe for o in per_seed)
            lines.append(f"(report) {where}: median test Sharpe {agent_sharpe:.2f}, "
                         f"buy-and-hold's {held:.2f}")
        if spec.edge == "rule":
            agent_sharpe = median(o.test_sharpe for o in per_seed)
            rule_sharpe = median(o.rule_sharpe for o in per_seed)
            lines.append(f"{verdict(agent_sharpe >= RULE_RATIO * rule_sharpe)} {where}: "
                         f"selected policy's median test Sharpe {agent_sharpe:.2f} >= "
                         f"{RULE_RATIO} x the rule's {rule_sharpe:.2f}")
    for line in lines:
        print(line, flush=True)
    return lines


def main(argv):
    del argv
    names = FLAGS.markets or list(MARKETS)
    unknown = [name for name in names if name not in MARKETS]
    if unknown:
        raise app.UsageError(f"--markets: unknown {unknown}, expected some of {list(MARKETS)}")
    missing = [agent for agent in FLAGS.agents
               if not FLAGS.learner_steps and agent not in LEARNER_STEPS]
    if missing:
        raise app.UsageError(f"--agents: no default step count for {missing}; pass --learner_steps")
    if FLAGS.first_seed < 1000:
        print(f"warning: --first_seed={FLAGS.first_seed} < 1000 overlaps the tuning seeds; these "
              "figures are not a fresh-seed report", flush=True)
    out = pathlib.Path(FLAGS.out or pathlib.Path(__file__).parent / "out" /
                       f"do_no_harm_{time.strftime('%Y%m%d_%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    seeds = list(range(FLAGS.first_seed, FLAGS.first_seed + FLAGS.seeds))
    cost = round_trip_cost(FLAGS.apex_flags)
    start = time.monotonic()
    results = {name: {agent: [run_market(out, MARKETS[name], seed, agent) for seed in seeds]
                      for agent in FLAGS.agents} for name in names}
    seconds = time.monotonic() - start
    steps = {agent: FLAGS.learner_steps or LEARNER_STEPS[agent] for agent in FLAGS.agents}
    print(f"\n## Do no harm: {len(names)} markets x {len(seeds)} fresh market seeds "
          f"({seeds[0]}..{seeds[-1]}) x agents {steps} learner steps, anakin; "
          f"{FLAGS.bars} bars each; {seconds / 60:.1f} min of runs", flush=True)
    lines = []
    for name in names:
        market_table(MARKETS[name], results[name])
        lines += target_lines(MARKETS[name], results[name], cost)
    passed = sum(line.startswith("PASS") for line in lines)
    failed = sum(line.startswith("FAIL") for line in lines)
    print(f"\ntargets: {passed} pass, {failed} fail", flush=True)
    report = {"markets": {name: dataclasses.asdict(MARKETS[name]) for name in names},
              "seeds": seeds, "learner_steps": steps, "bars": FLAGS.bars,
              "apex_flags": FLAGS.apex_flags, "round_trip_cost": cost, "run_seconds": seconds,
              "results": {name: {agent: [dataclasses.asdict(o) for o in per_seed]
                                 for agent, per_seed in by_agent.items()}
                          for name, by_agent in results.items()},
              "targets": lines, "reported_at": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(f"report: {out / 'report.json'}", flush=True)


if __name__ == "__main__":
    define_flags()
    app.run(main)
