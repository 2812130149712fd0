"""The recorder node: every node's metrics go to one metrics.jsonl and one TensorBoard log.

Metric names are namespaced by node (`learner/loss`, `actor_0/env_steps_per_s`); a key that
already holds a '/' is kept as it is. The recorder also keeps the latest record of every
(node, process) so the launcher can show progress and write the run's summary.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from typing import Any, Mapping

import tensorboardX

LOG_EVERY_S = 2.0  # seconds between metric records of one node


class Recorder:
    """A service node: `write` from any node, `latest` for the launcher; closes its files."""

    def __init__(self, workdir: str, tensorboard_flush_s: int = 10):
        os.makedirs(workdir, exist_ok=True)
        self._lock = threading.Lock()
        self._start = time.time()
        self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", buffering=1)
        self._tensorboard = tensorboardX.SummaryWriter(
            os.path.join(workdir, "tensorboard"), flush_secs=tensorboard_flush_s
        )
        self._latest: dict[tuple[str, int | None], dict[str, Any]] = {}
        self._writes: dict[str, int] = {}
        self._sums: dict[str, list[float]] = {}  # key -> [sum, count] over the whole run
        self._registered: dict[str, int] = {}
        self._closed = False

    def register(self, label: str) -> int:
        """Counts a process of node `label` starting: 0 for the first, 1 after a restart, ..."""
        with self._lock:
            incarnation = self._registered.get(label, 0)
            self._registered[label] = incarnation + 1
            return incarnation

    def write(self, node: str, record: Mapping[str, Any], step: int | None = None) -> None:
        """Logs one record of `node` (plain names get the `node/` prefix).

        `step` is the record's x-axis in TensorBoard (learner steps, env steps); the record's
        `pid` key, when given, tells processes of the same node apart.
        """
        now = time.time()
        named = {key if "/" in key else f"{node}/{key}": _plain(value) for key, value in record.items()}
        with self._lock:
            if self._closed:
                return
            count = self._writes.get(node, 0)
            self._writes[node] = count + 1
            step = count if step is None else int(step)
            line = {"node": node, "step": step, "time": round(now, 3),
                    "elapsed_s": round(now - self._start, 3), **named}
            self._jsonl.write(json.dumps(line) + "\n")
            for key, value in named.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self._tensorboard.add_scalar(key, value, global_step=step, walltime=now)
                    total = self._sums.setdefault(key, [0.0, 0])
                    total[0] += value
                    total[1] += 1
            self._latest[(node, record.get("pid"))] = {"node": node, "step": step, "time": now, **named}

    def latest(self) -> list[dict[str, Any]]:
        """The newest record of every (node, pid), oldest node first."""
        with self._lock:
            return [dict(record) for record in self._latest.values()]

    def mean(self, suffix: str) -> float | None:
        """Mean over every record of the run of the keys ending in `suffix` (None if none)."""
        with self._lock:
            totals = [total for key, total in self._sums.items() if key.endswith(suffix)]
        count = sum(total[1] for total in totals)
        return sum(total[0] for total in totals) / count if count else None

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._jsonl.close()
            self._tensorboard.close()


def _plain(value: Any) -> Any:
    """JSON-friendly values: numpy/jax numbers become Python numbers; inf/nan become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if hasattr(value, "item") and getattr(value, "size", 1) == 1:
        return _plain(value.item())
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return str(value)
