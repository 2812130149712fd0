"""Ape-X DQN's maths: the n-step double-Q loss, priorities, importance weights and the update.

Pure JAX (no Reverb, no TensorFlow): the Reverb learner (learning.py) and the fused in-graph
loop (anakin.py) call these same functions.
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from agents import sgd
from agents.layouts import TransitionLayout


class LearnerState(NamedTuple):
    params: Any
    target_params: Any
    opt_state: Any
    step: jax.Array  # int32 [], updates done
    rng: jax.Array


class Batch(NamedTuple):
    """What the jitted update sees of a sampled batch (a ReplayBatch's keys stay on the host)."""

    data: dict[str, jax.Array]  # TransitionLayout.item_signature, batched [B, ...]
    probabilities: jax.Array  # [B] float32, P(i) at sampling time
    table_size: jax.Array  # [B] float32, N at sampling time


class LossExtra(NamedTuple):
    metrics: dict[str, jax.Array]
    priorities: jax.Array  # [B] new priorities of the batch items


LossFn = Callable[[Any, Any, Batch], tuple[jax.Array, LossExtra]]


def double_q_td_error(
    q_taken: jax.Array,
    n_step_return: jax.Array,
    discount: jax.Array,
    q_next_online: jax.Array,
    q_next_target: jax.Array,
) -> jax.Array:
    """n_step_return + discount * Q_target(s', argmax_a Q_online(s', a)) - Q(s, a).

    n_step_return, discount: [...]; q_taken: [...] or, with action branches (one action per
    instrument of a portfolio), [..., D]; q_next_*: [..., A] or [..., D, A]. Branches share one
    target, the mean of their next values (Tavakoli et al. 2018), and each has its own TD error
    [..., D]. The target is not stopped here; callers that differentiate stop it themselves.
    """
    best_next = jnp.argmax(q_next_online, axis=-1)
    next_value = jnp.take_along_axis(q_next_target, best_next[..., None], axis=-1)[..., 0]
    branch_axes = tuple(range(n_step_return.ndim, next_value.ndim))  # () without branches
    target = n_step_return + discount * next_value.mean(axis=branch_axes)
    return target.reshape(target.shape + (1,) * len(branch_axes)) - q_taken


def per_item(values: jax.Array, batch_ndim: int) -> jax.Array:
    """`values` [B, ...] averaged over its branch axes (those past the first `batch_ndim`)."""
    return values.mean(axis=tuple(range(batch_ndim, values.ndim)))


def priority(td_error: jax.Array, epsilon: float) -> jax.Array:
    """p_i = |td_i| + epsilon (Schaul et al. 2016, sec. 3.3): a TD error of 0 still leaves p_i > 0.

    Shared by the learner's write-back and the actors' initial priorities, so both agree.
    """
    return jnp.abs(td_error) + epsilon


def importance_weights(
    probabilities: jax.Array, table_size: jax.Array, beta: float, axis_name: str | None = None
) -> jax.Array:
    """w_i = (N * P(i))^-beta / max_j w_j (Schaul et al. 2016); the max spans all devices."""
    weights = (table_size * probabilities) ** -beta
    max_weight = jnp.max(weights)
    if axis_name is not None:
        max_weight = jax.lax.pmax(max_weight, axis_name)
    return weights / max_weight


def make_double_q_loss(
    apply: Callable[[Any, jax.Array], jax.Array],
    layout: TransitionLayout,
    importance_sampling_exponent: float,
    huber_delta: float = 1.0,
    axis_name: str | None = None,
    *,
    priority_epsilon: float,
) -> LossFn:
    """Importance-weighted Huber loss on the n-step double-Q TD error; priorities = |TD error| +
    epsilon. With action branches, an item's loss and |TD error| are its branches' means."""

    def loss(params: Any, target_params: Any, batch: Batch) -> tuple[jax.Array, LossExtra]:
        obs, next_obs = layout.observations(batch.data)  # [B, ...] each
        q = apply(params, obs)  # [B, A], or [B, D, A] with action branches
        action = batch.data["action"]  # [B], or [B, D]
        q_taken = jnp.take_along_axis(q, action[..., None], axis=-1)[..., 0]  # [B] or [B, D]
        q_next_online = apply(params, next_obs)
        q_next_target = apply(target_params, next_obs)
        td_error = double_q_td_error(
            q_taken,
            batch.data["n_step_return"],
            batch.data["discount"],
            jax.lax.stop_gradient(q_next_online),
            jax.lax.stop_gradient(q_next_target),
        )
        weights = importance_weights(
            batch.probabilities, batch.table_size, importance_sampling_exponent, axis_name
        )
        losses = per_item(optax.huber_loss(td_error, delta=huber_delta), 1)  # [B]
        value = jnp.mean(weights * losses)
        metrics = {"loss": value, "td_error_abs": jnp.mean(jnp.abs(td_error)), "q_mean": jnp.mean(q_taken)}
        priorities = priority(per_item(jnp.abs(td_error), 1), priority_epsilon)  # [B]
        return value, LossExtra(metrics=metrics, priorities=priorities)

    return loss


def make_optimizer(learning_rate: float, adam_eps: float, max_gradient_norm: float) -> optax.GradientTransformation:
    return sgd.clipped(optax.adam(learning_rate, eps=adam_eps), max_gradient_norm)


def make_sgd_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    target_update_period: int,
    axis_name: str | None = None,
) -> Callable[[LearnerState, Batch], tuple[LearnerState, LossExtra]]:
    """Returns the pure update `sgd_step(state, batch) -> (state, extra)`.

    With axis_name set it must run under pmap/vmap with that axis: gradients and metrics are
    averaged across devices (each device holds an equal share of the batch). The target
    network is copied from the online one every target_update_period updates.
    """

    def sgd_step(state: LearnerState, batch: Batch) -> tuple[LearnerState, LossExtra]:
        rng, _ = jax.random.split(state.rng)
        update = sgd.gradient_step(
            loss_fn, optimizer, state.params, state.opt_state, state.target_params, batch, axis_name=axis_name
        )
        step = state.step + 1
        target_params = optax.periodic_update(update.params, state.target_params, step, target_update_period)
        new_state = LearnerState(update.params, target_params, update.opt_state, step, rng)
        return new_state, LossExtra(metrics=update.metrics, priorities=update.extra.priorities)

    return sgd_step


def init_state(init_params: Callable[[jax.Array], Any], optimizer: optax.GradientTransformation, seed: int) -> LearnerState:
    return init_state_from_key(init_params, optimizer, jax.random.PRNGKey(seed))


def init_state_from_key(init_params: Callable[[jax.Array], Any], optimizer: optax.GradientTransformation,
                        key: jax.Array) -> LearnerState:
    """init_state from a key (traceable: used under vmap over seeds)."""
    params_rng, rng = jax.random.split(key)
    params = init_params(params_rng)
    return LearnerState(params, params, optimizer.init(params), jnp.zeros([], jnp.int32), rng)
