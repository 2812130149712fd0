"""Test-wide settings: quiet TensorFlow/Reverb logs, pin JAX to the CPU, compile fast.

These must be set before the first import of jax or tensorflow anywhere in the run. The
launchers that end-to-end tests start in subprocesses inherit them.
"""

import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# JAX's own switch for tests: XLA compiles without its expensive optimisation passes (backend
# optimisation level 0). The suite's programs are tiny, so they spend their time compiling, not
# running: the anakin end-to-end tests took 71 s instead of 112 s on 2 cores (2026-12-02).
# Results are the same up to float rounding; runs outside the tests compile as usual.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# Real market data that ships beside the repository for tests; absent in a user's clone.
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
