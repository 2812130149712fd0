"""Which launch type gets a good policy soonest? Runs apex.py's defaults (the OU process, the
small preset) under each launch type of --lp_launch_type, each for the same wall-clock budget,
side by side in one run: local_mt (one process: acting, Reverb and learning take turns under
one interpreter lock), local_mp with --actors actor processes, and anakin (env, acting, replay
and updates in one compiled program). Prints updates/s, env steps/s, seconds to a first
validation Sharpe at or above --sharpe_threshold counted from the command's start (process
start-up and compilation included: a user waits for them too) and from the first learner
update, the best validation Sharpe and when, and the test Sharpe of the selection (the test
split plays no part before that), with ratios to the --reference row measured in this run.

    python benchmarks/scaling.py                       # local_mt, local_mp (2 actors), anakin; 120 s each
    python benchmarks/scaling.py --seconds=60 --lp_launch_type=local_mp,anakin --actors=1,2,4
"""

from __future__ import annotations

import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app, flags

from benchmarks import runs

FLAGS = flags.FLAGS
flags.DEFINE_list("lp_launch_type", ["local_mt", "local_mp", "anakin"],
                  "Launch types to run, in this order (apex.py's --lp_launch_type).")
flags.DEFINE_list("actors", ["2"], "Actor-process counts to run under local_mp (local_mt runs "
                  "the first of them; anakin has no actors).")
flags.DEFINE_float("seconds", 120.0, "Wall-clock budget of every configuration (--max_seconds).")
flags.DEFINE_float("sharpe_threshold", 1.5, "Validation Sharpe that counts as learned.")
flags.DEFINE_integer("eval_every", 100, "Learner steps between evaluations (every launch type).")
flags.DEFINE_integer("seed", 0, "Seed of the market and the agent.")
flags.DEFINE_string("reference", "local_mp, 2 actors", "The row the ratios divide by.")
flags.DEFINE_list("apex_flags", [], "More apex.py flags for every configuration.")
flags.DEFINE_string("out", None, "Output folder (default: benchmarks/out/scaling_<time>).")


def ratio(value, reference):
    if value is None or not reference:
        return None
    return value / reference


def configurations() -> list[tuple[str, list[str]]]:
    """(name, apex.py flags) of each configuration, in --lp_launch_type's order."""
    actors = [int(n) for n in FLAGS.actors]
    result = []
    for launch_type in FLAGS.lp_launch_type:
        if launch_type == "anakin":
            result.append(("anakin", ["--lp_launch_type=anakin"]))
        elif launch_type in ("local_mt", "local_mp"):
            counts = actors[:1] if launch_type == "local_mt" else actors
            result += [(f"{launch_type}, {n} actor{'s' if n > 1 else ''}",
                        [f"--lp_launch_type={launch_type}", f"--num_actors={n}"]) for n in counts]
        else:
            raise app.UsageError(f"--lp_launch_type={launch_type}: expected local_mt, local_mp "
                                 "or anakin (ray needs a cluster: not a single-machine benchmark)")
    return result


def main(argv) -> None:
    del argv
    out = pathlib.Path(FLAGS.out or runs.REPO_ROOT / "benchmarks" / "out" /
                       f"scaling_{time.strftime('%Y%m%d_%H%M%S')}")
    common = ["--data=synthetic:ou", f"--seed={FLAGS.seed}", f"--max_seconds={FLAGS.seconds}",
              f"--eval_every={FLAGS.eval_every}", *FLAGS.apex_flags]
    measured = {}
    for name, launch_flags in configurations():
        folder = name.replace(", ", "_").replace(" ", "_")
        measured[name] = runs.run_apex(out / folder, [*launch_flags, *common],
                                       timeout_s=FLAGS.seconds + 300)
    threshold = FLAGS.sharpe_threshold
    reference = measured.get(FLAGS.reference)

    def reference_value(get):
        return get(reference) if reference is not None else None

    rows = []
    for name, run in measured.items():
        summary = run.summary
        from_start = run.seconds_to_sharpe_from(threshold, "start")
        from_first = run.seconds_to_sharpe_from(threshold, "first_step")
        best, best_s, best_step = run.best_validation()
        rows.append([
            name, summary["learner_steps_per_s"],
            ratio(summary["learner_steps_per_s"], reference_value(lambda r: r.summary["learner_steps_per_s"])),
            summary["env_steps_per_s"],
            ratio(summary["env_steps_per_s"], reference_value(lambda r: r.summary["env_steps_per_s"])),
            from_start, ratio(from_start, reference_value(lambda r: r.seconds_to_sharpe_from(threshold, "start"))),
            from_first, ratio(from_first, reference_value(lambda r: r.seconds_to_sharpe_from(threshold, "first_step"))),
            best, best_s, best_step, summary["test"]["sharpe"],
        ])
    print(f"\nOU process seed {FLAGS.seed}, {FLAGS.seconds:g} s per configuration (--max_seconds), "
          f"evaluations every {FLAGS.eval_every} learner steps; threshold: validation Sharpe >= "
          f"{threshold:g}; x: ratio to the '{FLAGS.reference}' row:")
    table = runs.print_table(
        ["configuration", "updates/s", "x", "env steps/s", "x", "s to threshold (from start)", "x",
         "s to threshold (from first update)", "x", "best validation Sharpe", "at s", "at step",
         "test Sharpe of the selection"], rows)
    (out / "results.md").write_text(table + "\n")


if __name__ == "__main__":
    app.run(main)
