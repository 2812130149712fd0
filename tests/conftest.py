"""Test-wide settings: quiet TensorFlow/Reverb logs and pin JAX to the CPU.

These must be set before the first import of jax or tensorflow anywhere in the run.
"""

import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# Real market data that ships beside the repository for tests; absent in a user's clone.
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
