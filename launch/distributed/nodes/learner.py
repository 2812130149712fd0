"""The replay node (the Reverb server with the builder's tables) and the learner node (steps
the builder's learner, serves its variables, checkpoints)."""

from __future__ import annotations

import gc
import logging
import math
import os
import threading
import time
from typing import Any, Mapping, Sequence

from agents.registry import get_builder
from launch.distributed.ray_engine import node_host
from launch.run import checkpoints
from launch.run.recorder import LOG_EVERY_S

log = logging.getLogger(__name__)


class ReplayNode:
    """The Reverb server with the builder's tables.

    When the builder says its replay is worth keeping (`REPLAY_CHECKPOINTED`), the tables are
    checkpointed into `checkpoint_dir` at close, and Reverb's checkpointer loads the newest
    checkpoint found there when the server starts, which is how --restore brings the replay
    contents back. Otherwise (an on-policy queue) the server starts empty and keeps nothing.
    """

    def __init__(self, agent: str, config: Any, spec: Any, checkpoint_dir: str):
        import reverb

        builder = get_builder(agent)
        tables = builder.make_replay_tables(config, spec)
        self._checkpointed = bool(getattr(builder, "REPLAY_CHECKPOINTED", True))
        checkpointer = (reverb.checkpointers.DefaultCheckpointer(path=checkpoint_dir)
                        if self._checkpointed else None)
        self._server = reverb.Server(tables, port=None, checkpointer=checkpointer)
        self._client = self._server.localhost_client()
        self._address = f"{node_host()}:{self._server.port}"
        self._closed = False
        self._releasing: threading.Thread | None = None
        self._stop_releasing = threading.Event()

    def address(self) -> str:
        """host:port of the server, reachable from the other nodes."""
        return self._address

    def size(self) -> int:
        """Items now in all tables."""
        if self._closed:
            return self._final_size
        return int(sum(info.current_size for info in self._client.server_info().values()))

    def stop(self) -> None:
        """The program stops: lets in the inserts that a table's rate limiter holds back once
        the learner no longer samples (actors waiting for room), by sampling (and dropping) what
        the limiter allows while it holds inserts back, until close(). That never takes a
        sample a still-running learner needs (it stops short of the limit on samples), neither
        removes nor changes a prioritized table's items, and a queue is not kept anyway
        (REPLAY_CHECKPOINTED)."""
        if self._releasing is None and not self._closed:
            self._releasing = threading.Thread(target=self._release, name="replay_release",
                                               daemon=True)
            self._releasing.start()

    def _release(self) -> None:
        import reverb

        address = f"localhost:{self._server.port}"
        while not self._stop_releasing.is_set():
            sampled = False
            for name, info in self._client.server_info().items():
                count = admissible_samples(info.rate_limiter_info, info.current_size)
                if count >= 1:
                    # Another sampler (the learner's prefetch) may take them first: a sample
                    # that would wait ends the dataset after 50 ms instead of blocking.
                    dataset = reverb.TrajectoryDataset.from_table_signature(
                        address, name, max_in_flight_samples_per_worker=1,
                        num_workers_per_iterator=1, rate_limiter_timeout_ms=50)
                    for _ in dataset.take(count).as_numpy_iterator():
                        sampled = True
            if not sampled:
                self._stop_releasing.wait(0.02)

    def close(self) -> None:
        """Checkpoints the tables, then stops the server (unblocking any waiting client)."""
        if self._closed:
            return
        self._stop_releasing.set()
        if self._releasing is not None:
            self._releasing.join()
        self._final_size = self.size()
        # A closed-early replay (see Launched.stop) may still take inserts while it checkpoints
        # (a learner's prefetch can let a rate-limited actor through): checkpoint again until
        # the item count before and after agree, so replay_items is what the checkpoint holds.
        for _ in range(5) if self._checkpointed else ():
            self._client.checkpoint()
            size = self.size()
            if size == self._final_size:
                break
            self._final_size = size
        self._closed = True
        self._server.stop()


def admissible_samples(limiter: Any, size: int) -> int:
    """How many samples Reverb's rate limiter (a RateLimiterInfo) allows now, counted only
    while it holds inserts back (0 otherwise): with D = inserts * samples_per_insert -
    samples, an insert waits while D + samples_per_insert > max_diff, a sample goes while
    D - 1 >= min_diff and the table holds min_size_to_sample items."""
    spi, inserts = limiter.samples_per_insert, limiter.insert_stats.completed
    diff = inserts * spi - limiter.sample_stats.completed
    if diff + spi <= limiter.max_diff or size < limiter.min_size_to_sample:
        return 0
    return max(0, math.floor(diff - limiter.min_diff))


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
        self._checkpoint_every = checkpoint_every
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._params_served = 0
        self._restored_step = 0
        if restore:
            self._restored_step, state = checkpoints.load_latest(checkpoint_dir, self._learner.save())
            self._learner.restore(state)
        self._steps = self._restored_step
        self._saved_step = self._restored_step if restore else -1

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
            if self._checkpoint_every and self._steps % self._checkpoint_every == 0:
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
        self._saved_step = self._steps

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        """Writes the final checkpoint (unless this step is saved already), then closes the
        learner (its own threads and pending work)."""
        if self._saved_step != self._steps:
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
