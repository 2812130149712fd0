"""The replay node: the Reverb server with the builder's tables, checkpointed for --restore when
the builder says its replay is worth keeping."""

from __future__ import annotations

import math
import threading
from typing import Any

from agents.registry import get_builder
from launch.distributed.engine import node_host


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
