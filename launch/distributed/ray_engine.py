"""The local_mp and ray engines: one Ray actor (one OS process) per node.

Ray starts, supervises and restarts the processes and carries the calls between nodes;
see launch/distributed/program.py for the node protocol and the launch types.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from typing import Any, Callable

from launch.distributed.engine import DEFAULT_NODE_ENV, NODE_HOST_ENV, Launched, NodeError, ProgramLike

log = logging.getLogger(__name__)


# Ray passes a task argument larger than its inline limit (100 KiB, `max_direct_call_object_size`)
# through its object store and frees it once the actor is built, so a restart of the actor
# could not rebuild it (ray-project/ray#53727). A restartable node's arguments above this size
# (half that limit: a margin for Ray's own framing) are put there by the driver instead, which
# keeps them for the whole run.
KEPT_ARGUMENTS_BYTES = 50 * 1024


class NodeProcess:
    """The Ray actor hosting one node: builds it, runs it, serves calls to it.

    `arguments` is (constructor, args, kwargs), or [ObjectRef] of it where the driver keeps
    large arguments in Ray's object store for the run (see KEPT_ARGUMENTS_BYTES).
    """

    def __init__(self, label: str, arguments: tuple | list):
        import ray

        # The node's servers are reached at this machine's address in the cluster.
        os.environ[NODE_HOST_ENV] = ray.util.get_node_ip_address()
        if isinstance(arguments, list):
            arguments = ray.get(arguments[0])
        constructor, args, kwargs = arguments
        self._label = label
        self._stopping = threading.Event()
        self._obj = constructor(*args, **kwargs)

    def pid(self) -> int:
        return os.getpid()

    def has_run(self) -> bool:
        return hasattr(self._obj, "run")

    def run(self) -> None:
        if hasattr(self._obj, "run"):
            self._obj.run()
        else:
            self._stopping.wait()

    def stop(self) -> None:
        self._stopping.set()
        if hasattr(self._obj, "stop"):
            self._obj.stop()

    def close(self) -> None:
        if hasattr(self._obj, "close"):
            self._obj.close()

    def call(self, method: str, args: tuple, kwargs: dict) -> Any:
        return getattr(self._obj, method)(*args, **kwargs)


class NodeClient:
    """A node's client in another process: `client.method(...)` is a Ray actor call.

    It is pickled as the node's actor name and looked up by that name on first use, so it
    can be passed to other nodes, and it keeps working across restarts of the node it names.
    It does not carry the actor handle: a handle among a restartable node's constructor
    arguments makes Ray warn, on every run, that the node's restart may fail (ray#53727).
    """

    def __init__(self, label: str, actor_name: str, namespace: str, actor: Any = None):
        self.label = label
        self._actor_name = actor_name
        self._namespace = namespace
        self._actor = actor

    def __reduce__(self) -> tuple:
        return NodeClient, (self.label, self._actor_name, self._namespace)

    def _handle(self) -> Any:
        if self._actor is None:
            import ray

            self._actor = ray.get_actor(self._actor_name, namespace=self._namespace)
        return self._actor

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method.startswith("_"):
            raise AttributeError(method)

        def call(*args: Any, **kwargs: Any) -> Any:
            import ray

            return ray.get(self._handle().call.remote(method, args, kwargs))

        call.__name__ = method
        return call

    def __repr__(self) -> str:
        return f"NodeClient({self.label!r})"


class RayLaunched(Launched):
    def __init__(
        self,
        program: ProgramLike,
        ray_address: str | None,
        code_dir: str | None,
        startup_timeout_s: float,
    ):
        super().__init__(program)
        if ray_address and "RAY_AUTH_MODE" not in os.environ and _have_ray_token():
            # Ray 2.60 turns token authentication on for clusters it starts, but a driver that
            # names an address must opt in itself (before ray is imported): it then sends the
            # token this machine holds, which must be the cluster's.
            os.environ["RAY_AUTH_MODE"] = "token"
        import ray

        self._ray = ray
        self.launch_type = "ray" if ray_address else "local_mp"
        self._actors: dict[str, Any] = {}
        self._runs: dict[Any, str] = {}  # run() ObjectRef -> label
        self._pids: dict[str, list[int]] = {label: [] for label in self.labels}
        self._pid_refs: dict[str, Any] = {}
        self._restartable = [l for l, n in program.nodes.items() if n.max_restarts != 0]
        self._kept_arguments: list[Any] = []  # ObjectRefs of large arguments, for restarts.
        try:
            start = time.monotonic()
            self._start_ray(ray_address, code_dir)
            log.info("Ray %s in %.1f s", "joined" if ray_address else "started", time.monotonic() - start)
            start = time.monotonic()
            self._start_nodes(startup_timeout_s)
            log.info("%d node processes up in %.1f s", len(self.labels), time.monotonic() - start)
        except BaseException:
            self._stopped = True
            self.close()
            raise

    def _start_ray(self, ray_address: str | None, code_dir: str | None) -> None:
        ray = self._ray
        env = dict(DEFAULT_NODE_ENV)
        runtime_env: dict[str, Any] = {"env_vars": env}
        if ray_address is None:
            if code_dir:
                env["PYTHONPATH"] = os.pathsep.join(
                    p for p in (code_dir, os.environ.get("PYTHONPATH", "")) if p
                )
            cpus_needed = sum(n.num_cpus for n in self.program.nodes.values())
            ray.init(
                num_cpus=max(os.cpu_count() or 1, int(cpus_needed + 0.999)),
                include_dashboard=False,
                runtime_env=runtime_env,
                namespace=self.program.name,
                configure_logging=False,
                log_to_driver=True,
            )
        else:
            if code_dir:
                runtime_env["working_dir"] = code_dir
                runtime_env["excludes"] = [".git", "runs", "benchmarks/out", "__pycache__"]
            ray.init(
                address=ray_address,
                runtime_env=runtime_env,
                namespace=f"{self.program.name}-{os.getpid()}",
                configure_logging=False,
                log_to_driver=True,
            )
        self._cluster_gpus = ray.cluster_resources().get("GPU", 0)

    def _start_nodes(self, startup_timeout_s: float) -> None:
        ray = self._ray
        remote_class = ray.remote(NodeProcess)
        namespace = ray.get_runtime_context().namespace
        for label, node in self.program.nodes.items():
            num_gpus = node.num_gpus
            if num_gpus == "auto":
                num_gpus = 1 if self._cluster_gpus >= 1 else 0
            env = dict(node.env_vars)
            if num_gpus:
                env.setdefault("JAX_PLATFORMS", "")  # let JAX find the accelerator.
            actor_name = f"{self.program.name}:{label}:{os.getpid()}"
            options: dict[str, Any] = dict(
                name=actor_name,
                num_cpus=node.num_cpus,
                num_gpus=num_gpus,
                max_restarts=node.max_restarts,
                max_task_retries=-1 if node.max_restarts != 0 else 0,
                max_concurrency=node.max_concurrency,
            )
            if env:
                options["runtime_env"] = {"env_vars": env}
            arguments: tuple | list = (node.constructor, *node.arguments(self.clients))
            if node.max_restarts != 0 and len(ray.cloudpickle.dumps(arguments)) > KEPT_ARGUMENTS_BYTES:
                kept = ray.put(arguments)
                self._kept_arguments.append(kept)
                arguments = [kept]  # nested in a list, so Ray passes the reference itself.
            actor = remote_class.options(**options).remote(label, arguments)
            self._actors[label] = actor
            self.clients[label] = NodeClient(label, actor_name, namespace, actor)
        # Every node is up (its constructor ran) before any run() starts.
        pending = {self._actors[label].pid.remote(): label for label in self.labels}
        has_run = {label: self._actors[label].has_run.remote() for label in self.labels}
        deadline = time.monotonic() + startup_timeout_s
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                late = ", ".join(sorted(pending.values()))
                raise NodeError(
                    late.split(", ")[0],
                    f"nodes {late} did not start within {startup_timeout_s:.0f} s "
                    f"(cluster resources: {ray.available_resources()})",
                )
            label = pending.pop(ready[0])
            try:
                self._pids[label].append(ray.get(ready[0]))
            except Exception as error:  # its constructor raised, or its process died.
                raise NodeError(label, _ray_error_text(error)) from None
        self._workers = {label for label, ref in has_run.items() if ray.get(ref)}
        for label in self.labels:
            self._runs[self._actors[label].run.remote()] = label

    def _track_pids(self) -> None:
        """Notices restarted processes: a new pid for the same node."""
        ray = self._ray
        for label in self._restartable:
            ref = self._pid_refs.get(label)
            if ref is None:
                self._pid_refs[label] = self._actors[label].pid.remote()
                continue
            ready, _ = ray.wait([ref], timeout=0)
            if ready:
                del self._pid_refs[label]
                try:
                    pid = ray.get(ref)
                except Exception:  # noqa: BLE001 - dead for good; its run() reports it.
                    continue
                if pid not in self._pids[label]:
                    self._pids[label].append(pid)
                    log.warning("node %r restarted as process %d", label, pid)

    def _poll(self, timeout_s: float) -> list[tuple[str, NodeError | None]]:
        ray = self._ray
        self._track_pids()
        if not self._runs:
            time.sleep(timeout_s)
            return []
        ready, _ = ray.wait(list(self._runs), num_returns=1, timeout=timeout_s)
        ended = []
        for ref in ready:
            label = self._runs.pop(ref)
            try:
                ray.get(ref)
                ended.append((label, None))
            except Exception as error:  # noqa: BLE001 - reported with the node's name.
                ended.append((label, _node_error(label, error)))
        return ended

    def _signal_stop(self, label: str) -> None:
        actor = self._actors.get(label)
        if actor is not None:
            self._ray.get(actor.stop.remote(), timeout=30)

    def _join_runs(self, timeout_s: float, labels: list[str] | None = None) -> list[str]:
        ray = self._ray
        deadline = time.monotonic() + timeout_s
        while True:
            refs = [ref for ref, label in self._runs.items() if labels is None or label in labels]
            if not refs:
                break
            ready, _ = ray.wait(refs, num_returns=len(refs),
                                timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            for ref in ready:
                label = self._runs.pop(ref)
                try:
                    ray.get(ref)
                except Exception as error:  # noqa: BLE001
                    if (label in self._closed_labels or label in self._abandoned
                            or label not in self._workers):
                        continue  # a service closed early, or a process ended, by stop().
                    self._record(_node_error(label, error))
        self._track_pids()
        return [label for label in self._runs.values()
                if label in self._workers and (labels is None or label in labels)]

    def _abandon(self, labels: list[str]) -> list[str]:
        ended = [label for label in labels if self.program.nodes[label].max_restarts != 0]
        for label in ended:
            with contextlib.suppress(Exception):
                self._ray.kill(self._actors[label], no_restart=True)
        return ended

    def _close_node(self, label: str, timeout_s: float) -> None:
        self._close_nodes([label], timeout_s)

    def _close_nodes(self, labels: list[str], timeout_s: float) -> None:
        """Closes the nodes of `labels` at once (each closes in its own process)."""
        pending = {}
        for label in labels:
            self._closed_labels.add(label)
            actor = self._actors.get(label)
            if actor is not None and label not in self._abandoned:
                pending[label] = actor.close.remote()
        deadline = time.monotonic() + timeout_s
        for label, ref in pending.items():
            try:
                self._ray.get(ref, timeout=max(0.0, deadline - time.monotonic()))
            except Exception as error:  # noqa: BLE001 - reported; the other nodes still close.
                if not any(e.label == label for e in self.errors + self.consequences):
                    self._record(_node_error(label, error, "close() failed:\n"))

    def _teardown(self) -> None:
        ray = self._ray
        if not ray.is_initialized():
            return
        for actor in self._actors.values():
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        self._actors.clear()
        self.clients.clear()
        self._kept_arguments.clear()
        ray.shutdown()

    def pids(self) -> dict[str, list[int]]:
        return {label: list(pids) for label, pids in self._pids.items()}


# Words of Ray's errors for a call to an actor whose process is gone, as they read in a
# remote traceback (where the error's type may not survive: a node may wrap it).
_LOST_ACTOR_MARKERS = ("ActorDiedError", "ActorUnavailableError", "RayActorError",
                       "The actor died unexpectedly", "The actor is dead")


def _node_error(label: str, error: BaseException, prefix: str = "") -> NodeError:
    """The NodeError for a node's failed run() or close(), marked `after_lost_node` where it
    failed calling another node whose process was lost (rather than being lost itself)."""
    text = _ray_error_text(error)
    return NodeError(label, prefix + text, after_lost_node=_failed_calling_a_lost_node(error, text))


def _failed_calling_a_lost_node(error: BaseException, text: str) -> bool:
    from ray import exceptions as ray_exceptions

    if not isinstance(error, ray_exceptions.RayTaskError):
        return False  # its own process was lost, or the call to it failed: not a consequence.
    cause: BaseException | None = getattr(error, "cause", None)
    for _ in range(8):
        if cause is None:
            break
        if isinstance(cause, ray_exceptions.RayActorError):
            return True
        cause = cause.__cause__ or cause.__context__
    return any(marker in text for marker in _LOST_ACTOR_MARKERS)


def _ray_error_text(error: BaseException) -> str:
    """The remote traceback of a node's error, or why its process was lost."""
    text = str(error)
    try:
        from ray import exceptions as ray_exceptions

        if isinstance(error, ray_exceptions.RayActorError) and not isinstance(
            error, ray_exceptions.RayTaskError
        ):
            text = "its process was lost (killed or crashed) and it is not restartable.\n" + text
    except ImportError:
        pass
    return text


def _have_ray_token() -> bool:
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.join(os.path.expanduser("~"), ".ray", "auth_token")
    return os.path.isfile(path)
