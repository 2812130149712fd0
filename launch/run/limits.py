"""How a run stops and when it checkpoints, whichever driver trains: the first limit reached
(--max_learner_steps, --max_env_steps, --max_seconds) or a signal (SIGINT, SIGTERM, caught
while the run goes on), and a learner checkpoint whenever training crosses a multiple of
--checkpoint_every (and at the end)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import threading
from typing import Any, Iterator, Sequence

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Limits:
    """The run's stop limits; 0 is no limit. env steps are counted as each driver counts
    them: all actors' (distributed), each seed's envs on all devices (anakin)."""

    max_learner_steps: int = 0
    max_env_steps: int = 0
    max_seconds: float = 0.0

    def reason(self, learner_steps: int | None, env_steps: int, elapsed_s: float,
               received: Sequence[str] = ()) -> str | None:
        """Why the run stops now ("interrupted (SIGINT)", "limit: max_seconds=60", ...), or None.
        `learner_steps` None: the learner stops itself at its limit (learner_limit)."""
        if received:
            return f"interrupted ({received[0]})"
        if (learner_steps is not None and self.max_learner_steps
                and learner_steps >= self.max_learner_steps):
            return self.learner_limit
        if self.max_env_steps and env_steps >= self.max_env_steps:
            return f"limit: max_env_steps={self.max_env_steps}"
        if self.max_seconds and elapsed_s >= self.max_seconds:
            return f"limit: max_seconds={self.max_seconds:g}"
        return None

    @property
    def learner_limit(self) -> str:
        return f"limit: max_learner_steps={self.max_learner_steps}"


class CheckpointCadence:
    """A learner checkpoint whenever the learner step crosses a multiple of `every` (0: only at
    the end), counted from `saved_step` (the restored step, or -1 for none yet)."""

    def __init__(self, every: int, saved_step: int = -1):
        self.every = every
        self.saved_step = saved_step

    def due(self, step: int) -> bool:
        return bool(self.every) and step // self.every > max(self.saved_step, 0) // self.every

    def due_at_end(self, step: int) -> bool:
        """The final checkpoint, unless this step is saved already."""
        return self.saved_step != step

    def saved(self, step: int) -> None:
        self.saved_step = step


@contextlib.contextmanager
def catch_signals(received: list[str]) -> Iterator[None]:
    """Turns SIGINT/SIGTERM into an entry in `received` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if not received:
            log.warning("%s received: stopping (checkpoints and the summary are written)", name)
        received.append(name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
