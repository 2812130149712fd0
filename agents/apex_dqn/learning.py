"""Ape-X DQN learner: double-DQN n-step loss with prioritized replay, pmapped over local devices."""

import concurrent.futures
from typing import Any, Callable, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import reverb

from agents.adders import TransitionLayout
from agents.pmap_learner import DEVICE_AXIS, PmapLearner  # noqa: F401  (DEVICE_AXIS: the axis sgd_step averages over)
from agents.replay import ReplayBatch


class LearnerState(NamedTuple):
    params: Any
    target_params: Any
    opt_state: Any
    step: jax.Array  # int32 [], updates done
    rng: jax.Array


class Batch(NamedTuple):
    """What the jitted update sees of a ReplayBatch (keys stay on the host)."""

    data: dict[str, jax.Array]
    probabilities: jax.Array  # [B] float32
    table_size: jax.Array  # [B] float32


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

    q_taken, n_step_return, discount: [...]; q_next_*: [..., A]. The target is not stopped
    here; callers that differentiate stop it themselves.
    """
    best_next = jnp.argmax(q_next_online, axis=-1)
    next_value = jnp.take_along_axis(q_next_target, best_next[..., None], axis=-1)[..., 0]
    return n_step_return + discount * next_value - q_taken


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
    """Importance-weighted Huber loss on the n-step double-Q TD error; priorities = |TD error| + epsilon."""

    def loss(params: Any, target_params: Any, batch: Batch) -> tuple[jax.Array, LossExtra]:
        obs, next_obs = layout.observations(batch.data)  # [B, ...] each
        q = apply(params, obs)  # [B, A]
        q_taken = jnp.take_along_axis(q, batch.data["action"][:, None], axis=-1)[:, 0]  # [B]
        q_next_online = apply(params, next_obs)  # [B, A]
        q_next_target = apply(target_params, next_obs)  # [B, A]
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
        per_item = optax.huber_loss(td_error, delta=huber_delta)  # [B]
        value = jnp.mean(weights * per_item)
        metrics = {"loss": value, "td_error_abs": jnp.mean(jnp.abs(td_error)), "q_mean": jnp.mean(q_taken)}
        return value, LossExtra(metrics=metrics, priorities=priority(td_error, priority_epsilon))

    return loss


def make_optimizer(learning_rate: float, adam_eps: float, max_gradient_norm: float) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(max_gradient_norm),
        optax.adam(learning_rate, eps=adam_eps),
    )


def make_sgd_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    target_update_period: int,
    axis_name: str | None = None,
) -> Callable[[LearnerState, Batch], tuple[LearnerState, LossExtra]]:
    """Returns the pure update `sgd_step(state, batch) -> (state, extra)`.

    With axis_name set it must run under pmap/vmap with that axis: gradients and metrics are
    averaged across devices (each device holds an equal share of the batch).
    """

    def sgd_step(state: LearnerState, batch: Batch) -> tuple[LearnerState, LossExtra]:
        rng, _ = jax.random.split(state.rng)
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (_, extra), grads = grad_fn(state.params, state.target_params, batch)
        metrics = extra.metrics
        if axis_name is not None:
            grads = jax.lax.pmean(grads, axis_name)
            metrics = jax.lax.pmean(metrics, axis_name)
        metrics = {**metrics, "gradient_norm": optax.global_norm(grads)}
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        step = state.step + 1
        target_params = optax.periodic_update(params, state.target_params, step, target_update_period)
        new_state = LearnerState(params, target_params, opt_state, step, rng)
        return new_state, LossExtra(metrics=metrics, priorities=extra.priorities)

    return sgd_step


def init_state(init_params: Callable[[jax.Array], Any], optimizer: optax.GradientTransformation, seed: int) -> LearnerState:
    params_rng, rng = jax.random.split(jax.random.PRNGKey(seed))
    params = init_params(params_rng)
    return LearnerState(params, params, optimizer.init(params), jnp.zeros([], jnp.int32), rng)


def to_device_batch(batch: ReplayBatch, num_devices: int) -> Batch:
    """Host batch -> Batch with a leading [num_devices, B / num_devices] split."""

    def split(x: np.ndarray) -> np.ndarray:
        return x.reshape(num_devices, x.shape[0] // num_devices, *x.shape[1:])

    return Batch(
        data={name: split(value) for name, value in batch.data.items()},
        probabilities=split(batch.probabilities.astype(np.float32)),
        table_size=split(batch.table_size.astype(np.float32)),
    )


class ApexDQNLearner(PmapLearner):
    """Samples batches, runs the pmapped update, sends new priorities back, serves params.

    `get_variables` may be called from any thread; it serves the parameters of the last
    finished update without waiting for the one in progress.
    """

    def __init__(
        self,
        sgd_step: Callable[[LearnerState, Batch], tuple[LearnerState, LossExtra]],
        initial_state: LearnerState,
        iterator: Iterator[ReplayBatch],
        replay_client: reverb.Client,
        table: str,
        devices: list[jax.Device] | None = None,
    ):
        super().__init__(sgd_step, initial_state, devices)
        self._iterator = iterator
        self._client = replay_client
        self._table = table
        # New priorities are sent in the background while the next update runs.
        self._priority_writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mutate_priorities")
        self._pending_priorities: concurrent.futures.Future | None = None

    def step(self) -> dict[str, float]:
        batch = next(self._iterator)
        self._check_divisible(batch.keys.shape[0])
        extra, version = self._update(to_device_batch(batch, self.num_devices))
        priorities = np.asarray(extra.priorities, np.float64).reshape(-1)  # [B], waits for the update
        self._send_priorities(batch.keys, priorities)
        return self._host_metrics(extra.metrics, version)

    def _send_priorities(self, keys: np.ndarray, priorities: np.ndarray) -> None:
        if self._pending_priorities is not None:
            self._pending_priorities.result()  # at most one update in flight; raises its error
        updates = dict(zip(keys.tolist(), priorities.tolist()))
        self._pending_priorities = self._priority_writer.submit(
            self._client.mutate_priorities, self._table, updates=updates
        )

    def flush_priorities(self) -> None:
        """Waits until the last priorities reached the table."""
        if self._pending_priorities is not None:
            self._pending_priorities.result()
            self._pending_priorities = None

    def close(self) -> None:
        self.flush_priorities()
        self._priority_writer.shutdown(wait=True)
