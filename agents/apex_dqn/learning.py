"""Ape-X DQN learner: samples prioritized replay from Reverb, runs the pmapped update, writes
priorities back. The maths (loss, priorities, importance weights, sgd_step) is in losses.py."""

import concurrent.futures
from typing import Callable, Iterator

import jax
import numpy as np
import reverb

from agents.apex_dqn.losses import Batch, LearnerState, LossExtra
from agents.pmap_learner import PmapLearner
from agents.replay import ReplayBatch


def to_device_batch(batch: ReplayBatch, num_devices: int) -> Batch:
    """Host batch -> Batch with a leading [num_devices, B / num_devices] split."""

    def split(x: np.ndarray) -> np.ndarray:
        return x.reshape(num_devices, x.shape[0] // num_devices, *x.shape[1:])

    return Batch(
        data={name: split(value) for name, value in batch.data.items()},
        probabilities=split(batch.probabilities.astype(np.float32)),
        table_size=split(batch.table_size.astype(np.float32)),
    )


class ApexDQNLearner(PmapLearner):
    """Samples batches, runs the pmapped update, sends new priorities back, serves params.

    `get_variables` may be called from any thread; it serves the parameters of the last
    finished update without waiting for the one in progress.
    """

    def __init__(
        self,
        sgd_step: Callable[[LearnerState, Batch], tuple[LearnerState, LossExtra]],
        initial_state: LearnerState,
        iterator: Iterator[ReplayBatch],
        replay_client: reverb.Client,
        table: str,
        devices: list[jax.Device] | None = None,
    ):
        super().__init__(sgd_step, initial_state, devices)
        self._iterator = iterator
        self._client = replay_client
        self._table = table
        # New priorities are sent in the background while the next update runs.
        self._priority_writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mutate_priorities")
        self._pending_priorities: concurrent.futures.Future | None = None

    def step(self) -> dict[str, float]:
        batch = next(self._iterator)
        self._check_divisible(batch.keys.shape[0])
        extra, version = self._update(to_device_batch(batch, self.num_devices))
        priorities = np.asarray(extra.priorities, np.float64).reshape(-1)  # [B], waits for the update
        self._send_priorities(batch.keys, priorities)
        return self._host_metrics(extra.metrics, version)

    def _send_priorities(self, keys: np.ndarray, priorities: np.ndarray) -> None:
        if self._pending_priorities is not None:
            self._pending_priorities.result()  # at most one update in flight; raises its error
        updates = dict(zip(keys.tolist(), priorities.tolist()))
        self._pending_priorities = self._priority_writer.submit(
            self._client.mutate_priorities, self._table, updates=updates
        )

    def flush_priorities(self) -> None:
        """Waits until the last priorities reached the table."""
        if self._pending_priorities is not None:
            self._pending_priorities.result()
            self._pending_priorities = None

    def close(self) -> None:
        self.flush_priorities()
        self._priority_writer.shutdown(wait=True)
