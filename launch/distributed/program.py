"""A program of named nodes (its declaration), and `launch`, which runs it on an engine.

A node is a constructor plus its arguments; an argument may be the `Handle` of another node,
which the engine turns into that node's client. Nodes never know how they were launched:
- `local_mt` (launch/distributed/thread_engine.py): every node is built in this process and runs in a
  thread; a client is the node object itself.
- `local_mp` (launch/distributed/ray_engine.py): every node is its own OS process, through a local Ray
  instance this program starts (dashboard off, Ray's token authentication left on); a client
  is a `NodeClient` whose method calls are Ray actor calls.
- `ray`: as `local_mp`, joining an existing Ray cluster at `ray_address`.

The node protocol (all optional):
  run()    the node's main loop; returns when done or after stop(). A node without run() is a
           service (a replay server, a recorder) that lives until the program stops.
  stop()   asks run() to return soon; called from another thread, for every node at once
           (see engine.Launched.stop for why not in some order). A service's stop() lets
           the clients that wait on it go (the replay admits rate-limited inserts).
  close()  releases resources and writes final checkpoints; called after every run() ended,
           users before what they use (engine.close_waves).
Every other public method can be called through a client.

Ray supervises the processes: a node with `max_restarts` != 0 is restarted when its process
dies, and its run() is resubmitted on the new process (Ray's `max_task_retries`). A node with
`max_restarts=0` (learner, replay) is never restarted silently: its loss ends the program with
an error naming it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator, Mapping

# NodeError, Outcome and Launched are part of this module's interface (`lp.NodeError`).
from launch.distributed.engine import Launched, NodeError, Outcome  # noqa: F401
from launch.distributed.ray_engine import RayLaunched
from launch.distributed.thread_engine import ThreadLaunched

LAUNCH_TYPES = ("local_mt", "local_mp", "ray")


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

    @property
    def uses(self) -> tuple[str, ...]:
        """Labels of the nodes whose handles this node takes."""
        return tuple(dict.fromkeys(handle.label for handle in _handles_in((self.args, self.kwargs))))

    def arguments(self, clients: Mapping[str, Any]) -> tuple[tuple, dict]:
        """(args, kwargs) with every Handle replaced by its node's client."""
        return resolve(self.args, clients), resolve(self.kwargs, clients)


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

    def launch(self, launch_type: str = "local_mp", **options: Any) -> Launched:
        """`launch(self, launch_type, **options)`."""
        return launch(self, launch_type, **options)


def launch(
    program: Program,
    launch_type: str = "local_mp",
    *,
    ray_address: str | None = None,
    code_dir: str | None = None,
    startup_timeout_s: float = 180.0,
) -> Launched:
    """Builds and starts every node of `program`; returns the running program (a context
    manager that stops and closes it).

    `code_dir` is the folder node processes import the code from (added to their
    PYTHONPATH for local_mp; uploaded as Ray's `working_dir` for `ray`).
    """
    if launch_type == "local_mt":
        return ThreadLaunched(program)
    if launch_type in ("local_mp", "ray"):
        if launch_type == "ray" and not ray_address:
            raise ValueError("--lp_launch_type=ray needs --ray_address=HOST:PORT")
        return RayLaunched(program, ray_address if launch_type == "ray" else None, code_dir,
                           startup_timeout_s)
    raise ValueError(f"unknown launch type {launch_type!r}; expected one of {LAUNCH_TYPES}")


def resolve(tree: Any, clients: Mapping[str, Any]) -> Any:
    """Replaces every Handle in (nested lists/tuples/dicts of) arguments by its client."""
    if isinstance(tree, Handle):
        return clients[tree.label]
    if isinstance(tree, (list, tuple)):
        return type(tree)(resolve(item, clients) for item in tree)
    if isinstance(tree, dict):
        return {key: resolve(item, clients) for key, item in tree.items()}
    return tree


def _handles_in(tree: Any) -> Iterator[Handle]:
    if isinstance(tree, Handle):
        yield tree
    elif isinstance(tree, (list, tuple)):
        for item in tree:
            yield from _handles_in(item)
    elif isinstance(tree, dict):
        for item in tree.values():
            yield from _handles_in(item)
