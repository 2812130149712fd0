"""Which error a run reports when a node's process is lost and the nodes calling it fail too.

The shared wait/stop logic (launch/distributed/engine.py) runs on a scripted engine: its polls return the
ends that Ray reports in either order, so the order is fixed here, not left to timing.
"""

import time

import pytest
ray_exceptions = pytest.importorskip("ray.exceptions")  # requirements.txt's stack only

from launch.distributed import engine
from launch.distributed.ray_engine import _node_error


class _Node:
    def __init__(self, label):
        self.label, self.uses = label, ()


class _Program:
    name = "scripted"

    def __init__(self, labels):
        self.nodes = {label: _Node(label) for label in labels}


class ScriptedLaunched(engine.Launched):
    """Each poll returns the next list of (label, error) ends; nothing else happens."""

    launch_type = "scripted"

    def __init__(self, polls):
        super().__init__(_Program(["source", "worker_0", "worker_1"]))
        self._polls = list(polls)
        self.poll_count = 0

    def _poll(self, timeout_s):
        self.poll_count += 1
        return self._polls.pop(0) if self._polls else []

    def _signal_stop(self, label):
        pass

    def _join_runs(self, timeout_s, labels=None):
        return []

    def _close_node(self, label, timeout_s):
        pass

    def _teardown(self):
        pass

    def pids(self):
        return {}


def _lost(label):
    """The error of a node whose own process was lost."""
    return _node_error(label, ray_exceptions.ActorDiedError())


def _after_lost(label):
    """The error of a node whose run() raised calling a node whose process was lost."""
    error = ray_exceptions.RayTaskError("run", "Traceback ...", ray_exceptions.ActorDiedError())
    return _node_error(label, error.as_instanceof_cause())


def _raised(label, message="ValueError: boom"):
    error = ray_exceptions.RayTaskError("run", f"Traceback ...\n{message}", ValueError("boom"))
    return _node_error(label, error.as_instanceof_cause())


def test_errors_are_classified_by_what_failed():
    assert not _lost("source").after_lost_node and "not restartable" in _lost("source").details
    assert _after_lost("worker_0").after_lost_node
    assert not _raised("worker_0").after_lost_node
    # A node that wrapped the lost call's error: its traceback still names the lost actor.
    wrapped = ray_exceptions.RayTaskError(
        "run", "Traceback ...\nray.exceptions.ActorDiedError: The actor died unexpectedly\n"
        "During handling ...\nRuntimeError: variable fetch failed", RuntimeError("fetch failed"))
    assert _node_error("actor_0", wrapped.as_instanceof_cause()).after_lost_node


@pytest.mark.parametrize("order", ["consequence_first", "loss_first", "same_poll"])
def test_the_lost_node_is_the_error_whatever_order_ray_reports_them_in(order):
    polls = {
        "consequence_first": [[("worker_0", _after_lost("worker_0"))], [], [("source", _lost("source"))]],
        "loss_first": [[("source", _lost("source"))], [("worker_0", _after_lost("worker_0"))]],
        "same_poll": [[("worker_0", _after_lost("worker_0")), ("source", _lost("source"))]],
    }[order]
    with ScriptedLaunched(polls) as launched:
        outcome = launched.wait(poll_s=0.0)
    assert outcome.reason == "error"
    assert [error.label for error in outcome.errors] == ["source"]
    assert [error.label for error in launched.errors] == ["source"]
    assert all(error.label == "worker_0" for error in launched.consequences)


def test_a_consequence_whose_loss_is_never_seen_is_reported_after_the_settle_time(monkeypatch):
    monkeypatch.setattr(engine, "LOST_NODE_SETTLE_S", 0.2)
    start = time.monotonic()
    with ScriptedLaunched([[("worker_0", _after_lost("worker_0"))]]) as launched:
        outcome = launched.wait(poll_s=0.0)
    assert 0.2 <= time.monotonic() - start < 5
    assert outcome.reason == "error" and [e.label for e in outcome.errors] == ["worker_0"]
    assert launched.consequences == []


def test_a_raised_error_ends_the_wait_at_once():
    with ScriptedLaunched([[("worker_1", _raised("worker_1"))]]) as launched:
        outcome = launched.wait(poll_s=0.0)
    assert launched.poll_count == 1
    assert [e.label for e in outcome.errors] == ["worker_1"] and "ValueError: boom" in outcome.errors[0].details
