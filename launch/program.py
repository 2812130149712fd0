"""A program of named nodes, and how it is launched (the local_mt engine lives here; the Ray
engines in launch/ray_engine.py; what they share in launch/engine.py).

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

import dataclasses
import logging
import os
import sys
import threading
import time
import traceback
from typing import Any, Callable, Iterator, Mapping

# Handle, NodeError, Outcome and Launched are part of this module's interface (`lp.Handle`).
from launch.engine import Handle, Launched, NodeError, Outcome, resolve  # noqa: F401

LAUNCH_TYPES = ("local_mt", "local_mp", "ray")

log = logging.getLogger("launch.program")


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
                        *resolve(node.args, self._objects), **resolve(node.kwargs, self._objects)
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

