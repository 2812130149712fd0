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
    """Actions int32 [B] drawn from softmax(logits [B, A]) and their log-probabilities [B]. With
    action branches (logits [B, D, A], a portfolio's instruments) each branch draws its own
    action: actions [B, D], and the log-probability of the joint action is the sum over the
    branches' (a product of categoricals)."""
    actions = jax.random.categorical(key, logits).astype(jnp.int32)  # [B, (D)]
    return actions, log_prob_of(logits, actions, batch_dims=1)


def log_prob_of(logits: jax.Array, actions: jax.Array, batch_dims: int) -> jax.Array:
    """log pi(actions) of softmax(logits [*batch, (D,) A]) at actions [*batch, (D)], of shape
    [*batch] (the first `batch_dims` axes): an action branch's log-probabilities are summed, the
    joint action's under a product of categoricals."""
    log_probs = jax.nn.log_softmax(logits)
    taken = jnp.take_along_axis(log_probs, actions[..., None], axis=-1)[..., 0]  # [*batch, (D)]
    return taken.sum(axis=tuple(range(batch_dims, taken.ndim)))


def entropy_of(logits: jax.Array, batch_dims: int) -> jax.Array:
    """The entropy [*batch] of softmax(logits [*batch, (D,) A]), summed over action branches
    (the branches are independent)."""
    log_probs = jax.nn.log_softmax(logits)
    entropy = -jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1)  # [*batch, (D)]
    return entropy.sum(axis=tuple(range(batch_dims, entropy.ndim)))
