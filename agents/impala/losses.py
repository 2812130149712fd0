"""IMPALA's maths: V-trace, the actor-critic loss of a batch of sequences, and the update.

Pure JAX (no Reverb, no TensorFlow): the Reverb learner (learning.py) and the fused in-graph
loop (anakin.py) call these same functions. For a sequence x_0..x_{T-1} (rows of
agents/sequence_adder.py) and importance weights rho_s = pi(a_s|x_s) / mu(a_s|x_s) of the
learner's policy pi against the actor's mu, V-trace (Espeholt et al. 2018, eq. 1) targets

    v_s = V(x_s) + sum_{t=s}^{T-2} (prod_{i=s}^{t-1} gamma_i c_i) delta_t,
    delta_t = min(rho_bar, rho_t) (r_t + gamma_t V(x_{t+1}) - V(x_t)),   c_i = lambda min(1, rho_i),

with v_{T-1} = V(x_{T-1}). The loss of the T - 1 learned rows is

    -min(rho_bar_pg, rho_s) (r_s + gamma_s v_{s+1} - V(x_s)) log pi(a_s|x_s)     (policy gradient)
    + baseline_cost * 1/2 (v_s - V(x_s))^2                                      (baseline)
    - entropy_cost * H(pi(.|x_s))                                               (entropy bonus)

averaged over rows, where gamma_s = discount * discount_s (0 after a termination). On a
portfolio (logits [.., D, A], one action per instrument) pi is a product of per-instrument
categoricals: log pi(a_s|x_s) and H sum over the instruments. A row that
only holds an episode's final observation (valid False) gets rho = 0: no loss, and the trace
stops there while its V(x) still bootstraps the row before it.

V-trace is written here as rlax 0.1.6 writes it (`rlax.vtrace_td_error_and_advantage`, tested
equal in tests/test_agents/test_vtrace.py): importing rlax loads TensorFlow (through distrax and
TensorFlow Probability), which this module must not.
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from agents import sgd
from agents.impala.acting import entropy_of, log_prob_of


class LearnerState(NamedTuple):
    params: Any
    opt_state: Any
    step: jax.Array  # int32 [], updates done


class LossExtra(NamedTuple):
    metrics: dict[str, jax.Array]


LossFn = Callable[[Any, dict[str, jax.Array]], tuple[jax.Array, LossExtra]]


class VTraceOutput(NamedTuple):
    """rlax's VTraceOutput: per learned row [T - 1]."""

    errors: jax.Array  # v_s - V(x_s), the target stopped (gradients reach V(x_s) only)
    pg_advantage: jax.Array  # min(rho_bar_pg, rho_s) (q_s - V(x_s))
    q_estimate: jax.Array  # q_s = r_s + gamma_s (lambda v_{s+1} + (1 - lambda) V(x_{s+1}))


def vtrace_targets(
    values: jax.Array,  # [T] V(x_0) .. V(x_{T-1})
    rewards: jax.Array,  # [T - 1] r_0 .. r_{T-2}
    discounts: jax.Array,  # [T - 1] gamma_s
    rhos: jax.Array,  # [T - 1] pi / mu of the learned rows
    clip_rho_threshold: float,
    clip_pg_rho_threshold: float,
    lambda_: float,
) -> VTraceOutput:
    """V-trace of one sequence: errors v_s - V(x_s), pg advantages and q estimates [T - 1]."""
    values, rewards = jnp.asarray(values), jnp.asarray(rewards)
    discounts, rhos = jnp.asarray(discounts), jnp.asarray(rhos)
    v_tm1, v_t = values[:-1], values[1:]
    lambdas = jnp.ones_like(discounts) * lambda_
    c = jnp.minimum(1.0, rhos) * lambdas  # trace cutting, c-bar = 1
    td_errors = jnp.minimum(clip_rho_threshold, rhos) * (rewards + discounts * v_t - v_tm1)  # delta_t

    def backwards(acc, xs):
        td_error, discount, c_t = xs
        acc = td_error + discount * c_t * acc
        return acc, acc

    _, errors = jax.lax.scan(backwards, jnp.zeros((), td_errors.dtype), (td_errors, discounts, c), reverse=True)
    errors = jax.lax.stop_gradient(errors + v_tm1) - v_tm1  # the target v_s is stopped
    targets = errors + v_tm1  # v_s
    q_bootstrap = jnp.concatenate([lambdas[:-1] * targets[1:] + (1 - lambdas[:-1]) * v_tm1[1:], v_t[-1:]])
    q_estimate = rewards + discounts * q_bootstrap
    pg_advantage = jnp.minimum(clip_pg_rho_threshold, rhos) * (q_estimate - v_tm1)
    return VTraceOutput(errors=errors, pg_advantage=pg_advantage, q_estimate=q_estimate)


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
        logits = logits.reshape(batch_size, length, *logits.shape[1:])[:, :-1]  # [B, T - 1, (D,) A]
        values = values.reshape(batch_size, length)  # [B, T]
        actions = data["action"][:, :-1]  # [B, T - 1, (D)]
        log_pi_taken = log_prob_of(logits, actions, batch_dims=2)  # [B, T - 1]
        valid = data["valid"][:, :-1]  # [B, T - 1]
        rhos = jnp.where(valid, jnp.exp(log_pi_taken - data["behaviour_log_prob"][:, :-1]), 0.0)
        vtrace = targets(values, data["reward"][:, :-1], discount * data["discount"][:, :-1],
                         jax.lax.stop_gradient(rhos))
        mask = valid.astype(jnp.float32)
        policy_gradient_loss = -jnp.mean(mask * jax.lax.stop_gradient(vtrace.pg_advantage) * log_pi_taken)
        baseline_loss = jnp.mean(mask * 0.5 * jnp.square(vtrace.errors))
        entropy = entropy_of(logits, batch_dims=2)  # [B, T - 1]
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
    return sgd.clipped(optax.rmsprop(learning_rate, decay=decay, eps=eps), max_gradient_norm)


def make_sgd_step(loss_fn: LossFn, optimizer: optax.GradientTransformation, axis_name: str | None = None):
    """The pure update `sgd_step(state, data) -> (state, metrics)`; with axis_name set it runs
    under pmap with that axis and averages gradients and metrics across devices."""

    def sgd_step(state: LearnerState, data: dict[str, jax.Array]) -> tuple[LearnerState, dict[str, jax.Array]]:
        update = sgd.gradient_step(loss_fn, optimizer, state.params, state.opt_state, data, axis_name=axis_name)
        return LearnerState(update.params, update.opt_state, state.step + 1), update.metrics

    return sgd_step


def init_state(init_params: Callable[[jax.Array], Any], optimizer: optax.GradientTransformation, seed: int) -> LearnerState:
    return init_state_from_key(init_params, optimizer, jax.random.PRNGKey(seed))


def init_state_from_key(init_params: Callable[[jax.Array], Any], optimizer: optax.GradientTransformation,
                        key: jax.Array) -> LearnerState:
    """init_state from a key (traceable: used under vmap over seeds)."""
    params = init_params(key)
    return LearnerState(params, optimizer.init(params), jnp.zeros([], jnp.int32))
