"""The learner node: steps the builder's learner, serves its variables, checkpoints."""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from typing import Any, Mapping, Sequence

from agents.registry import get_builder
from launch.run import checkpoints
from launch.run.limits import CheckpointCadence
from launch.run.recorder import LOG_EVERY_S

log = logging.getLogger(__name__)


class LearnerNode:
    """Steps the builder's learner; serves its variables; checkpoints every N steps and at the end."""

    def __init__(
        self,
        agent: str,
        config: Any,
        spec: Any,
        replay: Any,
        recorder: Any,
        seed: int,
        checkpoint_dir: str,
        max_learner_steps: int = 0,
        checkpoint_every: int = 1000,
        restore: bool = False,
    ):
        self._learner = get_builder(agent).make_learner(config, spec, replay.address(), seed)
        self._recorder = recorder
        self._checkpoint_dir = checkpoint_dir
        self._max_steps = max_learner_steps
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._params_served = 0
        self._restored_step = 0
        if restore:
            self._restored_step, state = checkpoints.load_latest(checkpoint_dir, self._learner.save())
            self._learner.restore(state)
        self._steps = self._restored_step
        self._cadence = CheckpointCadence(checkpoint_every, self._restored_step if restore else -1)

    # Served to other nodes while run() goes on (the learner's get_variables is thread-safe).
    def get_variables(self, names: Sequence[str]) -> list[Any]:
        if "params" in names:
            with self._lock:
                self._params_served += 1
        return self._learner.get_variables(list(names))

    def learner_steps(self) -> int:
        return self._steps

    def run(self) -> None:
        pid = os.getpid()
        last_log = time.monotonic()
        steps_at_last_log = self._steps
        metrics: Mapping[str, Any] = {}
        while not self._stop.is_set():
            if self._max_steps and self._steps >= self._max_steps:
                break
            try:
                metrics = self._learner.step()
            except Exception:
                if self._stop.is_set():
                    break  # the replay was closed under a sampling learner: we are stopping.
                raise
            self._steps += 1
            if self._cadence.due(self._steps):
                self._save()
            now = time.monotonic()
            if self._steps == self._restored_step + 1:
                self._log(metrics, None, pid)  # its time in metrics.jsonl: when training began
            elif now - last_log >= LOG_EVERY_S:
                self._log(metrics, (self._steps - steps_at_last_log) / (now - last_log), pid)
                last_log, steps_at_last_log = now, self._steps
        self._log(metrics, None, pid)

    def _log(self, metrics: Mapping[str, Any], steps_per_s: float | None, pid: int) -> None:
        record = {key: value for key, value in metrics.items()}
        record.update(learner_steps=self._steps, params_served=self._params_served, pid=pid)
        if steps_per_s is not None:
            record["learner_steps_per_s"] = steps_per_s
        self._recorder.write("learner", record, step=self._steps)

    def _save(self) -> None:
        checkpoints.save(self._checkpoint_dir, self._steps, self._learner.save())
        self._cadence.saved(self._steps)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        """Writes the final checkpoint (unless this step is saved already), then closes the
        learner (its own threads and pending work)."""
        if self._cadence.due_at_end(self._steps):
            self._save()
        try:
            self._learner.close()
        except Exception as error:  # noqa: BLE001 - e.g. a priority update to a closed replay
            log.warning("learner: closing the learner failed (was the replay closed first, "
                        "see Launched.stop?): %s", error)
        # Its sample iterator (a Reverb dataset) is torn down now, while the replay still runs:
        # torn down at the interpreter's exit, after the replay stopped, it waits seconds.
        self._learner = None
        gc.collect()
