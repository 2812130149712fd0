"""IMPALA learner: V-trace actor-critic loss on batches of sequences, pmapped over local devices.

For a sequence x_0..x_{T-1} (rows of agents/sequence_adder.py) and importance weights
rho_s = pi(a_s|x_s) / mu(a_s|x_s) of the learner's policy pi against the actor's mu, V-trace
(Espeholt et al. 2018, eq. 1) targets the values

    v_s = V(x_s) + sum_{t=s}^{T-2} (prod_{i=s}^{t-1} gamma_i c_i) delta_t,
    delta_t = min(rho_bar, rho_t) (r_t + gamma_t V(x_{t+1}) - V(x_t)),   c_i = lambda min(1, rho_i),

with v_{T-1} = V(x_{T-1}). The loss of the T - 1 learned rows is

    -min(rho_bar_pg, rho_s) (r_s + gamma_s v_{s+1} - V(x_s)) log pi(a_s|x_s)     (policy gradient)
    + baseline_cost * 1/2 (v_s - V(x_s))^2                                      (baseline)
    - entropy_cost * H(pi(.|x_s))                                               (entropy bonus)

averaged over rows, where gamma_s = discount * discount_s (0 after a termination). A row that
only holds an episode's final observation (valid False) gets rho = 0: no loss, and the trace
stops there while its V(x) still bootstraps the row before it. V-trace itself is rlax's.
"""

from typing import Any, Callable, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import rlax

from agents.pmap_learner import DEVICE_AXIS, PmapLearner  # noqa: F401  (DEVICE_AXIS: the axis sgd_step averages over)
from agents.replay import ReplayBatch


class LearnerState(NamedTuple):
    params: Any
    opt_state: Any
    step: jax.Array  # int32 [], updates done


class LossExtra(NamedTuple):
    metrics: dict[str, jax.Array]


LossFn = Callable[[Any, dict[str, jax.Array]], tuple[jax.Array, LossExtra]]


def vtrace_targets(
    values: jax.Array,  # [T] V(x_0) .. V(x_{T-1})
    rewards: jax.Array,  # [T - 1] r_0 .. r_{T-2}
    discounts: jax.Array,  # [T - 1] gamma_s
    rhos: jax.Array,  # [T - 1] pi / mu of the learned rows
    clip_rho_threshold: float,
    clip_pg_rho_threshold: float,
    lambda_: float,
) -> Any:  # rlax VTraceOutput(errors, pg_advantage, q_estimate)
    """rlax's V-trace for one sequence: errors v_s - V(x_s), pg advantages and q estimates [T - 1]."""
    return rlax.vtrace_td_error_and_advantage(
        values[:-1], values[1:], rewards, discounts, rhos, lambda_=lambda_,
        clip_rho_threshold=clip_rho_threshold, clip_pg_rho_threshold=clip_pg_rho_threshold,
    )


