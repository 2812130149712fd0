"""VariableClient: background fetches every update_period calls, never blocking the caller."""

import threading
import time

import numpy as np
import pytest

from agents import core
from agents.variable_client import VariableClient


class SlowSource(core.VariableSource):
    """Serves {"w": version} for the version it is told; a fetch waits until `release` is set."""

    def __init__(self):
        self.version = 0
        self.fetches = 0
        self.release = threading.Event()
        self.release.set()

    def get_variables(self, names):
        self.fetches += 1
        self.release.wait(timeout=10)
        values = {"params": {"w": np.full(2, float(self.version))}, "version": self.version}
        return [values[name] for name in names]


def wait_for_version(client, version, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while client.version != version and time.monotonic() < deadline:
        time.sleep(0.005)
        client.update()
    return client.version


def test_first_use_fetches_and_update_and_wait_gets_the_newest():
    source = SlowSource()
    client = VariableClient(source, "params", update_period=1000)
    np.testing.assert_array_equal(client.params["w"], [0.0, 0.0])
    assert client.version == 0
    source.version = 7
    client.update_and_wait()
    assert client.version == 7
    np.testing.assert_array_equal(client.params["w"], [7.0, 7.0])
    client.close()


def test_fetches_every_update_period_calls():
    source = SlowSource()
    client = VariableClient(source, "params", update_period=3)
    client.update_and_wait()
    source.version = 1
    client.update()
    client.update()
    assert source.fetches == 1 and client.version == 0  # stale until the period passes
    client.update()  # third call: starts a fetch
    deadline = time.monotonic() + 5
    while source.fetches < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert source.fetches == 2
    while not client._future.done() and time.monotonic() < deadline:  # the fetch completes
        time.sleep(0.005)
    client.update()  # finds the fetch done and swaps it in
    assert client.version == 1
    client.close()


def test_update_never_blocks_on_a_slow_source():
    source = SlowSource()
    client = VariableClient(source, "params", update_period=1)
    client.update_and_wait()
    source.release.clear()
    source.version = 5
    started = time.monotonic()
    for _ in range(100):
        client.update()
    # A blocking update would wait for the source's 10 s; 5 s leaves room for a loaded machine.
    assert time.monotonic() - started < 5.0
    assert client.version == 0  # the fetch is still waiting on the source
    source.release.set()
    assert wait_for_version(client, 5) == 5
    client.close()


def test_update_period_must_be_positive():
    with pytest.raises(ValueError, match="update_period must be >= 1, got 0"):
        VariableClient(SlowSource(), "params", update_period=0)
