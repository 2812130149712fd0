"""The one sgd-step skeleton every agent's update uses: gradients of a loss, averaged over the
device axis, then the optax update (gradient clipping included). Pure JAX; no Reverb, no TF."""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax


class Update(NamedTuple):
    """What one gradient step produced."""

    params: Any
    opt_state: Any
    extra: Any  # the loss's second output (a NamedTuple with a `metrics` dict)
    metrics: dict[str, Any]  # extra.metrics averaged over the device axis, plus gradient_norm


def clipped(optimizer: optax.GradientTransformation, max_gradient_norm: float) -> optax.GradientTransformation:
    """`optimizer` applied to gradients clipped to a global norm of max_gradient_norm."""
    return optax.chain(optax.clip_by_global_norm(max_gradient_norm), optimizer)


def scaled(optimizer: optax.GradientTransformation, factor: jax.Array) -> optax.GradientTransformation:
    """`optimizer` with its updates multiplied by `factor` (a traced float, same state): a learning
    rate of factor x its own for optimizers whose learning rate is their last scale (optax's
    adam, rmsprop, sgd). How a sweep gives each member its own learning rate."""

    def update(updates: Any, opt_state: Any, params: Any = None) -> tuple[Any, Any]:
        updates, opt_state = optimizer.update(updates, opt_state, params)
        return jax.tree.map(lambda u: u * factor.astype(u.dtype), updates), opt_state

    return optax.GradientTransformation(optimizer.init, update)


def gradient_step(
    loss_fn: Callable[..., tuple[jax.Array, Any]],
    optimizer: optax.GradientTransformation,
    params: Any,
    opt_state: Any,
    *loss_args: Any,
    axis_name: str | None = None,
) -> Update:
    """One update of params on loss_fn(params, *loss_args) -> (loss, extra).

    With axis_name set it must run under pmap (or vmap) with that axis: gradients and
    extra.metrics are averaged across it (each device holds an equal share of the batch), so
    every device applies the same update. gradient_norm is that of the averaged gradients,
    before clipping.
    """
    (_, extra), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, *loss_args)
    metrics = extra.metrics
    if axis_name is not None:
        grads = jax.lax.pmean(grads, axis_name)
        metrics = jax.lax.pmean(metrics, axis_name)
    # optax.global_norm's sum written out: optax >= 0.2.5 deprecates it for optax.tree.norm,
    # which the pinned optax 0.2.4 lacks; this line is the same on both stacks (BUILD.md).
    norm = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grads)))
    metrics = {**metrics, "gradient_norm": norm}
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return Update(optax.apply_updates(params, updates), opt_state, extra, metrics)
