"""What every engine shares: node errors, where a node's servers are reached (node_host), and
`Launched`, the running program's wait, stop and close logic on top of each engine's few
primitives (thread_engine.py, ray_engine.py).

An engine sees a program only through `ProgramLike`/`NodeLike` (program.py declares them), so
this module imports no other module of launch/distributed/.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any, Callable, Mapping, Protocol

from launch.run.limits import catch_signals

# Environment every node process starts with, before it imports jax or tensorflow.
DEFAULT_NODE_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "JAX_PLATFORMS": "cpu",
    "PYTHONUNBUFFERED": "1",
}

# Set by an engine in each node process whose servers other processes reach: the host name
# they reach it at (a node reads it through node_host(), never asking its engine).
NODE_HOST_ENV = "APEX_NODE_HOST"

log = logging.getLogger(__name__)

FAILED_GRACE_S = 1.0  # after a node failed: how long restartable nodes get to stop by themselves
# A node that fails because a node it calls was lost is reported as that loss's consequence,
# once the loss itself is seen: how long to wait for it (Ray reports the two in either order).
LOST_NODE_SETTLE_S = 5.0


def node_host() -> str:
    """A host name other nodes can reach this process at (for servers such as Reverb's): what
    the engine set in NODE_HOST_ENV (Ray: this machine's address in the cluster), else
    localhost (threads in one process)."""
    return os.environ.get(NODE_HOST_ENV) or "localhost"


class NodeLike(Protocol):
    """A declared node as an engine uses it (launch.distributed.program.Node)."""

    label: str
    constructor: Callable[..., Any]
    num_cpus: float
    num_gpus: float | str
    max_restarts: int
    max_concurrency: int
    env_vars: Mapping[str, str]
    uses: tuple[str, ...]  # labels of the nodes whose handles it takes

    def arguments(self, clients: Mapping[str, Any]) -> tuple[tuple, dict]: ...


class ProgramLike(Protocol):
    name: str
    nodes: Mapping[str, NodeLike]


class NodeError(RuntimeError):
    """A node failed (raised, or its process was lost); the message names it.

    `after_lost_node`: it failed because a call to another node's lost process raised, so the
    loss, not this, is the cause to report.
    """

    def __init__(self, label: str, details: str, after_lost_node: bool = False):
        super().__init__(f"node '{label}' failed:\n{details}")
        self.label = label
        self.details = details
        self.after_lost_node = after_lost_node


@dataclasses.dataclass
class Outcome:
    """Why `Launched.wait` returned."""

    reason: str  # "limit: ...", "<label> finished", "interrupted (SIGINT)", "error"
    errors: list[NodeError]


def close_waves(nodes: Mapping[str, NodeLike]) -> list[list[str]]:
    """Labels in the order they are closed: a node once every node that uses it is closed
    (actors and the evaluator, then the learner, then the replay, then the recorder); newest
    first within a wave, whose nodes may close at once."""
    waves: list[list[str]] = []
    left = list(reversed(list(nodes)))
    while left:
        users = {used for label in left for used in nodes[label].uses}
        wave = [label for label in left if label not in users] or left[:1]
        waves.append(wave)
        left = [label for label in left if label not in wave]
    return waves


class Launched:
    """A running program: clients of its nodes, wait, stop, close.

    Use as a context manager; leaving it stops and closes every node whatever happened.
    """

    launch_type: str

    def __init__(self, program: ProgramLike):
        self.program = program
        self.labels = list(program.nodes)
        self.clients: dict[str, Any] = {}
        self.errors: list[NodeError] = []  # the causes: what the run reports
        self.consequences: list[NodeError] = []  # failures that followed a lost node
        self._workers: set[str] = set()  # nodes with a run() loop; the others are services.
        self._stopped = False
        self._closed = False
        self._closed_labels: set[str] = set()
        self._abandoned: set[str] = set()  # runs ended by ending their process (see stop)

    # Engine-specific parts.
    def _poll(self, timeout_s: float) -> list[tuple[str, NodeError | None]]:
        """Waits up to timeout_s; returns (label, error or None) for runs that ended."""
        raise NotImplementedError

    def _signal_stop(self, label: str) -> None:
        raise NotImplementedError

    def _join_runs(self, timeout_s: float, labels: list[str] | None = None) -> list[str]:
        """Waits up to timeout_s for the runs of `labels` (default: all) to end, recording
        errors; returns the workers among them still running."""
        raise NotImplementedError

    def _abandon(self, labels: list[str]) -> list[str]:
        """Ends the processes of restartable nodes among `labels` whose run() does not return;
        returns those it ended (none where the engine cannot, e.g. threads)."""
        return []

    def _close_node(self, label: str, timeout_s: float) -> None:
        raise NotImplementedError

    def _close_nodes(self, labels: list[str], timeout_s: float) -> None:
        """Closes `labels` (nodes none of which uses another); one at a time by default."""
        for label in labels:
            self._close_once(label, timeout_s)

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
        settle_until: float | None = None  # waiting for the loss behind a consequence
        with catch_signals(received):
            while True:
                try:
                    ended = self._poll(poll_s)
                except KeyboardInterrupt:
                    received.append("SIGINT")
                    ended = []
                for label, error in ended:
                    if error is not None:
                        self._record(error)
                if self.consequences and not self.errors:
                    if settle_until is None:
                        settle_until = time.monotonic() + LOST_NODE_SETTLE_S
                    if time.monotonic() >= settle_until or received:
                        self._promote_consequences()
                    else:
                        continue  # the lost node's own error is on its way.
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
        """Asks every node to stop (newest first, all at once) and waits for their run().

        The learner stops at once, though actors may then wait on a rate-limited replay that
        only its sampling would let them into: stopped, the replay itself lets them in
        (ReplayNode.stop). No order of stopping would avoid that wait: actors stopped first
        can leave the learner waiting for samples in a Reverb dataset that nothing wakes, not
        even the replay closing. A run still going `grace_s` after the stop is blocked on
        something else: the services (nodes without run()) are then closed early, newest
        first (the replay before the recorder), each giving the runs `unblock_s` to return.
        After a node failed (the run ends on an error), restartable nodes still running
        `FAILED_GRACE_S` after the stop have their process ended instead, where the engine can
        (Ray): unblocking them through a closed replay costs seconds each.
        """
        if self._stopped:
            return
        self._stopped = True
        with catch_signals([]):
            for label in reversed(self.labels):
                self._signal(label)
            deadline = time.monotonic() + timeout_s
            if self.errors or self.consequences:
                running = self._join_runs(min(grace_s, FAILED_GRACE_S))
                ended = self._abandon(running) if running else []
                if ended:
                    log.warning("node(s) %s still running %.0f s after stop(), after a node "
                                "failed: ending their process (restartable nodes)",
                                ", ".join(ended), min(grace_s, FAILED_GRACE_S))
                    self._abandoned.update(ended)
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
            self._promote_consequences()

    def _record(self, error: NodeError) -> None:
        """Keeps a node's error: as a cause, or as the consequence of a lost node."""
        if error.after_lost_node:
            log.info("node %r stopped after a node it calls was lost: %s", error.label,
                     error.details.strip().splitlines()[-1] if error.details.strip() else "")
            self.consequences.append(error)
        else:
            self.errors.append(error)

    def _promote_consequences(self) -> None:
        """No lost node was seen after all: the consequences are the errors to report."""
        if self.consequences and not self.errors:
            self.errors.extend(self.consequences)
            self.consequences.clear()

    def _signal(self, label: str) -> None:
        try:
            self._signal_stop(label)
        except Exception as error:  # a lost node cannot be stopped; say so.
            log.warning("could not stop node %r: %s", label, error)

    def close(self, timeout_s: float = 120.0) -> None:
        """Closes every node (final checkpoints), users before what they use (the order of
        `close_waves`), then tears the engine down."""
        if self._closed:
            return
        try:
            self.stop()
        finally:
            self._closed = True
            with catch_signals([]):
                try:
                    for wave in close_waves(self.program.nodes):
                        self._close_nodes([l for l in wave if l not in self._closed_labels], timeout_s)
                finally:
                    self._promote_consequences()
                    self._teardown()

    def close_node(self, label: str, timeout_s: float = 120.0) -> None:
        """Closes one node now (after stop()), e.g. actors before reading the replay's size."""
        self.close_nodes([label], timeout_s)

    def close_nodes(self, labels: list[str], timeout_s: float = 120.0) -> None:
        """Closes `labels` now (after stop()), users before what they use, at once where the
        engine can (Ray: the actors' closes overlap)."""
        self.stop()
        wanted = set(labels)
        for wave in close_waves(self.program.nodes):
            self._close_nodes([l for l in wave if l in wanted and l not in self._closed_labels],
                              timeout_s)

    def _close_once(self, label: str, timeout_s: float) -> None:
        if label in self._closed_labels:
            return
        self._closed_labels.add(label)
        if label in self._abandoned:
            return  # its process was ended in stop(): nothing is left to close.
        try:
            self._close_node(label, timeout_s)
        except NodeError as error:
            self._record(error)
        except Exception as error:  # noqa: BLE001 - reported; the other nodes still close.
            self.errors.append(NodeError(label, f"close() failed: {error!r}"))

    def __enter__(self) -> "Launched":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
