"""Which settings pay? Train the same agent with each config for the same wall-clock budget
and seeds (one anakin --num_seeds program per config and market) and choose on validation,
next to buy-and-hold and random on the same validation markets.

    python benchmarks/compare.py            # the torsos: mlp over 2 bars, conv and transformer
                                            # over 32 and 128, on the regime market and the OU control
    python benchmarks/compare.py --data=synthetic:ou --seconds=60 \
        --config="--agent_config=anakin_num_envs=64" --config="--agent_config=anakin_num_envs=256"

A config is a string of apex.py flags (the default ones: a torso and a window, with the
agent's `small` preset and the torsos' default sizes: width 64, depth 2, 4 heads;
agents/torsos.py); flags common to all go through --apex_flags. The choice reads the median
over seeds of each seed's best validation Sharpe.

A tuning tool shows no test figure (issue 26; docs/results.md, "Protocol"): what it prints and
writes is validation only. apex.py still tests each run's selection once at its end; compare.py
seals that test as soon as the run is read (runs.seal_test: the summary's test figures, the
test records, the test PNG, the TensorBoard events and the log's test lines are removed), so
nothing in --out shows it. Tuning draws its markets from --seed < 1000; seeds >= 1000 are kept
for reported figures (benchmarks/learning.py, benchmarks/walk_forward.py) and refused here.
"""

from __future__ import annotations

import pathlib
import re
import shlex
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app, flags

from benchmarks import runs

FLAGS = flags.FLAGS
flags.DEFINE_list("data", ["synthetic:regime", "synthetic:ou"], "Markets (apex.py's --data), each "
                  "trained with every config.")
TORSO_CONFIGS = [f"--window={window} --agent_config=torso={torso}" for torso, window in (
    ("mlp", 2), ("conv", 32), ("transformer", 32), ("conv", 128), ("transformer", 128))]
flags.DEFINE_multi_string("config", TORSO_CONFIGS, "A config to compare: apex.py flags in one "
                          "string (repeat the flag for each config).")
flags.DEFINE_string("agent", "apex_dqn", "Agent (a name in agents/registry.py).")
flags.DEFINE_float("seconds", 90.0, "Training budget of each program (apex.py's --max_seconds), "
                   "the same for every config.")
flags.DEFINE_integer("num_seeds", 3, "Independent agents per program (apex.py's --num_seeds).")
flags.DEFINE_integer("seed", 0, "First seed; it also draws the market (< 1000: seeds >= "
                     "1000 are the reporting range, never tuned on).")
flags.DEFINE_list("apex_flags", [], "More apex.py flags, e.g. --apex_flags=--eval_every=200.")
flags.DEFINE_string("out", None, "Output folder (default: benchmarks/out/compare_<time>).")


OWN_FLAGS = ("--data", "--agent=", "--lp_launch_type", "--max_seconds", "--seed=", "--num_seeds",
             "--workdir")


def parse_config(text: str) -> list[str]:
    words = shlex.split(text)
    for word in words:
        if not word.startswith("--"):
            raise app.UsageError(f"--config={text!r}: {word!r} is not an apex.py flag (--name=value)")
        if word.startswith(OWN_FLAGS):
            raise app.UsageError(f"--config={text!r}: {word.split('=')[0]} is set by compare.py "
                                 "for every config (see its own flags)")
    return words


def config_name(words: list[str]) -> str:
    return " ".join(word[2:] for word in words) or "(defaults)"


def random_validation_sharpe(run: runs.Run) -> float:
    """Median over the validation markets of a seeded uniformly random policy's Sharpe."""
    from environments import EnvConfig, MarketSource, TradingEnv, run_episode

    source = MarketSource(**run.summary["market"])
    env_config = EnvConfig.from_dict(run.summary["env"])
    periods = run.summary["test"]["periods_per_year"]  # a setting, kept by runs.seal_test
    sharpes = []
    for i, market in enumerate(source.split("validation")):
        env = TradingEnv.from_config(market, env_config)
        result = run_episode(env, runs.random_policy(env.action_space.n, FLAGS.seed + i),
                             periods_per_year=periods)
        sharpes.append(result["sharpe"])
    return statistics.median(sharpes)


