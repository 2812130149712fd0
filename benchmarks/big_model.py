"""Does a large model fit? Train a transformer torso of >= 1M parameters over a long window with
`launch/apex.py` under each launch type for a short budget, and print its parameter count, the
peak memory of the whole process tree (the launcher, Ray's processes and every node, sampled
twice a second) and the machine's memory, from the summary.json the run writes.

    python benchmarks/big_model.py                                   # local_mp and anakin
    python benchmarks/big_model.py --lp_launch_type=anakin --window=512 --seconds=60

The flags of each run are printed; more go through --apex_flags.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import psutil
from absl import app, flags

from benchmarks import runs

FLAGS = flags.FLAGS
flags.DEFINE_list("lp_launch_type", ["local_mp", "anakin"], "Launch types to run, one after another.")
flags.DEFINE_string("agent", "apex_dqn", "Agent (a name in agents/registry.py).")
flags.DEFINE_integer("window", 256, "Bars in one observation.")
flags.DEFINE_string("torso_config", "torso=transformer,torso_width=256,torso_depth=2,torso_heads=4",
                    "The torso settings (apex.py's --agent_config).")
flags.DEFINE_float("seconds", 90.0, "Training budget of each run (apex.py's --max_seconds).")
flags.DEFINE_list("apex_flags", [], "More apex.py flags.")
flags.DEFINE_string("out", None, "Output folder (default: benchmarks/out/big_model_<time>).")


def tree_rss(root: psutil.Process) -> int:
    """Resident bytes of `root` and all its descendants (Ray's workers are among them)."""
    total = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            total += process.memory_info().rss
        except psutil.Error:
            pass
    return total


def run(out: pathlib.Path, launch_type: str) -> dict:
    workdir = out / launch_type
    command = [sys.executable, str(runs.REPO_ROOT / "launch" / "apex.py"), f"--workdir={workdir}",
               f"--lp_launch_type={launch_type}", f"--agent={FLAGS.agent}", f"--window={FLAGS.window}",
               f"--agent_config={FLAGS.torso_config}", f"--max_seconds={FLAGS.seconds}", *FLAGS.apex_flags]
    print("$", " ".join(command[1:]), flush=True)
    peak = {"bytes": 0}
    with open(out / f"{launch_type}.log", "w") as log:
        process = subprocess.Popen(command, cwd=runs.REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        root = psutil.Process(process.pid)
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.5):
                peak["bytes"] = max(peak["bytes"], tree_rss(root))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            returncode = process.wait(timeout=FLAGS.seconds + 900)
        finally:
            done.set()
            if process.poll() is None:
                process.kill()
    if returncode != 0:
        tail = (out / f"{launch_type}.log").read_text().splitlines()[-20:]
        raise RuntimeError(f"apex.py exited {returncode}:\n" + "\n".join(tail))
    summary = json.loads((workdir / "summary.json").read_text())
    return {"launch type": launch_type, "parameters": summary.get("parameter_count"),
            "learner steps": summary["learner_steps"], "env steps": summary["env_steps"],
            "peak RSS (GiB)": peak["bytes"] / 2**30, "wall s": summary["wall_s"],
            "validation Sharpe": summary["validation"]["best_sharpe"],
            "test Sharpe": summary["test"]["sharpe"], "errors": len(summary["errors"])}


def main(argv) -> None:
    del argv
    out = pathlib.Path(FLAGS.out or runs.REPO_ROOT / "benchmarks" / "out" /
                       f"big_model_{time.strftime('%Y%m%d_%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    rows = [run(out, launch_type) for launch_type in FLAGS.lp_launch_type]
    memory = psutil.virtual_memory().total / 2**30
    print(f"\n{FLAGS.agent}, {FLAGS.torso_config}, window {FLAGS.window}, {FLAGS.seconds:g} s each; "
          f"this machine: {psutil.cpu_count()} CPUs, {memory:.1f} GiB of memory")
    headers = list(rows[0])
    table = runs.print_table(headers, [[row[key] for key in headers] for row in rows])
    (out / "results.md").write_text(table + "\n")


if __name__ == "__main__":
    app.run(main)
