"""Do parallel actors cut training time? Runs apex.py's defaults (the OU process, the small
preset) as a single-process baseline (`--lp_launch_type=local_mt --num_actors=1`: one process
where acting, inserting into Reverb and learning take turns under one interpreter lock) and
with 1, 2 and 4 actor processes (`local_mp`), each for the same wall-clock budget, and prints
env steps/s, learner steps/s, mean parameter lag and seconds to a first validation Sharpe at
or above a threshold (the test split plays no part), each with its ratio to the baseline
measured in this same run.

    python benchmarks/scaling.py                       # 180 s per configuration
    python benchmarks/scaling.py --seconds=60 --actors=1,2
"""

from __future__ import annotations

import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app, flags

from benchmarks import runs

FLAGS = flags.FLAGS
flags.DEFINE_list("actors", ["1", "2", "4"], "Actor-process counts to run under local_mp.")
flags.DEFINE_float("seconds", 180.0, "Wall-clock budget of every configuration.")
flags.DEFINE_float("sharpe_threshold", 1.0, "Validation Sharpe that counts as learned.")
flags.DEFINE_integer("eval_every", 100, "Learner steps between evaluations.")
flags.DEFINE_integer("seed", 0, "Seed of the market and the agent.")
flags.DEFINE_list("apex_flags", [], "More apex.py flags for every configuration.")
flags.DEFINE_string("out", None, "Output folder (default: benchmarks/out/scaling_<time>).")


def ratio(value, baseline):
    if value is None or not baseline:
        return None
    return value / baseline


def main(argv) -> None:
    del argv
    out = pathlib.Path(FLAGS.out or runs.REPO_ROOT / "benchmarks" / "out" /
                       f"scaling_{time.strftime('%Y%m%d_%H%M%S')}")
    common = ["--data=synthetic:ou", f"--seed={FLAGS.seed}", f"--max_seconds={FLAGS.seconds}",
              f"--eval_every={FLAGS.eval_every}", *FLAGS.apex_flags]
    configurations = [("baseline: local_mt, 1 actor", "local_mt", 1)]
    configurations += [(f"local_mp, {n} actor{'s' if n > 1 else ''}", "local_mp", n)
                       for n in map(int, FLAGS.actors)]
    measured = []
    for name, launch_type, num_actors in configurations:
        run = runs.run_apex(out / f"{launch_type}_{num_actors}",
                            [f"--lp_launch_type={launch_type}", f"--num_actors={num_actors}", *common],
                            timeout_s=FLAGS.seconds + 300)
        measured.append((name, run.summary, run.seconds_to_sharpe(FLAGS.sharpe_threshold)))

    _, base, base_seconds = measured[0]
    rows = []
    for name, summary, seconds in measured:
        rows.append([
            name, summary["env_steps_per_s"], ratio(summary["env_steps_per_s"], base["env_steps_per_s"]),
            summary["learner_steps_per_s"], ratio(summary["learner_steps_per_s"], base["learner_steps_per_s"]),
            summary["mean_param_lag"], seconds, ratio(seconds, base_seconds),
            summary["validation"]["best_sharpe"],
        ])
    print(f"\nOU process seed {FLAGS.seed}, {FLAGS.seconds:g} s per configuration; "
          f"threshold: validation Sharpe >= {FLAGS.sharpe_threshold:g}; ratios to the baseline row:")
    table = runs.print_table(
        ["configuration", "env steps/s", "x", "learner steps/s", "x", "mean param lag",
         "s to threshold", "x", "best validation Sharpe"], rows)
    (out / "results.md").write_text(table + "\n")


if __name__ == "__main__":
    app.run(main)
