"""N-step transition adder: writes one Reverb item per transition, with an explicit priority.

For a transition that starts at step t and spans k = min(n, steps until the episode ends):

    n_step_return_t = sum_{j=0}^{k-1} gamma^j * r_{t+j}
    discount_t      = 0        if the episode terminated at step t+k,
                      gamma^k  otherwise (mid-episode k = n; truncation bootstraps)
    next_obs_t      = obs_{t+k}

so a learner's target is n_step_return_t + discount_t * Q_target(next_obs_t, .).

What one item is: `TransitionLayout` (agents/layouts.py, TensorFlow-free so that losses can read
items without Reverb); the table signature is derived from it:
- ordinary observations: every step stores its obs once; an item references the obs of
  steps t and t+k.
- frame-window observations ([window, F], a sliding window of per-step frames): every step
  stores only its newest frame [F]; an item references the `window + n` frames ending at
  step t+k plus `obs_offset = n - k`, and `TransitionLayout.observations` cuts obs_t and
  obs_{t+k} out of them on the learner side. Each episode starts with n - 1 zero frames so
  that short transitions at its start still find window + n frames.
"""

import time
from typing import Any, NamedTuple

import numpy as np
import reverb

from agents import core
from agents.layouts import TransitionLayout  # noqa: F401  (the adder's item; imported from here too)

MAX_CHUNK_LENGTH = 64
FLUSH_POLL_MS = 500  # a writer waiting for room checks this often that the server still runs
SERVER_CHECK_S = 5  # how long that check may take before the server counts as gone
# On close the server is either up (it answers in milliseconds) or gone: no need to wait 5 s
# for a replay the launcher closed under a blocked writer.
CLOSE_SERVER_CHECK_S = 1


class NStepTransitions(NamedTuple):
    """Transitions that completed in the last `add`, in [B, n] slots.

    Slot j of env b is the transition that spans k = n - j steps and ends at that env's
    newest observation; slot 0 is the ordinary k = n one, slots j > 0 exist only when the
    episode just ended.
    """

    valid: np.ndarray  # [B, n] bool
    n_step_return: np.ndarray  # [B, n] float32
    discount: np.ndarray  # [B, n] float32
    first_extras: np.ndarray  # [B, n, ...] float32, `extras` given with the transition's first step


