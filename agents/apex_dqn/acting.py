"""Ape-X DQN's exploration: epsilon-greedy actions and the per-actor epsilon ladder (pure JAX),
shared by the Reverb actor (actor.py) and the fused in-graph loop (anakin.py)."""

import jax
import jax.numpy as jnp


def apex_epsilon(actor_id: int, num_actors: int, base: float = 0.4, exponent: float = 7.0) -> float:
    """Ape-X's ladder: eps_i = base^(1 + exponent * i / (N - 1)); base alone for one actor."""
    if not 0 <= actor_id < num_actors:
        raise ValueError(f"actor_id must be in [0, {num_actors}), got {actor_id}")
    if num_actors == 1:
        return base
    return base ** (1.0 + exponent * actor_id / (num_actors - 1))


def epsilon_greedy(q: jax.Array, explore_key: jax.Array, action_key: jax.Array, epsilon: jax.Array | float) -> jax.Array:
    """Actions int32 [B] from q [B, A]: uniform with probability epsilon (a scalar or [B]), else argmax;
    with action branches, [B, D] from q [B, D, A], each branch of an env exploring on its own."""
    num_branches = q.shape[1] if q.ndim == 3 else None
    return explore_or_greedy(q, *exploration_draws(explore_key, action_key, epsilon, q.shape[0], q.shape[-1],
                                                   num_branches))


def exploration_draws(explore_key: jax.Array, action_key: jax.Array, epsilon: jax.Array | float, batch_size: int,
                      num_actions: int, num_branches: int | None = None) -> tuple[jax.Array, jax.Array]:
    """epsilon_greedy's randomness, drawn apart from q (so a rollout can draw all its steps' at
    once): whether each of the B envs explores (bool [B]) and its random action (int32 [B]);
    with action branches (a portfolio's instruments) each branch draws its own: [B, D]."""
    shape = (batch_size,) if num_branches is None else (batch_size, num_branches)
    random_actions = jax.random.randint(action_key, shape, 0, num_actions)
    if num_branches is not None:
        epsilon = jnp.reshape(jnp.asarray(epsilon), (-1, 1))  # an env's epsilon for its branches
    explore = jax.random.uniform(explore_key, shape) < epsilon
    return explore, random_actions


def explore_or_greedy(q: jax.Array, explore: jax.Array, random_actions: jax.Array) -> jax.Array:
    """Actions int32 [B] (or [B, D]): random_actions where explore, else argmax_a q [B, (D,) A]."""
    return jnp.where(explore, random_actions, jnp.argmax(q, axis=-1)).astype(jnp.int32)
