"""What both agents' actors share: a batch of B envs, an adder built at the first observation
(when B is known), a variable client for the learner's parameters, the seed of the actor's
randomness and the scale applied to rewards before the adder sees them. An agent's actor adds
how it picks actions (select_action) and what it writes (observe)."""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np

from agents import core
from agents.variable_client import VariableClient


class AdderActor(core.Actor):
    """One actor stepping B envs; owns its adder and variable client (closes both)."""

    def __init__(self, make_adder: Callable[[int], Any], variable_client: VariableClient, seed: int,
                 reward_scale: float = 1.0):
        self._make_adder = make_adder
        self._adder: Any = None  # built at the first observation, when B is known
        self._variable_client = variable_client
        self._reward_scale = float(reward_scale)  # applied to rewards before the adder sees them
        self._rng = jax.random.PRNGKey(seed)

    @property
    def items_written(self) -> int:
        return 0 if self._adder is None else self._adder.items_written

    @property
    def param_version(self) -> int:
        return self._variable_client.version

    def observe_first(self, observation: np.ndarray, env_mask: np.ndarray | None = None) -> None:
        if self._adder is None:
            self._adder = self._make_adder(observation.shape[0])
        self._adder.add_first(observation, env_mask)

    def scaled(self, reward: np.ndarray) -> np.ndarray:
        """The rewards [B] as the adder stores them."""
        return np.asarray(reward) * self._reward_scale

    def update(self, wait: bool = False) -> None:
        self._variable_client.update(wait)

    def close(self) -> None:
        if self._adder is not None:
            self._adder.close()
        self._variable_client.close()
