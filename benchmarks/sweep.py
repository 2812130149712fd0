"""Is a sweep faster as one program? The same grid trained as the members of one anakin program
(`--sweep`) and as separate runs one at a time (one program per setting, its --num_seeds seeds
vmapped, as benchmarks/compare.py runs a config), each member making the same number of
updates (--max_learner_steps): wall time of the whole commands (compiling included),
member-updates/s, and the ratio.

    python benchmarks/sweep.py                                     # 4 settings x 1 seed
    python benchmarks/sweep.py --sweep="learning_rate=1e-4,3e-4;risk_aversion=12,24" \
        --num_seeds=4 --updates=500
    # issue 28's 64 members (16 settings x 4 seeds) against 64 trainings one at a time
    python benchmarks/sweep.py --sweep="learning_rate=1e-4,3e-4;discount=0.9,0.99;risk_aversion=12,24;\
target_update_period=50,100" --num_seeds=4 --separate_seeds --updates=1000

A tuning tool shows no test figure (issue 26): it prints validation figures only, and seals the
test that every run still makes of its selection at its end (runs.seal_test). Tuning draws its
markets from --seed < 1000.
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
flags.DEFINE_string("sweep", "learning_rate=1e-4,3e-4;risk_aversion=12,24", "The grid (apex.py's --sweep).")
flags.DEFINE_integer("num_seeds", 1, "Seeds of each setting (apex.py's --num_seeds).")
flags.DEFINE_integer("updates", 300, "Updates of every member (apex.py's --max_learner_steps).")
flags.DEFINE_integer("seed", 0, "First seed; it also draws the market (< 1000).")
flags.DEFINE_bool("separate_seeds", False, "Run every seed of a setting as its own run (--num_seeds=1 "
                  "at --seed + k: the seed also draws the market, so seed k's run trains on its own "
                  "market; timings only), not the setting's seeds vmapped in one run.")
flags.DEFINE_string("agent_config", "", "apex.py's --agent_config, under every setting.")
flags.DEFINE_list("apex_flags", ["--eval_every=100"], "More apex.py flags, common to every run.")
flags.DEFINE_string("out", None, "Output folder (default: benchmarks/out/sweep_<time>).")


def setting_flags(setting: dict) -> list[str]:
    """apex.py flags of one setting of the grid: the env's as flags, the agent's in --agent_config."""
    from launch.run.sweep import ENV_SETTINGS

    agent = ",".join(part for part in [FLAGS.agent_config, *(f"{k}={v}" for k, v in setting.items()
                                                              if k not in ENV_SETTINGS)] if part)
    return [*(f"--{k}={v}" for k, v in setting.items() if k in ENV_SETTINGS),
            *([f"--agent_config={agent}"] if agent else [])]


def main(argv: list[str]) -> None:
    del argv
    if FLAGS.seed >= 1000:
        raise app.UsageError(f"--seed={FLAGS.seed}: seeds >= 1000 are kept for reported figures")
    out = pathlib.Path(FLAGS.out or f"benchmarks/out/sweep_{time.strftime('%Y%m%d-%H%M%S')}")
    common = ["--lp_launch_type=anakin", f"--seed={FLAGS.seed}", f"--num_seeds={FLAGS.num_seeds}",
              f"--max_learner_steps={FLAGS.updates}", "--max_seconds=0", *FLAGS.apex_flags]
    start = time.monotonic()
    together = runs.seal_test(runs.run_apex(out / "one_program", [
        *common, f"--sweep={FLAGS.sweep}",
        *([f"--agent_config={FLAGS.agent_config}"] if FLAGS.agent_config else [])],
        timeout_s=3600), "benchmarks/sweep.py")
    together_s = time.monotonic() - start
    swept = together.summary["sweep"]
    settings = [swept["members"][m]["settings"] for m in range(0, swept["num_members"], FLAGS.num_seeds)]
    start = time.monotonic()
    separate = []
    for i, setting in enumerate(settings):
        for k in range(FLAGS.num_seeds) if FLAGS.separate_seeds else [None]:
            name, seed_flags = f"setting_{i}", []
            if k is not None:
                name, seed_flags = f"setting_{i}_seed_{k}", [f"--seed={FLAGS.seed + k}", "--num_seeds=1"]
            separate.append(runs.seal_test(runs.run_apex(out / name, [*common, *setting_flags(setting), *seed_flags],
                                                         timeout_s=3600), "benchmarks/sweep.py"))
    separate_s = time.monotonic() - start
    members = swept["num_members"]
    if FLAGS.separate_seeds:
        timings(together, together_s, separate, separate_s, members, f"{len(separate)} runs one at a time", 1)
        return
    rows = []
    for i, (setting, run) in enumerate(zip(settings, separate)):
        one = [m["best_sharpe"] for m in swept["members"][i * FLAGS.num_seeds:(i + 1) * FLAGS.num_seeds]]
        alone = [run.for_seed(k).summary["validation"]["best_sharpe"] for k in range(FLAGS.num_seeds)]
        rows.append([", ".join(f"{k}={v}" for k, v in setting.items()), statistics.median(one),
                     statistics.median(alone)])
    print(f"\n{FLAGS.sweep!r} x {FLAGS.num_seeds} seed(s) = {members} members, {FLAGS.updates} updates each "
          f"(market seed {FLAGS.seed}); median over seeds of each member's best validation Sharpe:")
    runs.print_table(["setting", "validation Sharpe, one program", "validation Sharpe, separate runs"], rows)
    chosen = swept["members"][swept["chosen_member"]]
    print(f"chosen on validation: member {swept['chosen_member']} ({chosen['settings']}, seed {chosen['seed']}), "
          f"validation Sharpe {chosen['best_sharpe']:.3f}; {swept['num_trials']} trials, variance of their "
          f"validation Sharpes {swept['validation_sharpe_variance']:.4f}")
    timings(together, together_s, separate, separate_s, members, f"{len(settings)} runs one at a time",
            FLAGS.num_seeds)


def timings(together, together_s: float, separate: list, separate_s: float, members: int, shape: str,
            seeds_per_run: int) -> None:
    """The two shapes' wall time, compile time and member-updates/s, and their ratio."""
    # Updates as made (a cycle's updates overshoot --max_learner_steps alike in both shapes).
    together_updates = members * together.summary["learner_steps"]
    separate_updates = seeds_per_run * sum(run.summary["learner_steps"] for run in separate)
    print(f"\n{members} members, {FLAGS.updates} updates each asked ({together.summary['learner_steps']} made in "
          f"the one program):")
    runs.print_table(["shape", "wall s (compiling included)", "compile s", "member-updates/s"], [
        ["one program", together_s, together.summary["launch"]["compile_s"], together_updates / together_s],
        [shape, separate_s, sum(run.summary["launch"]["compile_s"] for run in separate),
         separate_updates / separate_s],
    ])
    print(f"one program: {separate_s / together_s:.2f}x sooner than the separate runs")
    print(f"measured {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")


if __name__ == "__main__":
    app.run(main)
