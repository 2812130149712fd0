"""The pure maths modules, the Anakin agents, the builders and what --lp_launch_type=anakin
imports load neither Reverb nor TensorFlow (checked in a fresh interpreter), so a fully jitted
loop can use them on a machine without either, and anakin's start-up does not pay for them."""

import os
import subprocess
import sys
import textwrap

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
    # Builders import Reverb in the functions that need it: anakin never calls those.
    "agents.apex_dqn.builder",
    "agents.impala.builder",
    "agents.registry",
    "launch.run.setup",
    "launch.anakin.driver",
]


def test_modules_import_without_reverb_and_tensorflow():
    """One interpreter imports the modules in turn and names, for each, what its import added
    of reverb, tensorflow and rlax (a module that loads one is the first to add it)."""
    script = textwrap.dedent(f"""
        import importlib, sys
        for module in {PURE_MODULES!r}:
            before = set(sys.modules)
            importlib.import_module(module)
            added = sorted(name for name in ("reverb", "tensorflow", "rlax")
                           if name in sys.modules and name not in before)
            print("LOADED", module, ",".join(added))
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": REPO_ROOT})
    assert result.returncode == 0, result.stderr
    lines = [line.split(" ", 2) for line in result.stdout.splitlines() if line.startswith("LOADED")]
    assert [module for _, module, _ in lines] == PURE_MODULES, result.stdout
    assert {module: added for _, module, added in lines if added} == {}
