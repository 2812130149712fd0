"""Keeps an actor's copy of a learner's parameters, refreshed in a background thread."""

import concurrent.futures
from typing import Any

import jax

from agents import core


class VariableClient:
    """A copy of `source`'s variable `key` and the learner version it came from.

    Every `update_period` calls to `update()` a fetch starts in a background thread; a later
    `update()` that finds it finished swaps the new values in. `update()` never blocks;
    `update_and_wait()` fetches and swaps in at once. Like Acme's VariableClient.
    """

    def __init__(self, source: core.VariableSource, key: str = "params", update_period: int = 1):
        if update_period < 1:
            raise ValueError(f"update_period must be >= 1, got {update_period}")
        self._source = source
        self._key = key
        self._update_period = update_period
        self._calls_since_fetch = 0
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="variable_client")
        self._future: concurrent.futures.Future | None = None
        self._params: Any = None
        self._version = -1

    @property
    def params(self) -> Any:
        """The current copy (fetched on first use)."""
        if self._params is None:
            self.update_and_wait()
        return self._params

    @property
    def version(self) -> int:
        """Learner step the current copy came from (-1 before the first fetch)."""
        return self._version

    def update(self, wait: bool = False) -> None:
        if wait:
            self.update_and_wait()
            return
        if self._future is not None and self._future.done():
            self._adopt(self._future.result())
            self._future = None
        self._calls_since_fetch += 1
        if self._calls_since_fetch >= self._update_period and self._future is None:
            self._calls_since_fetch = 0
            self._future = self._executor.submit(self._fetch)

    def update_and_wait(self) -> None:
        if self._future is not None:
            self._future.result()  # an older fetch; the one below is at least as new
            self._future = None
        self._adopt(self._fetch())
        self._calls_since_fetch = 0

    def _fetch(self) -> tuple[Any, int]:
        params, version = self._source.get_variables([self._key, "version"])
        return jax.device_put(params), int(version)

    def _adopt(self, fetched: tuple[Any, int]) -> None:
        self._params, self._version = fetched

    def close(self) -> None:
        self._executor.shutdown(wait=True)
