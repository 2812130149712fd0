"""Sequence adder: writes each env's steps as overlapping sequences of T rows (e.g. to a queue).

Every env is one stream of rows. The row of step t holds what an on-policy learner needs:

    observation_t, action_t, reward_t (received after action_t),
    discount_t          = 0 if the episode terminated after action_t, else 1 (the learner
                          multiplies by its gamma),
    behaviour_log_prob_t = log mu(action_t | observation_t), the actor's policy,
    valid_t             = True

and when an episode ends (terminated or truncated), its final observation gets a row of its
own with valid False (action, reward and log-prob 0, discount 0); the stream then goes on with
the next episode. A learner gives valid-False rows no loss and cuts the trace there, so a
truncated episode bootstraps from V(final observation) and nothing leaks across episodes.

An item is T consecutive rows of one env, and items start every T - 1 rows:

    rows   0 1 2 ... T-1
    item 0 [---------]
    item 1           [---------]      (shares row T-1 with item 0)

The last row of an item only gives the bootstrap value V(x_{T-1}); it is the first learned row
of the next item. Every row is learned in exactly one item (IMPALA's overlapping unrolls).

Frame-window observations ([window, F], SequenceLayout.frame_window) are stored once: a row
holds only its observation's newest frame, and an episode's first observation also writes its
window - 1 older frames (steps with a frame only, no row). An item then references the
T + window - 1 frames ending at its last row, from which SequenceLayout.rows rebuilds every
row's observation. Those frames must be one episode's, so items do not cross episodes there:
each episode's rows start a new stream, and its last item is completed with padding rows
(frame 0, valid False, discount 0), which no loss reads (fewer than T - 1 per episode, however
long the window).
"""

from typing import Any

import numpy as np
import reverb

from agents import core
from agents.adders import close_writers, env_indices, wait_for_room
from agents.layouts import SEQUENCE_COLUMNS
from agents.layouts import SequenceLayout  # noqa: F401  (the adder's item; imported from here too)

ROW_COLUMNS = SEQUENCE_COLUMNS[1:]  # every column but the observation


