"""Test-wide settings: quiet TensorFlow/Reverb logs, pin JAX to the CPU, compile fast, and skip
the tests marked `reverb` where the Reverb program's packages are not installed.

These must be set before the first import of jax or tensorflow anywhere in the run. The
launchers that end-to-end tests start in subprocesses inherit them.
"""

import atexit
import importlib.util
import os
import pathlib
import shutil
import sys
import tempfile

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# JAX's own switch for tests: XLA compiles without its expensive optimisation passes (backend
# optimisation level 0). The suite's programs are tiny, so they spend their time compiling, not
# running: the anakin end-to-end tests took 71 s instead of 112 s on 2 cores (2026-12-02).
# Results are the same up to float rounding; runs outside the tests compile as usual.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
# The random bits of jax 0.4 (requirements.txt) on every stack: jax >= 0.5 turned on the
# partitionable threefry, which draws other numbers from the same key (BUILD.md).
os.environ.setdefault("JAX_THREEFRY_PARTITIONABLE", "false")
# The launchers' persistent compilation cache (jax >= 0.5; launch/run/compilation.py) in a folder
# of this session, not the user's: the end-to-end runs load each other's programs from it.
if "APEX_COMPILATION_CACHE" not in os.environ:
    os.environ["APEX_COMPILATION_CACHE"] = tempfile.mkdtemp(prefix="apex-trader-jax-cache-")
    atexit.register(shutil.rmtree, os.environ["APEX_COMPILATION_CACHE"], ignore_errors=True)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# Real market data that ships beside the repository for tests; absent in a user's clone.
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

# What the tests marked `reverb` need: requirements.txt's stack; requirements-today.txt has none.
REVERB_PROGRAM_PACKAGES = ("reverb", "tensorflow", "ray")


def pytest_collection_modifyitems(config, items):
    missing = [name for name in REVERB_PROGRAM_PACKAGES if importlib.util.find_spec(name) is None]
    if not missing:
        return
    skip = pytest.mark.skip(reason=f"needs {', '.join(missing)} (requirements.txt)")
    for item in items:
        if "reverb" in item.keywords:
            item.add_marker(skip)
