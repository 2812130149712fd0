"""IMPALA's behaviour policy: actions sampled from softmax(logits) with their log-probabilities
(pure JAX), shared by the Reverb actor (actor.py) and the fused in-graph loop (anakin.py)."""

from typing import Any, Callable

import jax
import jax.numpy as jnp


def sample_actions(
    apply: Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]],
    params: Any,
    observation: jax.Array,  # [B, ...]
    rng: jax.Array,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Actions [B] drawn from softmax(logits), their log-probabilities [B], and the next rng."""
    rng, action_rng = jax.random.split(rng)
    logits, _ = apply(params, observation)  # [B, A]
    actions, log_prob = sample_from_logits(logits, action_rng)
    return actions, log_prob, rng


def sample_from_logits(logits: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Actions int32 [B] drawn from softmax(logits [B, A]) and their log-probabilities [B]."""
    actions = jax.random.categorical(key, logits).astype(jnp.int32)  # [B]
    log_probs = jax.nn.log_softmax(logits)  # [B, A]
    log_prob = jnp.take_along_axis(log_probs, actions[:, None], axis=-1)[:, 0]  # [B]
    return actions, log_prob
