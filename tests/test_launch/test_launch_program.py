"""The program engine with tiny nodes of its own (no agent): handles, limits, errors, faults."""

import os
import signal
import time

import pytest
ray = pytest.importorskip("ray")  # requirements.txt's stack only (BUILD.md)

import toy_nodes
from launch.distributed import program as lp
from launch.distributed.ray_engine import KEPT_ARGUMENTS_BYTES, NodeClient

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The toy nodes live in the tests folder, which node processes cannot import: ship them by value.
ray.cloudpickle.register_pickle_by_value(toy_nodes)


def _with_padding(constructor):
    """`constructor` with one more keyword argument, `padding`, which it ignores."""

    def build(*args, padding, **kwargs):  # a local function: shipped by value, like toy_nodes.
        return constructor(*args, **kwargs)

    return build


def _toy_program(max_steps=None, fail_at_step=None, restartable=True, worker_0_padding_bytes=0):
    program = lp.Program("toy")
    board = program.add_node("board", toy_nodes.Board, num_cpus=0)
    source = program.add_node("source", toy_nodes.Source, board, max_steps=max_steps, num_cpus=0.5)
    for i in range(2):
        constructor, padding = toy_nodes.Worker, {}
        if i == 0 and worker_0_padding_bytes:
            constructor, padding = _with_padding(constructor), {"padding": bytes(worker_0_padding_bytes)}
        program.add_node(
            f"worker_{i}", constructor, f"worker_{i}", source, board,
            fail_at_step=fail_at_step if i == 0 else None,
            max_restarts=-1 if restartable else 0, num_cpus=0.5, **padding,
        )
    return program


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[-1].split()[0] != "Z"


def _wait_until(predicate, timeout_s, poll_s=0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return False


def test_add_node_rejects_duplicate_labels_and_unknown_handles():
    program = lp.Program("p")
    board = program.add_node("board", toy_nodes.Board)
    with pytest.raises(ValueError, match="'board' is used twice"):
        program.add_node("board", toy_nodes.Board)
    with pytest.raises(ValueError, match="handle to 'nope'"):
        program.add_node("source", toy_nodes.Source, lp.Handle("nope"))
    with pytest.raises(ValueError, match="unknown launch type 'local'"):
        program.launch("local")
    with pytest.raises(ValueError, match="needs --ray_address"):
        program.launch("ray")
    del board


def test_local_mt_clients_are_the_objects_and_a_finished_run_stops_the_program():
    with _toy_program(max_steps=30).launch("local_mt") as launched:
        assert isinstance(launched.clients["source"], toy_nodes.Source)
        outcome = launched.wait(poll_s=0.05)
        assert outcome.reason == "source finished" and outcome.errors == []
        launched.stop()
        posts = launched.clients["board"].posts()
        board = launched.clients["board"]
        assert launched.clients["source"].get_variables(["version"]) == [30]
    assert {label for label, _ in posts} == {"worker_0", "worker_1"}
    assert all(post["steps"] > 0 and 0 <= post["max_version"] <= 30 for post in posts.values())
    # close() runs in reverse order of add_node: users of a node close before it.
    assert board.closed_order() == ["worker_1", "worker_0", "source"]
    assert launched.errors == []


def test_local_mt_limit_from_stop_when_and_node_error_with_traceback():
    with _toy_program().launch("local_mt") as launched:
        outcome = launched.wait(stop_when=lambda: "limit: test", poll_s=0.05)
        assert outcome.reason == "limit: test"

    with _toy_program(fail_at_step=3).launch("local_mt") as launched:
        outcome = launched.wait(poll_s=0.05)
    assert outcome.reason == "error"
    (error,) = outcome.errors
    assert error.label == "worker_0"
    assert "node 'worker_0' failed" in str(error)
    assert "Traceback" in error.details and "ValueError: boom at step 3" in error.details


@pytest.mark.e2e
def test_local_mp_processes_concurrent_variables_actor_restart_and_a_lost_source():
    """worker_0 is killed late in its run and restarts. Its constructor arguments (200 KB) are
    more than Ray inlines, which Ray alone frees once the node is built (ray#53727): the
    restart shows the driver kept them. Then the source, which is not restartable, is killed:
    that ends the program with an error naming it."""
    padding_bytes = 200_000
    assert padding_bytes > 2 * KEPT_ARGUMENTS_BYTES  # also above Ray's 100 KiB inline limit
    launched = _toy_program(worker_0_padding_bytes=padding_bytes).launch("local_mp", code_dir=REPO_ROOT)
    with launched:
        pids = launched.pids()
        first = {label: p[0] for label, p in pids.items()}
        assert len(set(first.values())) == 4 and os.getpid() not in first.values()
        assert isinstance(launched.clients["source"], NodeClient)
        board = launched.clients["board"]

        # Workers fetch variables while the source's run() loop is going (threaded actor).
        assert _wait_until(lambda: len(board.posts()) == 2 and all(
            p["max_version"] > 0 and p["source_in_run"] for p in board.posts().values()), 30)

        # Late in its run (200 steps, seconds after it was built), when Ray would long have
        # freed constructor arguments that only it held.
        killed = first["worker_0"]
        assert _wait_until(lambda: board.posts()[("worker_0", killed)]["steps"] >= 200, 60)
        os.kill(killed, signal.SIGKILL)
        deadline = time.monotonic() + 60
        outcome = launched.wait(
            stop_when=lambda: "restarted" if launched.restarts()["worker_0"] >= 1 and any(
                label == "worker_0" and pid != killed and post["steps"] > 5
                for (label, pid), post in board.posts().items()) else (
                "timeout" if time.monotonic() > deadline else None),
            poll_s=0.2,
        )
        assert outcome.reason == "restarted", outcome
        assert launched.errors == []
        assert launched.restarts() == {"board": 0, "source": 0, "worker_0": 1, "worker_1": 0}
        new_pid = launched.pids()["worker_0"][1]
        posts = board.posts()
        assert posts[("worker_0", new_pid)]["steps"] > 5 and ("worker_0", killed) in posts

        os.kill(first["source"], signal.SIGKILL)
        outcome = launched.wait(poll_s=0.2)
        assert outcome.reason == "error"
        labels = [error.label for error in outcome.errors]
        assert labels[0] == "source", outcome.errors
        assert "not restartable" in outcome.errors[0].details
        all_pids = [pid for p in launched.pids().values() for pid in p]
    assert not ray.is_initialized()
    assert _wait_until(lambda: not any(_alive(pid) for pid in all_pids), 20), all_pids


@pytest.mark.e2e
def test_local_mp_node_error_ends_the_program_with_its_traceback():
    with _toy_program(fail_at_step=20, restartable=False).launch("local_mp", code_dir=REPO_ROOT) as launched:
        outcome = launched.wait(poll_s=0.2)
    assert outcome.reason == "error"
    assert outcome.errors[0].label == "worker_0"
    assert "ValueError: boom at step 20" in outcome.errors[0].details
    assert not ray.is_initialized()


def test_stop_closes_services_early_to_unblock_a_run_blocked_on_them():
    program = lp.Program("gate")
    gate = program.add_node("gate", toy_nodes.Gate)
    program.add_node("waiter", toy_nodes.Waiter, gate)
    with program.launch("local_mt") as launched:
        assert launched.wait(stop_when=lambda: "limit", poll_s=0.01).reason == "limit"
        start = time.monotonic()
        launched.stop(grace_s=0.2, timeout_s=5)
        assert time.monotonic() - start < 3
        assert launched.clients["waiter"].result == "opened"
    assert launched.errors == []
