"""IMPALA actor: samples actions from the policy over B envs and writes sequences with their log-probs.

One jitted call per step gives the actions and log mu(a|x) of the behaviour policy (the
parameters the actor holds); the sequence adder stores both, so the learner can correct for
the policy lag with V-trace. The call for the next observation is dispatched before the
adder writes the step, so the network and the writers work at the same time.
"""

from typing import Any, Callable

import jax
import numpy as np

from agents.adder_actor import AdderActor
from agents.impala.acting import sample_actions
from agents.sequence_adder import SequenceAdder
from agents.variable_client import VariableClient


class ImpalaActor(AdderActor):
    """One actor stepping B envs by sampling its policy, writing sequences with their log-probs."""

    def __init__(
        self,
        apply: Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]],
        make_adder: Callable[[int], SequenceAdder],
        variable_client: VariableClient,
        seed: int,
        reward_scale: float = 1.0,
    ):
        super().__init__(make_adder, variable_client, seed, reward_scale)
        self._sample = jax.jit(lambda params, observation, rng: sample_actions(apply, params, observation, rng))
        self._observation: np.ndarray | None = None  # the observation the cached actions are for
        self._actions: np.ndarray | None = None  # [B]
        self._log_prob: np.ndarray | None = None  # [B] log mu(action | observation)
        self._dispatched: tuple[np.ndarray, Any] | None = None  # (observation, its pending call)

    def select_action(self, observation: np.ndarray) -> np.ndarray:
        if observation is not self._observation:
            if self._dispatched is None or observation is not self._dispatched[0]:
                self._dispatch(observation)  # e.g. the first observation of a run
            actions, log_prob, self._rng = self._dispatched[1]
            self._dispatched = None
            self._observation = observation
            self._actions, self._log_prob = np.asarray(actions), np.asarray(log_prob)
        return self._actions

    def _dispatch(self, observation: np.ndarray) -> None:
        """Starts the policy call for `observation` (jax runs it asynchronously)."""
        self._dispatched = (observation, self._sample(self._variable_client.params, observation, self._rng))

    def observe(
        self,
        action: np.ndarray,
        reward: np.ndarray,
        next_observation: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        env_mask: np.ndarray | None = None,
    ) -> None:
        if action is not self._actions and not np.array_equal(action, self._actions):
            raise ValueError("ImpalaActor.observe: the actions must be the ones select_action returned "
                             "(their behaviour log-probabilities are stored with them)")
        self._dispatch(next_observation)  # runs while the adder writes this step
        self._adder.add(action, self.scaled(reward), next_observation, terminated, truncated, env_mask,
                        behaviour_log_prob=self._log_prob)
