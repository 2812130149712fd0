"""The local_mt engine: every node is built in this process and runs in a thread; a node's
client is the node object itself."""

from __future__ import annotations

import os
import threading
import time
import traceback
from typing import Any

from launch.distributed.engine import Launched, NodeError, ProgramLike


class ThreadLaunched(Launched):
    launch_type = "local_mt"

    def __init__(self, program: ProgramLike):
        super().__init__(program)
        self._objects: dict[str, Any] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._ended: list[tuple[str, NodeError | None]] = []
        self._changed = threading.Condition()
        try:
            for label, node in program.nodes.items():
                try:
                    args, kwargs = node.arguments(self._objects)
                    self._objects[label] = node.constructor(*args, **kwargs)
                except Exception:
                    raise NodeError(label, traceback.format_exc()) from None
            self.clients = dict(self._objects)
            for label, obj in self._objects.items():
                if hasattr(obj, "run"):
                    self._workers.add(label)
                    thread = threading.Thread(
                        target=self._run, args=(label, obj), name=f"node:{label}", daemon=True
                    )
                    self._threads[label] = thread
                    thread.start()
        except BaseException:
            self._stopped = True
            self.close()
            raise

    def _run(self, label: str, obj: Any) -> None:
        error = None
        try:
            obj.run()
        except BaseException:  # noqa: BLE001 - reported with the node's name.
            error = NodeError(label, traceback.format_exc())
        with self._changed:
            self._ended.append((label, error))
            self._changed.notify_all()

    def _poll(self, timeout_s: float) -> list[tuple[str, NodeError | None]]:
        with self._changed:
            if not self._ended:
                self._changed.wait(timeout_s)
            ended, self._ended = self._ended, []
            return ended

    def _signal_stop(self, label: str) -> None:
        obj = self._objects.get(label)
        if obj is not None and hasattr(obj, "stop"):
            obj.stop()

    def _join_runs(self, timeout_s: float, labels: list[str] | None = None) -> list[str]:
        deadline = time.monotonic() + timeout_s
        threads = {label: thread for label, thread in self._threads.items()
                   if labels is None or label in labels}
        for thread in threads.values():
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._changed:
            for label, error in self._ended:
                if error is not None:
                    self._record(error)
            self._ended = []
        return [label for label, thread in threads.items() if thread.is_alive()]

    def _close_node(self, label: str, timeout_s: float) -> None:
        obj = self._objects.get(label)
        if obj is not None and hasattr(obj, "close"):
            try:
                obj.close()
            except Exception:
                raise NodeError(label, "close() failed:\n" + traceback.format_exc()) from None

    def _close_nodes(self, labels: list[str], timeout_s: float) -> None:
        """Closes `labels` (none of which uses another) each in its own thread, at once: an
        actor's close may wait seconds for a replay that is gone, and need not wait for the
        other actors' waits."""
        threads = [threading.Thread(target=self._close_once, args=(label, timeout_s),
                                    name=f"close:{label}", daemon=True) for label in labels]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + timeout_s
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _teardown(self) -> None:
        self._objects.clear()
        self.clients.clear()

    def pids(self) -> dict[str, list[int]]:
        return {label: [os.getpid()] for label in self.labels}
