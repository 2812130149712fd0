"""Training on a trading market: `python launch/apex.py --lp_launch_type=local_mp` trains
Ape-X DQN by default; `--agent=<name>` runs any agent of agents/registry.py.

The flags (launch/flags.py) are checked into a `Setup` before anything starts
(launch/run/setup.py); then the launch type runs: the actor-learner program of nodes for local_mt,
local_mp and ray (launch/distributed/driver.py), or one compiled program on this host's devices for
anakin (launch/anakin/driver.py). Either shows a live progress line, stops at the first limit reached
(or on an error, Ctrl-C or SIGTERM), and leaves in the workdir: metrics.jsonl, TensorBoard
events, eval plots, learner (and replay) checkpoints, and summary.json (launch/run/summary.py).
"""

from __future__ import annotations

import os
import sys

# Before anything imports jax or tensorflow (in this process; node processes get the same
# through Ray's runtime_env).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# jax 0.4's random bits on every stack: jax >= 0.5 draws other numbers from the same key
# (partitionable threefry), so the same flags and seed would train another agent (BUILD.md).
os.environ.setdefault("JAX_THREEFRY_PARTITIONABLE", "false")

# `python launch/apex.py` puts launch/ first on sys.path: the packages (`launch`, `agents`,
# `environments`) would not import, and launch's modules would import a second time under
# top-level names (`flags`, `setup`). The repository root takes launch/'s place.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.join(REPO_ROOT, "launch"):
    sys.path[0] = REPO_ROOT
elif REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import logging  # noqa: E402

from absl import app, flags  # noqa: E402

from launch import flags as launch_flags  # noqa: E402
from launch.flags import FLAGS  # noqa: E402
from launch.run import compilation, progress  # noqa: E402
from launch.run.setup import Setup, UsageError, make_setup  # noqa: E402

# This module's own name when imported; "__main__" when run as a script.
log = logging.getLogger("launch.apex")


def run(setup: Setup) -> int:
    """Runs `setup` under its launch type; returns the exit code."""
    os.makedirs(setup.workdir, exist_ok=True)
    with open(os.path.join(setup.workdir, "flags.txt"), "a") as file:
        file.write(setup.flags_text + "\n")
    log.info("workdir: %s", setup.workdir)
    if setup.launch_type == "anakin":
        from launch.anakin import driver as anakin

        return anakin.run(setup)
    from launch.distributed import driver as distributed

    return distributed.run(setup)


HELP_ARGUMENTS = ("--help", "-help", "-h", "-?", "--help=true", "--help=1")


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing that fails with one line (the flag, the value, what was expected).
    --help lists every flag of the project by group and exits 0 (absl's own --help lists only
    this module's flags, none, and exits 1); --helpfull stays absl's."""
    if any(argument in HELP_ARGUMENTS for argument in argv[1:]):
        print(launch_flags.help_text())
        sys.exit(0)
    try:
        return FLAGS(argv)
    except flags.Error as error:
        print(f"apex.py: error: {error}", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        print(f"apex.py: error: unexpected arguments {argv[1:]} (flags are --name=value)", file=sys.stderr)
        sys.exit(2)
    progress.configure_logging()
    try:
        compilation.enable(FLAGS.compilation_cache)  # before anything compiles
        sys.exit(run(make_setup(FLAGS)))
    except UsageError as error:  # a flag's value is wrong; under anakin also while building
        print(f"apex.py: error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
