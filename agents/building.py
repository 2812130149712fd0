"""What every agent's networks and builder write the same way, written once: a network's init
on a dummy observation, its parameter count from shapes alone, and the jitted greedy policy.
What differs between agents (the heads, what the policy is greedy over) stays in theirs."""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from agents.specs import EnvironmentSpec
from agents.torsos import parameter_count as count_parameters


def network_init(module: nn.Module, spec: EnvironmentSpec) -> Callable[[jax.Array], Any]:
    """init(rng) -> params of `module`, traced on one observation of `spec`."""
    dummy_observation = jnp.zeros((1, *spec.observation_shape), spec.observation_dtype)

    def init(rng: jax.Array) -> Any:
        return module.init(rng, dummy_observation)

    return init


def parameter_count(init: Callable[[jax.Array], Any]) -> int:
    """Scalars in the parameters `init` makes (from shapes only: nothing is initialised)."""
    return count_parameters(jax.eval_shape(init, jax.random.PRNGKey(0)))


def greedy_policy(apply: Callable[[Any, jax.Array], Any],
                  scores: Callable[[Any], jax.Array] = lambda output: output) -> Callable[[Any, Any], jax.Array]:
    """policy(params, obs [B, ...]) -> actions [B] (int32), jitted: the argmax of
    `scores(apply(params, obs))` ([B, A]: Q-values, or a policy's logits)."""

    @jax.jit
    def policy(params: Any, observation: jax.Array) -> jax.Array:
        return jnp.argmax(scores(apply(params, observation)), axis=-1).astype(jnp.int32)

    return policy
