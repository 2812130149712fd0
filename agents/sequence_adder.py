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
"""

from typing import Any

import numpy as np
import reverb

from agents import core
from agents.adders import close_writers, env_indices, wait_for_room
from agents.layouts import SEQUENCE_COLUMNS as COLUMNS
from agents.layouts import SequenceLayout  # noqa: F401  (the adder's item; imported from here too)


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
        self._writers = [client.trajectory_writer(num_keep_alive_refs=T) for _ in range(num_envs)]
        for writer in self._writers:
            for column in COLUMNS:
                writer.configure((column,), num_keep_alive_refs=T, max_chunk_length=self._chunk_length)
        self._observations: list[np.ndarray | None] = [None] * num_envs  # obs awaiting its action
        self._rows = np.zeros(num_envs, np.int64)  # rows appended since the stream (re)started
        self.items_written = 0

    def add_first(self, observation: np.ndarray, env_mask: np.ndarray | None = None) -> None:
        """Starts episodes: observation [B, ...] of the envs where env_mask is True."""
        for b in env_indices(env_mask, self._num_envs):
            self._observations[b] = observation[b]

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
            items = self._append(b, dict(
                observation=self._observations[b], action=np.int32(action[b]),
                reward=np.float32(reward[b]), discount=np.float32(0.0 if terminated[b] else 1.0),
                behaviour_log_prob=np.float32(behaviour_log_prob[b]), valid=True,
            ))
            if ended:  # the final observation: bootstrap value only, never learned
                items += self._append(b, dict(
                    observation=next_observation[b], action=np.int32(0), reward=np.float32(0.0),
                    discount=np.float32(0.0), behaviour_log_prob=np.float32(0.0), valid=False,
                ))
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
        item = {column: writer.history[column][-T:] for column in COLUMNS}
        writer.create_item(self._table, 1.0, item)
        self.items_written += 1
        return 1

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
