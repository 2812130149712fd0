"""The agents launch/ can run, by name: each is a package holding `config.py` (its config
dataclass `Config` and `make_config(preset, **overrides)`, importing nothing heavy) and
`builder.py` (the builder functions of agents/apex_dqn/builder.py). Packages are imported on
first use, so a bad flag is reported before jax, TensorFlow or Reverb load."""

import importlib
from types import ModuleType
from typing import Any

AGENTS: dict[str, Any] = {
    "apex_dqn": "agents.apex_dqn",
    "impala": "agents.impala",
}


def _check(name: str) -> Any:
    if name not in AGENTS:
        raise ValueError(f"--agent={name!r} is not in agents/registry.py; known: {sorted(AGENTS)}")
    return AGENTS[name]


def get_builder(name: str) -> Any:
    """The builder module of agent `name` (an entry may also be a builder object itself)."""
    entry = _check(name)
    return importlib.import_module(f"{entry}.builder") if isinstance(entry, str) else entry


def get_config_module(name: str) -> ModuleType | Any:
    """What offers `Config` and `make_config` for agent `name`, without importing its builder."""
    entry = _check(name)
    return importlib.import_module(f"{entry}.config") if isinstance(entry, str) else entry
