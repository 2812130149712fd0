"""A Reverb server in a child process (as the replay node runs), for the agent benchmarks.

The child owns the server; the parent owns the child (`with ReplayProcess(...) as replay:`)
and can read the child's resident memory.
"""

import multiprocessing
import os
import pathlib
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def agent_tables(agent, config, spec):
    """The tables of the agent registered as `agent` (agents/registry.py); a module-level
    function, so that a spawned child can import it."""
    from agents.registry import get_builder

    return get_builder(agent).make_replay_tables(config, spec)


def _serve(make_tables, args, ready, stop) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(REPO_ROOT))
    import reverb

    server = reverb.Server(make_tables(*args))
    ready.put(server.port)
    stop.wait()
    server.stop()


class ReplayProcess:
    """Starts `reverb.Server(make_tables(*args))` in a spawned process; stops it on exit."""

    def __init__(self, make_tables, *args):
        context = multiprocessing.get_context("spawn")
        self._ready = context.Queue()
        self._stop = context.Event()
        self._process = context.Process(target=_serve, args=(make_tables, args, self._ready, self._stop), daemon=True)

    def __enter__(self) -> "ReplayProcess":
        self._process.start()
        self.address = f"localhost:{self._ready.get(timeout=120)}"
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._process.join(timeout=30)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()

    def rss_bytes(self) -> int:
        """Resident memory of the server process."""
        with open(f"/proc/{self._process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS in /proc/{self._process.pid}/status")