class SequenceAdder(core.Adder):
    """Writes sequences of B envs to one table (one TrajectoryWriter per env), priority 1.

    With a queue table (reverb.Table.queue) a full queue makes `add` block until the learner
    has taken items: experience is never dropped while the server runs.
    """

    def __init__(
        self,
        client: reverb.Client,
        table: str,
        layout: SequenceLayout,
        num_envs: int,
        chunk_length: int | None = None,
        max_in_flight_items: int = 4,
    ):
        self._client = client
        self._table = table
        self._layout = layout
        self._num_envs = num_envs
        T = layout.sequence_length
        # Chunks of T - 1 rows: an item's last row opens the next chunk, so the item is sent
        # when that chunk completes (one sequence later) or at close.
        self._chunk_length = chunk_length or T - 1
        # An item always waits for its last chunk: at least 2 per writer are in flight.
        self._max_in_flight_items = max(2, max_in_flight_items)
        self._server_gone = False
        self._frame_window = layout.frame_window
        # The observation's column: full observations, or one frame per row (after an episode's
        # window - 1 older frames) of which an item references the last T + window - 1.
        self._observation_column = "observation" if self._frame_window is None else "frame"
        observation_refs = T if self._frame_window is None else layout.num_frames
        self._writers = [client.trajectory_writer(num_keep_alive_refs=observation_refs) for _ in range(num_envs)]
        for writer in self._writers:
            writer.configure((self._observation_column,), num_keep_alive_refs=observation_refs,
                             max_chunk_length=self._chunk_length)
            for column in ROW_COLUMNS:
                writer.configure((column,), num_keep_alive_refs=T, max_chunk_length=self._chunk_length)
        self._observations: list[np.ndarray | None] = [None] * num_envs  # obs awaiting its action
        self._rows = np.zeros(num_envs, np.int64)  # rows appended since the stream (re)started
        self._padding = None
        self._no_action = np.zeros(layout.action_shape, np.int32)  # a row without an action: [] or [D]
        if self._frame_window is not None:
            frame = np.zeros(layout.observation_shape[1:], layout.observation_dtype)
            self._padding = dict(frame=frame, action=self._no_action, reward=np.float32(0.0), discount=np.float32(0.0),
                                 behaviour_log_prob=np.float32(0.0), valid=False)
        self.items_written = 0
        self.padding_rows_written = 0

    def add_first(self, observation: np.ndarray, env_mask: np.ndarray | None = None) -> None:
        """Starts episodes: observation [B, ...] of the envs where env_mask is True."""
        for b in env_indices(env_mask, self._num_envs):
            self._observations[b] = observation[b]
            if self._frame_window is not None:  # a new stream, after its older frames
                self._rows[b] = 0
                for frame in observation[b][:-1]:
                    self._writers[b].append({"frame": frame})

    def add(
        self,
        action: np.ndarray,
        reward: np.ndarray,
        next_observation: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        env_mask: np.ndarray | None = None,
        *,
        behaviour_log_prob: np.ndarray,
    ) -> None:
        """Records one step of every env in env_mask ([B] arrays; next_observation [B, ...]);
        creates the items it completes and blocks while the table admits no more."""
        created = []  # envs that created an item: only their writers can have more in flight
        for b in env_indices(env_mask, self._num_envs):
            if self._observations[b] is None:
                raise RuntimeError(f"SequenceAdder.add: env {b} has no observation; call add_first first")
            ended = bool(terminated[b]) or bool(truncated[b])
            items = self._append(b, {
                self._observation_column: self._newest(self._observations[b]), "action": np.asarray(action[b], np.int32),
                "reward": np.float32(reward[b]), "discount": np.float32(0.0 if terminated[b] else 1.0),
                "behaviour_log_prob": np.float32(behaviour_log_prob[b]), "valid": True,
            })
            if ended:  # the final observation: bootstrap value only, never learned
                items += self._append(b, {
                    self._observation_column: self._newest(next_observation[b]), "action": self._no_action,
                    "reward": np.float32(0.0), "discount": np.float32(0.0),
                    "behaviour_log_prob": np.float32(0.0), "valid": False,
                })
                if self._frame_window is not None:  # complete the episode's last item
                    while (self._rows[b] - 1) % (self._layout.sequence_length - 1):
                        items += self._append(b, self._padding)
                        self.padding_rows_written += 1
                self._observations[b] = None
            else:
                self._observations[b] = next_observation[b]
            if items:
                created.append(b)
        for b in created:
            self._wait_for_room(self._writers[b])

    def _append(self, b: int, row: dict[str, Any]) -> int:
        """Appends one row to env b's stream; returns the number of items it created (0 or 1)."""
        writer = self._writers[b]
        writer.append(row)
        self._rows[b] += 1
        T = self._layout.sequence_length
        if self._rows[b] < T or (self._rows[b] - T) % (T - 1):
            return 0
        item = {column: writer.history[column][-T:] for column in ROW_COLUMNS}
        if self._frame_window is None:
            item["observation"] = writer.history["observation"][-T:]
        else:
            item["frames"] = writer.history["frame"][-self._layout.num_frames:]
        writer.create_item(self._table, 1.0, item)
        self.items_written += 1
        return 1

    def _newest(self, observation: np.ndarray) -> np.ndarray:
        """What a row stores of an observation: all of it, or its newest frame."""
        return observation if self._frame_window is None else observation[-1]

    def _wait_for_room(self, writer: Any) -> None:
        try:
            wait_for_room(self._client, writer, self._max_in_flight_items)
        except reverb.errors.DeadlineExceededError:
            self._server_gone = True
            raise

    def reset(self) -> None:
        """Forgets partial sequences: rows not yet in an item are never sent; every env needs
        `add_first` again."""
        self._observations = [None] * self._num_envs
        self._rows[:] = 0

    def flush(self, timeout_ms: int | None = None) -> None:
        """Blocks until every item created so far is in the table."""
        for writer in self._writers:
            writer.flush(timeout_ms=timeout_ms)

    def close(self, timeout_ms: int = 5000) -> None:
        """Sends what is left (at most timeout_ms in all) and closes the writers."""
        close_writers(self._client, self._writers, timeout_ms, self._server_gone)
        self._writers = []
