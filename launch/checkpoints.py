"""Learner checkpoints: the learner's `save()` pytree as flax msgpack bytes, one file per step.

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


def save(directory: str, step: int, state: Any, keep: int = 3) -> str:
    from flax import serialization

    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"learner_{step}.msgpack")
    temporary = path + ".tmp"
    with open(temporary, "wb") as file:
        file.write(serialization.to_bytes(state))
    os.replace(temporary, path)
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
            return steps[-1], serialization.from_bytes(template, file.read())
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path}: does not match this learner's state: {error}") from None