def train(out: pathlib.Path, data: str, index: int, words: list[str]) -> runs.Run:
    # A folder under `out` whatever --data is (a CSV path's folders and '..' included).
    folder = re.sub(r"[^A-Za-z0-9_.-]+", "_", data.replace(":", "_")).strip("._")
    return runs.seal_test(runs.run_apex(out / f"{folder}_config{index}", [
        f"--data={data}", f"--agent={FLAGS.agent}", "--lp_launch_type=anakin",
        f"--max_seconds={FLAGS.seconds}", f"--seed={FLAGS.seed}", f"--num_seeds={FLAGS.num_seeds}",
        *FLAGS.apex_flags, *words,
    ], timeout_s=FLAGS.seconds + 600), "benchmarks/compare.py")


def summarize(data: str, results: dict[str, runs.Run]) -> tuple[str, list[str]]:
    """The table of one market, and its verdict lines: validation figures only."""
    rows, medians = [], {}
    for name, run in results.items():
        seeds = [run.for_seed(k) for k in range(FLAGS.num_seeds)]
        validation = [s.summary["validation"]["best_sharpe"] for s in seeds]
        flat = sum(s.summary["test"].get("policy") == "flat" for s in seeds)
        medians[name] = statistics.median(validation)
        rows.append([name, run.summary.get("parameter_count"), run.summary["learner_steps"],
                     run.summary["learner_steps_per_s"], medians[name], min(validation),
                     max(validation), f"{flat} of {len(seeds)}"])
    first = next(iter(results.values()))
    buy_and_hold = first.summary["validation"]["buy_and_hold_sharpe"]
    random_sharpe = random_validation_sharpe(first)
    rows.append(["buy-and-hold", None, None, None, buy_and_hold, None, None, None])
    rows.append(["random", None, None, None, random_sharpe, None, None, None])
    print(f"\n{data}: {FLAGS.agent}, {FLAGS.seconds:g} s per config, {FLAGS.num_seeds} seeds, "
          f"market seed {FLAGS.seed} (medians over seeds of each seed's best validation Sharpe, "
          "itself a median over the validation markets):")
    table = runs.print_table(["config", "parameters", "learner steps", "updates/s",
                              "validation Sharpe", "validation min", "validation max",
                              "seeds selecting flat"], rows)
    chosen = max(medians, key=medians.get)
    return table, [f"{data}: chosen on validation: {chosen} (validation Sharpe "
                   f"{medians[chosen]:.2f}; buy-and-hold {runs.fmt(buy_and_hold)} and random "
                   f"{random_sharpe:.2f} on the same validation markets)"]


def main(argv) -> None:
    del argv
    if FLAGS.seed + FLAGS.num_seeds > runs.REPORT_SEEDS_START:
        raise app.UsageError(
            f"--seed={FLAGS.seed} --num_seeds={FLAGS.num_seeds}: market seeds from "
            f"{runs.REPORT_SEEDS_START} are kept for reported figures; tune on seeds below it")
    configs = [parse_config(text) for text in FLAGS.config]
    out = pathlib.Path(FLAGS.out or runs.REPO_ROOT / "benchmarks" / "out" /
                       f"compare_{time.strftime('%Y%m%d_%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    sections, verdicts = [], []
    for data in FLAGS.data:
        results = {config_name(words): train(out, data, index, words)
                   for index, words in enumerate(configs)}
        table, lines = summarize(data, results)
        sections.append(f"{data}:\n\n{table}")
        verdicts += lines
    print()
    for line in verdicts:
        print(line)
    stamp = (f"compare.py, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}: validation only (each run's "
             "test is sealed)")
    (out / "results.md").write_text("\n\n".join([stamp, *sections]) + "\n\n"
                                    + "\n".join(verdicts) + "\n")
    print("results:", out / "results.md")


if __name__ == "__main__":
    app.run(main)
