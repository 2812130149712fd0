"""The pure maths modules and the Anakin agents import neither Reverb nor TensorFlow (checked in
a fresh interpreter), so a fully jitted loop can use them on a machine without either."""

import os
import subprocess
import sys
import textwrap

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PURE_MODULES = [
    "agents.core",
    "agents.layouts",
    "agents.sgd",
    "agents.jax_replay",
    "agents.apex_dqn.acting",
    "agents.apex_dqn.anakin",
    "agents.apex_dqn.losses",
    "agents.apex_dqn.networks",
    "agents.impala.acting",
    "agents.impala.anakin",
    "agents.impala.losses",
    "agents.impala.networks",
]


@pytest.mark.parametrize("module", PURE_MODULES)
def test_module_imports_without_reverb_and_tensorflow(module):
    script = textwrap.dedent(f"""
        import importlib, sys
        importlib.import_module({module!r})
        loaded = sorted(name for name in ("reverb", "tensorflow", "rlax") if name in sys.modules)
        print("LOADED", ",".join(loaded))
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": REPO_ROOT})
    assert result.returncode == 0, result.stderr
    assert "LOADED \n" in result.stdout, f"{module} loaded {result.stdout.strip()}"