def make_impala_loss(
    apply: Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]],
    discount: float,
    baseline_cost: float,
    entropy_cost: float,
    clip_rho_threshold: float = 1.0,
    clip_pg_rho_threshold: float = 1.0,
    lambda_: float = 1.0,
) -> LossFn:
    """The V-trace policy-gradient + baseline + entropy loss of a batch of sequences [B, T, ...]."""
    targets = jax.vmap(lambda v, r, d, rho: vtrace_targets(
        v, r, d, rho, clip_rho_threshold, clip_pg_rho_threshold, lambda_))

    def loss(params: Any, data: dict[str, jax.Array]) -> tuple[jax.Array, LossExtra]:
        observation = data["observation"]  # [B, T, ...]
        batch_size, length = observation.shape[:2]
        logits, values = apply(params, observation.reshape(batch_size * length, *observation.shape[2:]))
        logits = logits.reshape(batch_size, length, -1)[:, :-1]  # [B, T - 1, A]
        values = values.reshape(batch_size, length)  # [B, T]
        log_pi = jax.nn.log_softmax(logits)  # [B, T - 1, A]
        actions = data["action"][:, :-1]  # [B, T - 1]
        log_pi_taken = jnp.take_along_axis(log_pi, actions[..., None], axis=-1)[..., 0]  # [B, T - 1]
        valid = data["valid"][:, :-1]  # [B, T - 1]
        rhos = jnp.where(valid, jnp.exp(log_pi_taken - data["behaviour_log_prob"][:, :-1]), 0.0)
        vtrace = targets(values, data["reward"][:, :-1], discount * data["discount"][:, :-1],
                         jax.lax.stop_gradient(rhos))
        mask = valid.astype(jnp.float32)
        policy_gradient_loss = -jnp.mean(mask * jax.lax.stop_gradient(vtrace.pg_advantage) * log_pi_taken)
        baseline_loss = jnp.mean(mask * 0.5 * jnp.square(vtrace.errors))
        entropy = -jnp.sum(jnp.exp(log_pi) * log_pi, axis=-1)  # [B, T - 1]
        entropy_loss = -jnp.mean(mask * entropy)
        value = policy_gradient_loss + baseline_cost * baseline_loss + entropy_cost * entropy_loss
        metrics = {
            "loss": value, "policy_gradient_loss": policy_gradient_loss, "baseline_loss": baseline_loss,
            "entropy": jnp.sum(mask * entropy) / jnp.maximum(jnp.sum(mask), 1.0),
            "rho_mean": jnp.sum(rhos) / jnp.maximum(jnp.sum(mask), 1.0),
            "value_mean": jnp.mean(values),
        }
        return value, LossExtra(metrics=metrics)

    return loss


def make_optimizer(learning_rate: float, decay: float, eps: float, max_gradient_norm: float) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(max_gradient_norm),
        optax.rmsprop(learning_rate, decay=decay, eps=eps),
    )


def make_sgd_step(loss_fn: LossFn, optimizer: optax.GradientTransformation, axis_name: str | None = None):
    """The pure update `sgd_step(state, data) -> (state, metrics)`; with axis_name set it runs
    under pmap with that axis and averages gradients and metrics across devices."""

    def sgd_step(state: LearnerState, data: dict[str, jax.Array]) -> tuple[LearnerState, dict[str, jax.Array]]:
        (_, extra), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, data)
        metrics = extra.metrics
        if axis_name is not None:
            grads = jax.lax.pmean(grads, axis_name)
            metrics = jax.lax.pmean(metrics, axis_name)
        metrics = {**metrics, "gradient_norm": optax.global_norm(grads)}
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return LearnerState(params, opt_state, state.step + 1), metrics

    return sgd_step


def init_state(init_params: Callable[[jax.Array], Any], optimizer: optax.GradientTransformation, seed: int) -> LearnerState:
    params = init_params(jax.random.PRNGKey(seed))
    return LearnerState(params, optimizer.init(params), jnp.zeros([], jnp.int32))


class ImpalaLearner(PmapLearner):
    """Takes batches of sequences from the queue and runs the pmapped update (PmapLearner
    serves, saves and restores the parameters)."""

    def __init__(
        self,
        sgd_step: Callable[[LearnerState, dict[str, jax.Array]], tuple[LearnerState, dict[str, jax.Array]]],
        initial_state: LearnerState,
        iterator: Iterator[ReplayBatch],
        devices: list[jax.Device] | None = None,
    ):
        super().__init__(sgd_step, initial_state, devices)
        self._iterator = iterator

    def step(self) -> dict[str, float]:
        batch = next(self._iterator)
        size = batch.keys.shape[0]
        self._check_divisible(size)
        data = {name: value.reshape(self.num_devices, size // self.num_devices, *value.shape[1:])
                for name, value in batch.data.items()}  # [devices, B / devices, T, ...]
        metrics, version = self._update(data)
        return self._host_metrics(metrics, version)
