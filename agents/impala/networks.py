"""Policy logits and a value baseline over apex_dqn's MLP torso, as an init/apply pair."""

from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from agents.specs import EnvironmentSpec


class PolicyValueMLP(nn.Module):
    """(logits [B, A], value [B]) from a flattened observation.

    The layout of apex_dqn's DuelingMLP: an MLP torso of hidden_sizes[:-1], then two heads of
    one hidden layer of hidden_sizes[-1] each (there: value and advantages; here: value and
    policy logits).
    """

    num_actions: int
    hidden_sizes: Sequence[int]

    @nn.compact
    def __call__(self, observation: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        x = observation.reshape(observation.shape[0], -1).astype(jnp.float32)  # [B, prod(obs shape)]
        for size in self.hidden_sizes[:-1]:
            x = nn.relu(nn.Dense(size)(x))
        head_size = self.hidden_sizes[-1]
        value = nn.Dense(1)(nn.relu(nn.Dense(head_size)(x)))[:, 0]  # [B]
        logits = nn.Dense(self.num_actions)(nn.relu(nn.Dense(head_size)(x)))  # [B, A]
        return logits, value


class Networks(NamedTuple):
    """init(rng) -> params; apply(params, obs [B, ...]) -> (logits [B, A], value [B])."""

    init: Callable[[jax.Array], Any]
    apply: Callable[[Any, jnp.ndarray], tuple[jnp.ndarray, jnp.ndarray]]


def make_networks(spec: EnvironmentSpec, hidden_sizes: Sequence[int]) -> Networks:
    if not hidden_sizes:
        raise ValueError("hidden_sizes must name at least one layer size, got ()")
    module = PolicyValueMLP(num_actions=spec.num_actions, hidden_sizes=tuple(hidden_sizes))
    dummy_observation = jnp.zeros((1, *spec.observation_shape), spec.observation_dtype)

    def init(rng: jax.Array) -> Any:
        return module.init(rng, dummy_observation)

    return Networks(init=init, apply=module.apply)