class NStepAdder(core.Adder):
    """Writes n-step transitions of B envs to one table (one TrajectoryWriter per env).

    Per step: `transitions = add(...)` writes the step and returns what completed; the
    caller computes their priorities and calls `write(priorities)`, which creates the items.
    This split lets an actor price transitions with the network call that picks its next
    actions, and run that call while `add` talks to the writers.
    """

    def __init__(
        self,
        client: reverb.Client,
        table: str,
        layout: TransitionLayout,
        num_envs: int,
        discount: float,
        chunk_length: int | None = None,
        max_in_flight_items: int | None = None,
    ):
        self._client = client
        self._server_gone = False  # found by a writer waiting for room
        self._table = table
        self._layout = layout
        self._num_envs = num_envs
        n = layout.n_step
        keep_alive = layout.steps_spanned
        # Chunks hold `chunk_length` steps of a column, shared by every item that reads them:
        # long chunks cost less memory per item (see benchmarks/replay_memory.py), but items
        # wait until their chunks are complete (Reverb logs a warning past 50 pending items
        # per writer, which long chunks exceed on a busy server: harmless, see the benchmark).
        self._chunk_length = min(chunk_length or MAX_CHUNK_LENGTH, keep_alive)
        # Pending items: up to a chunk's worth waiting for its chunk, plus a few being confirmed.
        self._max_in_flight_items = max_in_flight_items or self._chunk_length + n + 4
        self._writers = [client.trajectory_writer(num_keep_alive_refs=keep_alive) for _ in range(num_envs)]
        for writer in self._writers:
            for column in ("frame", "observation", "action", "n_step_return", "discount", "obs_offset"):
                writer.configure((column,), num_keep_alive_refs=keep_alive, max_chunk_length=self._chunk_length)
        self._frame_column = "observation" if layout.frame_window is None else "frame"

        self._rewards = np.zeros([num_envs, n], np.float32)  # last n rewards of each env, oldest first
        self._extras = np.zeros([num_envs, n], np.float32)
        self._episode_steps = np.zeros([num_envs], np.int64)
        self._steps_spanned = n - np.arange(n)  # [n] k of each slot
        # return_weights[i, j] = gamma^(i - j) for i >= j: n_step_return[:, j] = rewards @ return_weights[:, j]
        exponents = np.arange(n)[:, None] - np.arange(n)[None, :]
        self._return_weights = np.where(exponents >= 0, discount ** np.maximum(exponents, 0), 0.0).astype(np.float32)
        self._bootstrap_discounts = (discount ** self._steps_spanned).astype(np.float32)  # [n]
        self._pending: tuple | None = None
        self.items_written = 0  # items handed to the writers (sent by the time `close` returns)
        self._zero_frame = None
        if layout.frame_window is not None:
            self._zero_frame = np.zeros(layout.observation_shape[1:], layout.observation_dtype)

    def add_first(self, observation: np.ndarray, env_mask: np.ndarray | None = None) -> None:
        """Starts episodes: observation [B, ...] of the envs where env_mask is True."""
        for b in env_indices(env_mask, self._num_envs):
            writer = self._writers[b]
            self._episode_steps[b] = 0
            if self._layout.frame_window is None:
                writer.append({"observation": observation[b]})
                continue
            for _ in range(self._layout.n_step - 1):
                writer.append({"frame": self._zero_frame})
            for frame in observation[b]:
                writer.append({"frame": frame})

    def add(
        self,
        action: np.ndarray,
        reward: np.ndarray,
        next_observation: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        env_mask: np.ndarray | None = None,
        extras: np.ndarray | None = None,
    ) -> NStepTransitions:
        """Records one step of every env in env_mask; returns the transitions it completed.

        The step's data goes to the writers now; the items of the completed transitions are
        created by the next `write(priorities)`. `extras` [B, ...] (e.g. the Q-value of the action
        taken) is kept, not written, and comes back as `first_extras` with the transitions
        this step starts.
        """
        if self._pending is not None:
            raise RuntimeError("NStepAdder.add called twice without write(priorities) in between")
        mask = np.ones(self._num_envs, bool) if env_mask is None else np.asarray(env_mask, bool)
        n = self._layout.n_step
        self._rewards[mask] = np.concatenate([self._rewards[mask, 1:], np.asarray(reward, np.float32)[mask, None]], 1)
        if extras is not None:
            extras = np.asarray(extras, np.float32)  # [B, ...]
            if self._extras.shape[2:] != extras.shape[1:]:  # e.g. [B, D] with action branches
                self._extras = np.zeros((self._num_envs, n, *extras.shape[1:]), np.float32)
            self._extras[mask] = np.concatenate([self._extras[mask, 1:], extras[mask, None]], 1)
        self._episode_steps[mask] += 1
        terminated = np.asarray(terminated, bool)
        done = mask & (terminated | np.asarray(truncated, bool))
        valid = (
            mask[:, None]
            & (self._episode_steps[:, None] >= self._steps_spanned[None, :])
            & ((np.arange(n) == 0)[None, :] | done[:, None])
        )  # [B, n]
        n_step_return = self._rewards @ self._return_weights  # [B, n]
        discount = np.where(terminated[:, None], 0.0, self._bootstrap_discounts[None, :]).astype(np.float32)
        self._pending = self._append(mask, action, next_observation, valid, n_step_return, discount)
        return NStepTransitions(valid, n_step_return, discount, self._extras.copy())

    def _append(self, mask, action, next_observation, valid, n_step_return, discount) -> list:
        """Appends the step's rows; returns (env, slot, item references) of the items to create."""
        items = []
        frame_window = self._layout.frame_window
        for b in np.flatnonzero(mask):
            writer = self._writers[b]
            newest = next_observation[b] if frame_window is None else next_observation[b][-1]
            row = {self._frame_column: newest, "action": np.asarray(action[b], np.int32)}  # [] or [D]
            slots = np.flatnonzero(valid[b])
            for rows_after, slot in enumerate(slots):
                # One row per completed transition: its scalars, after the step's own row.
                row["n_step_return"] = n_step_return[b, slot]
                row["discount"] = discount[b, slot]
                if frame_window is not None:
                    row["obs_offset"] = np.int32(slot)
                writer.append(row)
                row = {}
                item = self._item(writer.history, steps_spanned=int(self._steps_spanned[slot]), rows_after=rows_after)
                items.append((b, slot, item))
            if len(slots) == 0:
                writer.append(row)
        return items

    def write(self, priorities: np.ndarray) -> None:
        """Creates the items of the transitions the last `add` completed ([B, n] priorities)."""
        if self._pending is None:
            raise RuntimeError("NStepAdder.write called without a preceding add")
        items, self._pending = self._pending, None
        priorities = np.asarray(priorities, np.float64)
        for b, slot, item in items:
            self._writers[b].create_item(self._table, float(priorities[b, slot]), item)
        self.items_written += len(items)
        for b in {b for b, _, _ in items}:
            self._wait_for_room(self._writers[b])

    def _wait_for_room(self, writer: Any) -> None:
        try:
            wait_for_room(self._client, writer, self._max_in_flight_items)
        except reverb.errors.DeadlineExceededError:
            self._server_gone = True
            raise

    def _item(self, history: Any, steps_spanned: int, rows_after: int) -> dict[str, Any]:
        """References of one item whose last observation sits `rows_after` rows back."""
        last = -1 - rows_after  # row of obs_{t+k}
        item = {
            "action": history["action"][last - steps_spanned + 1],  # a_t is stored on the row of obs_{t+1}
            "n_step_return": history["n_step_return"][-1],
            "discount": history["discount"][-1],
        }
        if self._layout.frame_window is None:
            item["observation"] = history["observation"][last - steps_spanned]
            item["next_observation"] = history["observation"][last]
        else:
            end = last + 1 if last < -1 else None
            item["frames"] = history["frame"][last + 1 - self._layout.num_frames : end]
            item["obs_offset"] = history["obs_offset"][-1]
        return item

    def reset(self) -> None:
        """Forgets unfinished transitions; every env needs `add_first` again."""
        self._pending = None
        self._episode_steps[:] = 0

    def flush(self, timeout_ms: int | None = None) -> None:
        """Blocks until every item created so far is in the table."""
        for writer in self._writers:
            writer.flush(timeout_ms=timeout_ms)

    def close(self, timeout_ms: int = 5000) -> None:
        """Sends what is left (waiting at most timeout_ms in all) and closes the writers; what
        a stopped server or a rate limiter that no longer admits inserts holds back is dropped."""
        close_writers(self._client, self._writers, timeout_ms, self._server_gone)
        self._writers = []


