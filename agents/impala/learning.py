"""IMPALA learner: takes batches of sequences from the Reverb queue and runs the pmapped V-trace
update. The maths (V-trace, the loss, sgd_step) is in losses.py."""

from typing import Callable, Iterator

import jax

from agents.impala.losses import LearnerState
from agents.pmap_learner import PmapLearner
from agents.replay import ReplayBatch


class ImpalaLearner(PmapLearner):
    """Takes batches of sequences from the queue and runs the pmapped update (PmapLearner
    serves, saves and restores the parameters)."""

    def __init__(
        self,
        sgd_step: Callable[[LearnerState, dict[str, jax.Array]], tuple[LearnerState, dict[str, jax.Array]]],
        initial_state: LearnerState,
        iterator: Iterator[ReplayBatch],
        devices: list[jax.Device] | None = None,
    ):
        super().__init__(sgd_step, initial_state, devices)
        self._iterator = iterator

    def step(self) -> dict[str, float]:
        batch = next(self._iterator)
        size = batch.keys.shape[0]
        self._check_divisible(size)
        data = {name: value.reshape(self.num_devices, size // self.num_devices, *value.shape[1:])
                for name, value in batch.data.items()}  # [devices, B / devices, T, ...]
        metrics, version = self._update(data)
        return self._host_metrics(metrics, version)
