"""Acme-style interfaces every node of the program is written against.

These mirror `acme/core.py` (names and meaning); dm-acme itself cannot be imported on
Python 3.11 (see BUILD.md). No logic lives here, only the contracts.
"""

import abc
from typing import Any, Generic, Sequence, TypeVar

import numpy as np

T = TypeVar("T")


class VariableSource(abc.ABC):
    """Serves the latest values of named variables (e.g. a learner's parameters)."""

    @abc.abstractmethod
    def get_variables(self, names: Sequence[str]) -> list[Any]:
        """Returns one pytree per name, in order. May be called from any thread.

        Must not wait for a whole training step: a source serves the latest
        published values. By convention the entry named "version" is the learner
        step the parameters came from.
        """


class Worker(abc.ABC):
    """A node's main loop."""

    @abc.abstractmethod
    def run(self) -> None:
        """Runs until told to stop (or until its own limit is reached); may block."""


class Saveable(abc.ABC):
    """An object whose state can be checkpointed and restored."""

    @abc.abstractmethod
    def save(self) -> Any:
        """Returns the state to checkpoint (a pytree of arrays and scalars)."""

    @abc.abstractmethod
    def restore(self, state: Any) -> None:
        """Sets the state from what `save` returned."""


class Actor(abc.ABC):
    """Interacts with an environment: picks actions and records what it sees.

    Batched: one actor steps a vector of B environments, so actions, observations
    and rewards carry a leading [B] axis.
    """

    @abc.abstractmethod
    def select_action(self, observation: np.ndarray) -> np.ndarray:
        """Returns actions [B] for observations [B, ...]; never blocks on the network."""

    @abc.abstractmethod
    def observe_first(self, observation: np.ndarray, env_mask: np.ndarray | None = None) -> None:
        """Records the first observation of new episodes (for envs where env_mask is True)."""

    @abc.abstractmethod
    def observe(
        self,
        action: np.ndarray,
        reward: np.ndarray,
        next_observation: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        env_mask: np.ndarray | None = None,
    ) -> None:
        """Records one transition for every env where env_mask is True (may write to replay).

        With a vector env's next-step autoreset, the step after an episode end only
        resets that env: the loop passes env_mask False for it and then calls
        `observe_first` with its new first observation.
        """

    @abc.abstractmethod
    def update(self, wait: bool = False) -> None:
        """Lets the actor refresh its parameters from its variable source.

        With wait=False it must return at once (the fetch happens in the background);
        with wait=True it blocks until the newest parameters are in use.
        """


class Learner(VariableSource, Worker, Saveable):
    """Consumes replay data and updates parameters."""

    @abc.abstractmethod
    def step(self) -> dict[str, float]:
        """Performs one update (one sampled batch) and returns its metrics."""

    def run(self, num_steps: int | None = None) -> None:
        """Steps forever, or `num_steps` times."""
        step = 0
        while num_steps is None or step < num_steps:
            self.step()
            step += 1


class Adder(abc.ABC, Generic[T]):
    """Writes experience to replay. Defines what one replay item is."""

    @abc.abstractmethod
    def add_first(self, timestep: T) -> None:
        """Starts an episode."""

    @abc.abstractmethod
    def add(self, *args: Any, **kwargs: Any) -> None:
        """Adds one step; writes items once enough steps are there."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Drops partial episodes (e.g. after a restart)."""