def wait_for_room(client: reverb.Client, writer: Any, max_in_flight_items: int) -> None:
    """Blocks while `writer` has more than max_in_flight_items pending (e.g. while a rate
    limiter holds inserts back), checking every FLUSH_POLL_MS that the server is still there:
    a flush without timeout would wait forever once the server is gone (it is not woken by
    the server stopping), so the actor could never stop. Raises DeadlineExceededError then."""
    while True:
        try:
            writer.flush(block_until_num_items=max_in_flight_items, timeout_ms=FLUSH_POLL_MS)
            return
        except reverb.errors.DeadlineExceededError:
            client.server_info(timeout=SERVER_CHECK_S)  # raises DeadlineExceededError if gone


def close_writers(client: reverb.Client, writers: list[Any], timeout_ms: int, server_gone: bool) -> None:
    """Flushes `writers` (at most timeout_ms in all) and closes them; what a stopped server or a
    rate limiter that no longer admits inserts holds back is dropped."""
    deadline = time.monotonic() + timeout_ms / 1000.0
    try:
        if server_gone:
            raise reverb.errors.DeadlineExceededError("the server is gone")
        client.server_info(timeout=CLOSE_SERVER_CHECK_S)  # raises if the server is gone
        for writer in writers:
            writer.flush(timeout_ms=max(1, int(1000 * (deadline - time.monotonic()))))
    except reverb.errors.DeadlineExceededError:
        pass
    for writer in writers:
        writer.close()


def env_indices(env_mask: np.ndarray | None, num_envs: int) -> np.ndarray:
    """Indices of the envs an adder call applies to: all of them when env_mask is None."""
    if env_mask is None:
        return np.arange(num_envs)
    return np.flatnonzero(env_mask)
