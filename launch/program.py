"""A program of named nodes, and the engines that launch it.

A node is a constructor plus its arguments; an argument may be the `Handle` of another node,
which the engine turns into that node's client. Nodes never know how they were launched:
- `local_mt`: every node is built in this process and runs in a thread; a client is the
  node object itself.
- `local_mp`: every node is its own OS process, through a local Ray instance this program
  starts (dashboard off, Ray's token authentication left on); a client is a `NodeClient`
  whose method calls are Ray actor calls.
- `ray`: as `local_mp`, joining an existing Ray cluster at `ray_address`.

The node protocol (all optional):
  run()    the node's main loop; returns when done or after stop(). A node without run() is a
           service (a replay server, a recorder) that lives until the program stops.
  stop()   asks run() to return soon; called from another thread.
  close()  releases resources and writes final checkpoints; called after every run() ended,
           in reverse order of `add_node`.
Every other public method can be called through a client.

Ray supervises the processes: a node with `max_restarts` != 0 is restarted when its process
dies, and its run() is resubmitted on the new process (Ray's `max_task_retries`). A node with
`max_restarts=0` (learner, replay) is never restarted silently: its loss ends the program with
an error naming it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any, Callable, Iterator, Mapping

LAUNCH_TYPES = ("local_mt", "local_mp", "ray")

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


@dataclasses.dataclass
class Node:
    """A constructor, its arguments, and what its process needs."""

    label: str
    constructor: Callable[..., Any]
    args: tuple
    kwargs: dict
    num_cpus: float = 1.0
    num_gpus: float | str = 0.0  # "auto": one GPU when the cluster has one.
    max_restarts: int = 0  # -1: restart forever; 0: its loss ends the program.
    max_concurrency: int = 4  # threads serving run, stop and client calls at once.
    env_vars: Mapping[str, str] = dataclasses.field(default_factory=dict)


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


class Program:
    """A declared set of named nodes and the handles they receive."""

    def __init__(self, name: str):
        self.name = name
        self.nodes: dict[str, Node] = {}

    def add_node(
        self,
        label: str,
        constructor: Callable[..., Any],
        *args: Any,
        num_cpus: float = 1.0,
        num_gpus: float | str = 0.0,
        max_restarts: int = 0,
        max_concurrency: int = 4,
        env_vars: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> Handle:
        if label in self.nodes:
            raise ValueError(f"program {self.name!r}: node label {label!r} is used twice")
        for handle in _handles_in((args, kwargs)):
            if handle.label not in self.nodes:
                raise ValueError(
                    f"node {label!r} takes a handle to {handle.label!r}, which is not "
                    f"added yet (add nodes before the nodes that use them)"
                )
        if max_concurrency < 2:
            raise ValueError(f"node {label!r}: max_concurrency must be >= 2 (run + stop)")
        self.nodes[label] = Node(
            label, constructor, tuple(args), dict(kwargs), num_cpus, num_gpus,
            max_restarts, max_concurrency, dict(env_vars or {}),
        )
        return Handle(label)

    def launch(
        self,
        launch_type: str = "local_mp",
        *,
        ray_address: str | None = None,
        code_dir: str | None = None,
        startup_timeout_s: float = 180.0,
    ) -> "Launched":
        """Builds and starts every node; returns the running program (a context manager).

        `code_dir` is the folder node processes import the code from (added to their
        PYTHONPATH for local_mp; uploaded as Ray's `working_dir` for `ray`).
        """
        if launch_type == "local_mt":
            return ThreadLaunched(self)
        if launch_type in ("local_mp", "ray"):
            if launch_type == "ray" and not ray_address:
                raise ValueError("--lp_launch_type=ray needs --ray_address=HOST:PORT")
            from launch.ray_engine import RayLaunched

            return RayLaunched(
                self, ray_address if launch_type == "ray" else None, code_dir,
                startup_timeout_s,
            )
        raise ValueError(f"unknown launch type {launch_type!r}; expected one of {LAUNCH_TYPES}")


def _handles_in(tree: Any) -> Iterator[Handle]:
    if isinstance(tree, Handle):
        yield tree
    elif isinstance(tree, (list, tuple)):
        for item in tree:
            yield from _handles_in(item)
    elif isinstance(tree, dict):
        for item in tree.values():
            yield from _handles_in(item)


def _resolve(tree: Any, clients: Mapping[str, Any]) -> Any:
    """Replaces every Handle in (nested lists/tuples/dicts of) arguments by its client."""
    if isinstance(tree, Handle):
        return clients[tree.label]
    if isinstance(tree, (list, tuple)):
        return type(tree)(_resolve(item, clients) for item in tree)
    if isinstance(tree, dict):
        return {key: _resolve(item, clients) for key, item in tree.items()}
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

    def stop(self, grace_s: float = 15.0, timeout_s: float = 60.0) -> None:
        """Asks every node to stop (reverse order of add_node) and waits for its run().

        A run() still going after `grace_s` is most likely blocked on a service (a learner
        waiting for replay data that stopped actors will never insert): the services (nodes
        without run(), e.g. the replay) are then closed early, which unblocks it.
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
            running = self._join_runs(grace_s)
            if running:
                services = [l for l in reversed(self.labels) if l not in self._workers]
                log.warning(
                    "node(s) %s still running %.0f s after stop(); closing %s to unblock them",
                    ", ".join(running), grace_s, ", ".join(services),
                )
                for label in services:
                    self._close_once(label, timeout_s)
                running = self._join_runs(max(0.0, timeout_s - grace_s))
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


# ---------------------------------------------------------------------------------------
# local_mt: threads in this process.


class ThreadLaunched(Launched):
    launch_type = "local_mt"

    def __init__(self, program: Program):
        super().__init__(program)
        self._objects: dict[str, Any] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._ended: list[tuple[str, NodeError | None]] = []
        self._changed = threading.Condition()
        try:
            for label, node in program.nodes.items():
                try:
                    self._objects[label] = node.constructor(
                        *_resolve(node.args, self._objects), **_resolve(node.kwargs, self._objects)
                    )
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

    def _join_runs(self, timeout_s: float) -> list[str]:
        deadline = time.monotonic() + timeout_s
        for thread in self._threads.values():
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._changed:
            for label, error in self._ended:
                if error is not None:
                    self.errors.append(error)
            self._ended = []
        return [label for label, thread in self._threads.items() if thread.is_alive()]

    def _close_node(self, label: str, timeout_s: float) -> None:
        obj = self._objects.get(label)
        if obj is not None and hasattr(obj, "close"):
            try:
                obj.close()
            except Exception:
                raise NodeError(label, "close() failed:\n" + traceback.format_exc()) from None

    def _teardown(self) -> None:
        self._objects.clear()
        self.clients.clear()

    def pids(self) -> dict[str, list[int]]:
        return {label: [os.getpid()] for label in self.labels}


def node_host() -> str:
    """A host name other nodes can reach this process at (for servers such as Reverb's).

    Inside a Ray worker: this machine's address in the Ray cluster; otherwise localhost.
    """
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            return ray.util.get_node_ip_address()
    return "localhost"


def configure_logging(level: int = logging.INFO) -> None:
    """One plain line per message on stderr for the launcher's own messages."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger("launch")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False

