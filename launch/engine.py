"""What every engine shares: handles and their resolution, node errors, and `Launched`,
the running program's stop/close logic on top of each engine's few primitives.

`launch/program.py` declares programs and runs them in threads (local_mt);
`launch/ray_engine.py` runs them as Ray actors (local_mp, ray). Both import this module,
which imports neither.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

if TYPE_CHECKING:
    from launch.program import Program

# Environment every node process starts with, before it imports jax or tensorflow.
DEFAULT_NODE_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "JAX_PLATFORMS": "cpu",
    "PYTHONUNBUFFERED": "1",
}

log = logging.getLogger("launch.program")


@dataclasses.dataclass(frozen=True)
class Handle:
    """Names a node; replaced by that node's client when the program is launched."""

    label: str


class NodeError(RuntimeError):
    """A node failed (raised, or its process was lost); the message names it."""

    def __init__(self, label: str, details: str):
        super().__init__(f"node '{label}' failed:\n{details}")
        self.label = label
        self.details = details


@dataclasses.dataclass
class Outcome:
    """Why `Launched.wait` returned."""

    reason: str  # "limit: ...", "<label> finished", "interrupted (SIGINT)", "error"
    errors: list[NodeError]


def resolve(tree: Any, clients: Mapping[str, Any]) -> Any:
    """Replaces every Handle in (nested lists/tuples/dicts of) arguments by its client."""
    if isinstance(tree, Handle):
        return clients[tree.label]
    if isinstance(tree, (list, tuple)):
        return type(tree)(resolve(item, clients) for item in tree)
    if isinstance(tree, dict):
        return {key: resolve(item, clients) for key, item in tree.items()}
    return tree


class Launched:
    """A running program: clients of its nodes, wait, stop, close.

    Use as a context manager; leaving it stops and closes every node whatever happened.
    """

    launch_type: str

    def __init__(self, program: Program):
        self.program = program
        self.labels = list(program.nodes)
        self.clients: dict[str, Any] = {}
        self.errors: list[NodeError] = []
        self._workers: set[str] = set()  # nodes with a run() loop; the others are services.
        self._stopped = False
        self._closed = False
        self._closed_labels: set[str] = set()

    # Engine-specific parts.
    def _poll(self, timeout_s: float) -> list[tuple[str, NodeError | None]]:
        """Waits up to timeout_s; returns (label, error or None) for runs that ended."""
        raise NotImplementedError

    def _signal_stop(self, label: str) -> None:
        raise NotImplementedError

    def _join_runs(self, timeout_s: float) -> list[str]:
        """Waits up to timeout_s for runs to end (recording errors); returns those still going."""
        raise NotImplementedError

    def _close_node(self, label: str, timeout_s: float) -> None:
        raise NotImplementedError

    def _teardown(self) -> None:
        raise NotImplementedError

    def pids(self) -> dict[str, list[int]]:
        """Every process id seen per node, oldest first (one per restart)."""
        raise NotImplementedError

    def restarts(self) -> dict[str, int]:
        """How many times each node's process was restarted."""
        return {label: max(0, len(pids) - 1) for label, pids in self.pids().items()}

    # Shared logic.
    def wait(
        self,
        stop_when: Callable[[], str | None] = lambda: None,
        on_poll: Callable[[], None] = lambda: None,
        poll_s: float = 0.5,
    ) -> Outcome:
        """Blocks until a node's run ends or fails, `stop_when` names a reason, or a signal.

        SIGINT and SIGTERM end the wait (reason "interrupted (...)") instead of the process.
        """
        received: list[str] = []
        with _catch_signals(received):
            while True:
                try:
                    ended = self._poll(poll_s)
                except KeyboardInterrupt:
                    received.append("SIGINT")
                    ended = []
                for label, error in ended:
                    if error is not None:
                        self.errors.append(error)
                if self.errors:
                    return Outcome("error", list(self.errors))
                if received:
                    return Outcome(f"interrupted ({received[0]})", [])
                if ended:
                    return Outcome(f"{ended[0][0]} finished", [])
                reason = stop_when()
                if reason:
                    return Outcome(reason, [])
                on_poll()

    def stop(self, grace_s: float = 15.0, timeout_s: float = 60.0, unblock_s: float = 10.0) -> None:
        """Asks every node to stop (reverse order of add_node) and waits for its run().

        A run() still going after `grace_s` is most likely blocked on a service (a learner
        waiting for replay data that stopped actors will never insert, an actor whose insert a
        rate limiter holds back): the services (nodes without run()) are then closed early,
        newest first (the replay before the recorder), one at a time, each giving the runs
        `unblock_s` to return, until they all have.
        """
        if self._stopped:
            return
        self._stopped = True
        with _catch_signals([]):
            for label in reversed(self.labels):
                try:
                    self._signal_stop(label)
                except Exception as error:  # a lost node cannot be stopped; say so.
                    log.warning("could not stop node %r: %s", label, error)
            deadline = time.monotonic() + timeout_s
            running = self._join_runs(grace_s)
            for label in [l for l in reversed(self.labels) if l not in self._workers]:
                if not running:
                    break
                log.warning("node(s) %s still running after stop(); closing %s to unblock them",
                            ", ".join(running), label)
                self._close_once(label, timeout_s)
                running = self._join_runs(min(unblock_s, max(0.0, deadline - time.monotonic())))
            if running:
                running = self._join_runs(max(0.0, deadline - time.monotonic()))
            for label in running:
                self.errors.append(NodeError(label, f"run() did not return {timeout_s:.0f} s after stop()"))

    def close(self, timeout_s: float = 120.0) -> None:
        """Closes every node (final checkpoints) in reverse order, then tears the engine down."""
        if self._closed:
            return
        try:
            self.stop()
        finally:
            self._closed = True
            with _catch_signals([]):
                try:
                    for label in reversed(self.labels):
                        self._close_once(label, timeout_s)
                finally:
                    self._teardown()

    def close_node(self, label: str, timeout_s: float = 120.0) -> None:
        """Closes one node now (after stop()), e.g. actors before reading the replay's size."""
        self.stop()
        self._close_once(label, timeout_s)

    def _close_once(self, label: str, timeout_s: float) -> None:
        if label in self._closed_labels:
            return
        self._closed_labels.add(label)
        try:
            self._close_node(label, timeout_s)
        except NodeError as error:
            self.errors.append(error)
        except Exception as error:  # noqa: BLE001 - reported; the other nodes still close.
            self.errors.append(NodeError(label, f"close() failed: {error!r}"))

    def __enter__(self) -> "Launched":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


@contextlib.contextmanager
def _catch_signals(received: list[str]) -> Iterator[None]:
    """Turns SIGINT/SIGTERM into an entry in `received` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if not received:
            log.warning("%s received: stopping every node (checkpoints are written)", name)
        received.append(name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
