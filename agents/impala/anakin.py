"""IMPALA under Anakin: B envs x (T - 1) steps of the behaviour policy, straight into the V-trace
update (no replay), in one compiled `train_step` (agents.core.AnakinAgent). Pure JAX.

A cycle's rollout is a batch of sequences of T = sequence_length rows, the rows of
agents/sequence_adder.py, read by the Reverb learner's loss (losses.make_impala_loss): rows
0..T-2 are the steps taken, row T-1 only holds the observation the next cycle starts from (its
bootstrap value; the loss reads nothing else of it). Envs auto-reset, so an episode end has no
row of its own: a terminated step gets discount 0; a truncated one gets discount 0 and the
bootstrap folded into its reward, r + gamma V(final observation) (V from the acting
parameters), which gives that row the Reverb path's target and advantage and cuts the trace.
The B sequences are split into B / batch_size updates in turn; later ones are slightly off
the policy that acted, which V-trace corrects for.
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from agents import core, sgd
from agents.impala.acting import sample_from_logits
from agents.impala.losses import LearnerState, LossFn, init_state_from_key, make_sgd_step


class TrainState(NamedTuple):
    learner: LearnerState
    env_states: Any  # [B] env states
    observations: jax.Array  # [B, ...] the observation each env acts on next
    rng: jax.Array  # env and action randomness of this device
    env_steps: jax.Array  # int32 [] env steps done by this device's envs


def rollout(apply: Callable, env: core.FunctionalEnv, env_params: Any, params: Any, env_states: Any,
            observations: jax.Array, key: jax.Array, sequence_length: int, discount: float,
            reward_scale: float) -> tuple[Any, jax.Array, dict[str, jax.Array], jax.Array, jax.Array]:
    """Steps the B envs sequence_length - 1 times; returns (env_states, observations, data,
    rewards, dones): data the sequences [B, T, ...] of agents.layouts.SequenceLayout, rewards
    (unscaled) and dones [T - 1, B] what the envs gave."""
    num_envs = observations.shape[0]
    logits, _ = apply(params, observations)

    def step(carry, key):
        env_states, observations, logits = carry
        action_key, env_key = jax.random.split(key)
        actions, log_prob = sample_from_logits(logits, action_key)
        next_obs, env_states, reward, done, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(env_key, num_envs), env_states, actions, env_params)
        next_obs = next_obs.astype(jnp.float32)
        final_obs = info["final_observation"].astype(jnp.float32)
        both_logits, both_values = apply(params, jnp.concatenate([next_obs, final_obs]))  # [2B, ...]
        bootstrap = jnp.where(info["truncated"], discount * jax.lax.stop_gradient(both_values[num_envs:]), 0.0)
        row = {
            "observation": observations, "action": actions,
            "reward": reward.astype(jnp.float32) * reward_scale + bootstrap,
            "discount": jnp.where(done, 0.0, 1.0).astype(jnp.float32),
            "behaviour_log_prob": log_prob, "valid": jnp.ones((num_envs,), bool),
        }
        return (env_states, next_obs, both_logits[:num_envs]), (row, reward, done)

    (env_states, observations, _), (rows, rewards, dones) = jax.lax.scan(
        step, (env_states, observations, logits), jax.random.split(key, sequence_length - 1))
    action_shape = logits.shape[1:-1]  # (D,) with action branches (a portfolio), else ()
    last = {"observation": observations[None], "action": jnp.zeros((1, num_envs, *action_shape), jnp.int32),
            "reward": jnp.zeros((1, num_envs), jnp.float32), "discount": jnp.zeros((1, num_envs), jnp.float32),
            "behaviour_log_prob": jnp.zeros((1, num_envs), jnp.float32), "valid": jnp.zeros((1, num_envs), bool)}
    data = jax.tree.map(lambda x, y: jnp.swapaxes(jnp.concatenate([x, y]), 0, 1), rows, last)  # [B, T, ...]
    return env_states, observations, data, rewards, dones


def make_anakin(
    apply: Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]],
    init_params: Callable[[jax.Array], Any],
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    env: core.FunctionalEnv,
    *,
    num_envs: int,
    sequence_length: int,
    batch_size: int,
    discount: float,
    reward_scale: float,
    axis_name: str | None,
) -> core.AnakinAgent:
    """The AnakinAgent updating with `loss_fn` (the Reverb learner's, built with `axis_name`)
    through the Reverb learner's sgd_step, num_envs // batch_size times per cycle."""
    if num_envs % batch_size:
        raise ValueError(f"impala config: anakin_num_envs={num_envs} must be a multiple of "
                         f"batch_size={batch_size} (each cycle makes anakin_num_envs / batch_size updates)")
    sgd_step = make_sgd_step(loss_fn, optimizer, axis_name)
    num_updates = num_envs // batch_size
    defaults = {"learning_rate_scale": 1.0}  # per member (core.AnakinAgent.hyperparameters)

    def member_sgd_step(hyperparameters: dict[str, jax.Array] | None) -> Callable:
        """The update, with the optimizer's step scaled by a member's traced learning_rate_scale."""
        if hyperparameters is None:
            return sgd_step
        factor = core.member_hyperparameters("impala", hyperparameters, defaults)["learning_rate_scale"]
        return make_sgd_step(loss_fn, sgd.scaled(optimizer, factor), axis_name)

    def init(key: jax.Array, env_params: Any) -> TrainState:
        params_key, rng = jax.random.split(key)
        learner = init_state_from_key(init_params, optimizer, params_key)  # identical on every device
        if axis_name is not None:
            rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))
        rng, reset_key = jax.random.split(rng)
        reset_keys = jax.random.split(reset_key, num_envs)
        observations, env_states = jax.vmap(env.reset, in_axes=(0, None))(reset_keys, env_params)
        return TrainState(learner, env_states, observations.astype(jnp.float32), rng, jnp.zeros([], jnp.int32))

    def train_step(state: TrainState, env_params: Any, hyperparameters: dict[str, jax.Array] | None = None
                   ) -> tuple[TrainState, dict[str, jax.Array]]:
        rng, key = jax.random.split(state.rng)
        env_states, observations, data, rewards, dones = rollout(
            apply, env, env_params, state.learner.params, state.env_states, state.observations, key,
            sequence_length, discount, reward_scale)
        batches = jax.tree.map(lambda x: x.reshape(num_updates, batch_size, *x.shape[1:]), data)
        learner, metrics = jax.lax.scan(member_sgd_step(hyperparameters), state.learner, batches)
        metrics = {**jax.tree.map(jnp.mean, metrics), "reward_mean": jnp.mean(rewards).astype(jnp.float32),
                   "episodes": jnp.sum(dones).astype(jnp.float32)}
        new_state = TrainState(learner, env_states, observations, rng,
                               state.env_steps + num_envs * (sequence_length - 1))
        return new_state, metrics

    return core.AnakinAgent(
        init=init,
        train_step=train_step,
        policy_params=lambda state: state.learner.params,
        learner_steps=lambda state: state.learner.step,
        env_steps=lambda state: state.env_steps,
        hyperparameters=defaults,
    )
