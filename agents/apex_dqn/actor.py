"""Ape-X DQN actor: epsilon-greedy over B envs, one jitted call per step that also prices priorities.

Ape-X actors compute each transition's initial priority from Q-values they already have
(Horgan et al. 2018, sec. 3): when the observation obs_{t+1} arrives, one call of the network
on it gives the next actions and, with Q(obs_t, a_t) kept from earlier, the n-step TD errors
of the transitions that end at obs_{t+1}. Those are written to replay with that priority.
The network call is dispatched before the adder writes the step, so the two overlap.
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from agents.adder_actor import AdderActor
from agents.adders import NStepAdder
from agents.apex_dqn.acting import epsilon_greedy
from agents.apex_dqn.losses import double_q_td_error, per_item, priority
from agents.variable_client import VariableClient


def _act_and_prioritize(
    q: jax.Array,  # [B, A] Q(obs_{t+1}, .) of the new observations; [B, D, A] with D action branches
    rng: jax.Array,
    epsilon: float,
    q_taken: jax.Array,  # [B, n] (or [B, n, D]) Q(obs_t, a_t) of the transitions that just completed
    n_step_return: jax.Array,  # [B, n]
    discount: jax.Array,  # [B, n]
    priority_epsilon: float,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Epsilon-greedy actions [B] (or [B, D]: each branch explores on its own) and initial
    priorities [B, n] from one network output, as the learner prices items (a branched item's
    priority is its branches' mean |TD error|)."""
    rng, explore_rng, action_rng = jax.random.split(rng, 3)
    actions = epsilon_greedy(q, explore_rng, action_rng, epsilon)
    # The actor has one set of parameters: it serves as both online and target network.
    q_next = q[:, None]  # [B, 1, (D,) A], the next observation of every slot
    td_error = double_q_td_error(q_taken, n_step_return, discount, q_next, q_next)  # [B, n(, D)]
    priorities = priority(per_item(jnp.abs(td_error), 2), priority_epsilon)
    return actions, priorities, rng


class ApexDQNActor(AdderActor):
    """One actor stepping B envs epsilon-greedily, writing n-step transitions with their priorities."""

    def __init__(
        self,
        apply: Callable[[Any, jax.Array], jax.Array],
        make_adder: Callable[[int], NStepAdder],
        variable_client: VariableClient,
        epsilon: float,
        n_step: int,
        seed: int,
        reward_scale: float = 1.0,
        *,
        priority_epsilon: float,
    ):
        super().__init__(make_adder, variable_client, seed, reward_scale)
        self._q_values = jax.jit(apply)  # the one network call per step
        self._act_and_prioritize = jax.jit(_act_and_prioritize)
        self._epsilon = float(epsilon)
        self._n_step = n_step
        self._priority_epsilon = float(priority_epsilon)  # added to |td| as the learner does
        self._observation: np.ndarray | None = None  # the observation the cached actions are for
        self._actions: np.ndarray | None = None  # [B] (or [B, D])
        self._q: np.ndarray | None = None  # [B, A] (or [B, D, A])

    @property
    def epsilon(self) -> float:
        return self._epsilon

    def select_action(self, observation: np.ndarray) -> np.ndarray:
        if observation is not self._observation:  # e.g. the first observation of a run
            q = self._q_values(self._variable_client.params, observation)
            zeros = np.zeros((observation.shape[0], self._n_step), np.float32)
            no_q_taken = np.zeros(zeros.shape + q.shape[1:-1], np.float32)  # [B, n(, D)]
            self._act(observation, q, no_q_taken, zeros, zeros)
        return self._actions

    def observe(
        self,
        action: np.ndarray,
        reward: np.ndarray,
        next_observation: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        env_mask: np.ndarray | None = None,
    ) -> None:
        q_taken = np.take_along_axis(self._q, action[..., None], axis=-1)[..., 0]  # [B(, D)] Q(obs_t, a_t)
        # Dispatched asynchronously: the network runs while the adder writes the step.
        q = self._q_values(self._variable_client.params, next_observation)
        transitions = self._adder.add(
            action, self.scaled(reward), next_observation, terminated, truncated, env_mask, extras=q_taken
        )
        priorities = self._act(
            next_observation, q, transitions.first_extras, transitions.n_step_return, transitions.discount
        )
        self._adder.write(priorities)

    def _act(self, observation, q, q_taken, n_step_return, discount) -> np.ndarray:
        actions, priorities, self._rng = self._act_and_prioritize(
            q, self._rng, self._epsilon, q_taken, n_step_return, discount, self._priority_epsilon
        )
        self._observation = observation
        self._actions, self._q = np.asarray(actions), np.asarray(q)
        return np.asarray(priorities)
