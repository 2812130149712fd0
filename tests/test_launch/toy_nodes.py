"""Tiny nodes for testing the program engine without any agent."""

import os
import threading
import time


class Board:
    """A service node: nodes post counts here; it records the order nodes were closed in."""

    def __init__(self):
        self._lock = threading.Lock()
        self._posts = {}
        self.closed = []

    def post(self, key, value):
        with self._lock:
            self._posts[tuple(key)] = value

    def posts(self):
        with self._lock:
            return dict(self._posts)

    def note_closed(self, label):
        with self._lock:
            self.closed.append(label)

    def closed_order(self):
        with self._lock:
            return list(self.closed)


class Source:
    """A learner-like node: run() bumps a version; get_variables serves it meanwhile."""

    def __init__(self, board, max_steps=None, step_s=0.01):
        self._board = board
        self._max_steps = max_steps
        self._step_s = step_s
        self._version = 0
        self._stop = threading.Event()
        self.in_run = threading.Event()

    def run(self):
        self.in_run.set()
        while not self._stop.is_set():
            if self._max_steps is not None and self._version >= self._max_steps:
                return
            time.sleep(self._step_s)
            self._version += 1

    def get_variables(self, names):
        values = {"version": self._version, "params": [float(self._version)], "in_run": self.in_run.is_set()}
        return [values[name] for name in names]

    def stop(self):
        self._stop.set()

    def close(self):
        self._board.note_closed("source")


class Worker:
    """An actor-like node: fetches variables and posts its step count under (label, pid)."""

    def __init__(self, label, source, board, fail_at_step=None):
        self._label = label
        self._source = source
        self._board = board
        self._fail_at_step = fail_at_step
        self._stop = threading.Event()

    def run(self):
        steps = 0
        versions = []
        while not self._stop.is_set():
            version, in_run = self._source.get_variables(["version", "in_run"])
            versions.append(version)
            steps += 1
            if self._fail_at_step is not None and steps == self._fail_at_step:
                raise ValueError(f"boom at step {steps}")
            self._board.post((self._label, os.getpid()), {"steps": steps, "max_version": max(versions), "source_in_run": in_run})
            time.sleep(0.01)

    def stop(self):
        self._stop.set()

    def close(self):
        self._board.note_closed(self._label)


class Gate:
    """A service that blocks callers until it is closed (like a replay starving a learner)."""

    def __init__(self):
        self._open = threading.Event()

    def wait_open(self):
        self._open.wait()
        return "opened"

    def close(self):
        self._open.set()


class Waiter:
    """A worker that ignores stop() and only returns once its gate opens."""

    def __init__(self, gate):
        self._gate = gate
        self.result = None

    def run(self):
        self.result = self._gate.wait_open()

    def stop(self):
        pass
