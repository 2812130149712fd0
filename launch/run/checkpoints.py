"""Learner checkpoints: the learner's `save()` pytree as flax msgpack bytes, one file per step;
and the parameters kept by model selection (the best validation Sharpe so far).

Files are `<dir>/learner_<step>.msgpack`, written atomically (temporary file, then rename);
the newest `keep` are kept. Restoring needs a template pytree of the same structure (a fresh
learner's `save()`), which flax checks the file against.
"""

from __future__ import annotations

import os
import re
from typing import Any

_NAME = re.compile(r"^learner_(\d+)\.msgpack$")


def checkpoint_steps(directory: str) -> list[int]:
    """Steps that have a learner checkpoint in `directory`, oldest first."""
    if not os.path.isdir(directory):
        return []
    return sorted(int(m.group(1)) for m in map(_NAME.match, os.listdir(directory)) if m)


def _write_atomically(path: str, data: bytes) -> None:
    temporary = path + ".tmp"
    with open(temporary, "wb") as file:
        file.write(data)
    os.replace(temporary, path)


def save(directory: str, step: int, state: Any, keep: int = 3) -> str:
    from flax import serialization

    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"learner_{step}.msgpack")
    _write_atomically(path, serialization.to_bytes(state))
    for old in checkpoint_steps(directory)[:-keep]:
        os.remove(os.path.join(directory, f"learner_{old}.msgpack"))
    return path


def load_latest(directory: str, template: Any) -> tuple[int, Any]:
    """(step, state) of the newest checkpoint; FileNotFoundError when there is none."""
    from flax import serialization

    steps = checkpoint_steps(directory)
    if not steps:
        raise FileNotFoundError(f"no learner checkpoint (learner_<step>.msgpack) in {directory}")
    path = os.path.join(directory, f"learner_{steps[-1]}.msgpack")
    with open(path, "rb") as file:
        try:
            state = serialization.from_bytes(template, file.read())
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path}: does not match this learner's state: {error}") from None
    _check_shapes(path, template, state)  # flax restores an array of any shape
    return steps[-1], state


def _check_shapes(path: str, template: Any, state: Any) -> None:
    import jax
    import numpy as np

    flat_template = jax.tree_util.tree_flatten_with_path(template)[0]
    for (where, expected), actual in zip(flat_template, jax.tree_util.tree_leaves(state)):
        if np.shape(expected) != np.shape(actual):
            raise ValueError(f"{path}: does not match this learner's state: "
                             f"{jax.tree_util.keystr(where)} has shape {np.shape(actual)}, "
                             f"expected {np.shape(expected)}")


# ----------------------------------------------------------------------------- best params

BEST_PARAMS = "params.msgpack"
BEST_METADATA = "best.json"


def save_best(directory: str, params: Any, metadata: dict) -> None:
    """Keeps `params` (flax msgpack) and `metadata` (JSON) as the best so far in `directory`;
    the parameters are written before the metadata that points at them."""
    import json

    from flax import serialization

    os.makedirs(directory, exist_ok=True)
    _write_atomically(os.path.join(directory, BEST_PARAMS), serialization.to_bytes(params))
    _write_atomically(os.path.join(directory, BEST_METADATA),
                      json.dumps(metadata, indent=2).encode())


def load_best_metadata(directory: str) -> dict | None:
    """best.json's contents, or None when no parameters were kept yet."""
    import json

    path = os.path.join(directory, BEST_METADATA)
    if not os.path.isfile(path):
        return None
    with open(path) as file:
        return json.load(file)


def load_best_params(directory: str) -> Any:
    """The kept parameters, as nested dicts of arrays (what flax's apply takes)."""
    from flax import serialization

    with open(os.path.join(directory, BEST_PARAMS), "rb") as file:
        return serialization.msgpack_restore(file.read())
