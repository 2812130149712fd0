"""What every pmapped learner shares: the replicated state, the update under jax.pmap, and the
parameters it publishes (variable source), saves and restores. Agents add their loss and data."""

import threading
from typing import Any, Callable

import jax

from agents import core

DEVICE_AXIS = "devices"


class PmapLearner(core.Learner):
    """Holds the learner state replicated on `devices` and publishes its params with a version.

    A subclass's `step` takes a batch, calls `_update(batch)` (one pmapped sgd_step; the
    parameters are published when it returns) and turns the update's metrics into its own with
    `_host_metrics`. `get_variables` may be called from any thread; it serves the parameters of
    the last finished update without waiting for the one in progress. The state is a NamedTuple
    with a `params` field.
    """

    def __init__(self, sgd_step: Callable[[Any, Any], tuple[Any, Any]], initial_state: Any,
                 devices: list[jax.Device] | None = None):
        self._devices = devices or jax.local_devices()
        self._sgd_step = jax.pmap(sgd_step, axis_name=DEVICE_AXIS, devices=self._devices)
        self._state = jax.device_put_replicated(initial_state, self._devices)
        self._lock = threading.Lock()
        self._published = (self._state.params, 0)  # (replicated params, version)
        self._host_params: tuple[int, Any] | None = None

    @property
    def num_devices(self) -> int:
        return len(self._devices)

    def _check_divisible(self, batch_size: int) -> None:
        if batch_size % self.num_devices:
            raise ValueError(f"batch size {batch_size} is not divisible by {self.num_devices} devices")

    def _update(self, device_batch: Any) -> tuple[Any, int]:
        """One pmapped update on a batch with a leading [devices] axis; publishes the new
        parameters; returns the update's second output and the new version."""
        self._state, extra = self._sgd_step(self._state, device_batch)
        jax.block_until_ready(self._state.params)  # published only once computed
        version = int(self._published[1]) + 1
        with self._lock:
            self._published = (self._state.params, version)
        return extra, version

    @staticmethod
    def _host_metrics(metrics: dict[str, jax.Array], version: int) -> dict[str, float]:
        """`learner/<name>` floats, fetched in one transfer ([devices] each, equal after pmean)."""
        host = jax.device_get(metrics)
        values = {f"learner/{name}": float(value[0]) for name, value in host.items()}
        values["learner/steps"] = float(version)
        return values

    def get_variables(self, names: list[str]) -> list[Any]:
        with self._lock:
            replicated_params, version = self._published
        values = {"version": version}
        if "params" in names:
            cached = self._host_params
            if cached is None or cached[0] != version:
                cached = (version, jax.device_get(jax.tree.map(lambda x: x[0], replicated_params)))
                self._host_params = cached
            values["params"] = cached[1]
        unknown = [name for name in names if name not in values]
        if unknown:
            raise KeyError(f"{type(self).__name__}.get_variables: unknown names {unknown}, expected "
                           "'params' or 'version'")
        return [values[name] for name in names]

    def save(self) -> dict[str, Any]:
        state = jax.device_get(jax.tree.map(lambda x: x[0], self._state))
        return {"state": state, "version": self._published[1]}

    def restore(self, state: dict[str, Any]) -> None:
        self._state = jax.device_put_replicated(state["state"], self._devices)
        with self._lock:
            self._published = (self._state.params, int(state["version"]))
