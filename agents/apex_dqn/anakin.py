"""Ape-X DQN under Anakin: B envs x K steps of epsilon-greedy acting into the in-graph prioritized
replay (agents/jax_replay.py), then U updates with the Reverb learner's loss and sgd_step, all in
one compiled `train_step` (agents.core.AnakinAgent). Pure JAX: no Reverb, no TensorFlow.

Transitions are the n-step adder's (agents/adders.py): for the transition starting at step t
that spans k = min(n, steps until the episode ends), n_step_return = sum_j gamma^j r_{t+j},
discount = 0 if the episode terminated at t + k, else gamma^k (a truncated episode bootstraps
from its final observation), next_observation = obs_{t+k} (the final observation at an end).
Each env writes one item per step: its k = n transition, or, during the first n - 1 steps of
an episode (when there is none yet), one of the k < n transitions that the previous episode's
end completed (k = n - 1 first). Exact when every episode lasts at least n steps; an episode shorter than that
drops the not yet written short transitions of the episode before it.
Initial priorities are the Reverb actors' (actor.py): |TD error| + epsilon with the acting
network as both online and target network, from one network call on [next obs; final obs].
When the env offers observations by reference (core.FunctionalEnv.observation_ref), items hold
those refs and the update rebuilds the observations of its batch: the replay's memory then
barely grows with the observation window.
Settings that change no shape may differ between the members of one program (a sweep):
`train_step`'s optional `hyperparameters` (core.AnakinAgent.hyperparameters) replace the
built-in constants with traced values.
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from agents import core, jax_replay, sgd
from agents.apex_dqn.acting import apex_epsilon, exploration_draws, explore_or_greedy
from agents.apex_dqn.losses import (Batch, LearnerState, LossFn, double_q_td_error, init_state_from_key,
                                    make_sgd_step, per_item, priority)


class NStepState(NamedTuple):
    """The last n steps of each of the B envs (oldest first) and the k < n transitions of each
    env's last ended episode, written while the next episode has no k = n transition yet."""

    observations: Any  # [B, n, ...] obs at the start of each step (or their refs)
    actions: jax.Array  # int32 [B, n] ([B, n, D] with D action branches: a portfolio's instruments)
    rewards: jax.Array  # float32 [B, n] (scaled)
    q_taken: jax.Array  # float32 [B, n] ([B, n, D]) Q(obs, action) when acting
    episode_steps: jax.Array  # int32 [B] steps of the current episode
    pending: dict[str, jax.Array]  # items [B, n - 1, ...]
    pending_priorities: jax.Array  # float32 [B, n - 1], 0: none


class TrainState(NamedTuple):
    learner: LearnerState
    replay: jax_replay.ReplayState
    env_states: Any  # [B] env states
    observations: jax.Array  # [B, ...] the observation each env acts on next
    n_step: NStepState
    rng: jax.Array  # env and exploration randomness of this device
    env_steps: jax.Array  # int32 [] env steps done by this device's envs


def _shift_in(history: jax.Array, new: jax.Array) -> jax.Array:
    """[B, n, ...] history without its oldest entry, `new` [B, ...] appended."""
    return jnp.concatenate([history[:, 1:], new[:, None]], axis=1)


def _shift_out(x: jax.Array) -> jax.Array:
    """[B, m, ...] without its first entry, zeros appended."""
    return jnp.concatenate([x[:, 1:], jnp.zeros_like(x[:, :1])], axis=1)


def _where_rows(mask: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
    """jnp.where with a [B] mask over [B, ...] arrays."""
    return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - mask.ndim)), a, b)


class MemberSettings(NamedTuple):
    """What `train_step`'s hyperparameters set: the config's constants, or one member's traced values."""

    sgd_step: Callable  # the update, with the member's learning rate and target period
    epsilons: Any  # float32 [B] Ape-X's ladder of exploration rates
    return_weights: Any  # float32 [n, n] gamma^(i - j) for i >= j
    bootstrap_discounts: Any  # float32 [n] gamma^k of slot j
    priority_exponent: Any  # alpha


class AnakinSizes(NamedTuple):
    num_envs: int  # B envs per device
    rollout_steps: int  # K steps of each env per cycle
    updates_per_cycle: int  # U updates per cycle (batch_size items each, per device)
    batch_size: int
    replay_capacity: int  # a multiple of B * K
    min_replay_size: int


def make_anakin(
    apply: Callable[[Any, jax.Array], jax.Array],
    init_params: Callable[[jax.Array], Any],
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    env: core.FunctionalEnv,
    sizes: AnakinSizes,
    *,
    target_update_period: int,
    n_step: int,
    discount: float,
    reward_scale: float,
    priority_exponent: float,
    priority_epsilon: float,
    epsilon_base: float,
    epsilon_exponent: float,
    axis_name: str | None,
    num_branches: int | None = None,
) -> core.AnakinAgent:
    """The AnakinAgent updating with `loss_fn` (the Reverb learner's, built with `axis_name`)
    through the Reverb learner's sgd_step. `num_branches`: one action per instrument of a
    portfolio env (q [B, D, A], actions [B, D]); None: one action."""
    B, n = sizes.num_envs, n_step
    steps_spanned = n - np.arange(n)  # [n] k of slot j
    exponents = np.arange(n)[:, None] - np.arange(n)[None, :]
    by_ref = env.observation_ref is not None
    action_shape = () if num_branches is None else (num_branches,)
    # A portfolio's items keep their [D] actions as int8 (at most 127 positions, checked by the
    # builder): a quarter of the replay's int32 bytes, which at N = 500 were half an item.
    stored_action = jnp.int32 if num_branches is None else jnp.int8
    # The settings a member may take as traced values, and the config's (core.AnakinAgent.hyperparameters).
    defaults = {"learning_rate_scale": 1.0, "discount": discount, "target_update_period": target_update_period,
                "priority_exponent": priority_exponent, "epsilon_base": epsilon_base,
                "epsilon_exponent": epsilon_exponent}
    # return_weights[i, j] = gamma^(i - j) for i >= j: n_step_return[:, j] = rewards @ return_weights[:, j]
    constants = MemberSettings(
        make_sgd_step(loss_fn, optimizer, target_update_period, axis_name),
        jnp.asarray([apex_epsilon(i, B, epsilon_base, epsilon_exponent) for i in range(B)], jnp.float32),
        jnp.asarray(np.where(exponents >= 0, discount ** np.maximum(exponents, 0), 0.0), jnp.float32),
        jnp.asarray(discount ** steps_spanned, jnp.float32), priority_exponent)

    def member_settings(hyperparameters: dict[str, jax.Array] | None) -> MemberSettings:
        """The constants, or those of traced `hyperparameters` (float32 [] each; missing: the config's)."""
        if hyperparameters is None:
            return constants
        h = core.member_hyperparameters("apex_dqn", hyperparameters, defaults)
        gamma = h["discount"]
        ladder = 1.0 + h["epsilon_exponent"] * jnp.arange(B, dtype=jnp.float32) / max(B - 1, 1)
        return MemberSettings(
            make_sgd_step(loss_fn, sgd.scaled(optimizer, h["learning_rate_scale"]),
                          jnp.round(h["target_update_period"]).astype(jnp.int32), axis_name),
            h["epsilon_base"] ** (ladder if B > 1 else 1.0),
            jnp.where(exponents >= 0, gamma ** np.maximum(exponents, 0), 0.0).astype(jnp.float32),
            (gamma ** steps_spanned).astype(jnp.float32), h["priority_exponent"])

    def stored(env_states: Any, observations: jax.Array, env_params: Any) -> Any:
        """What an item keeps of the B observations [B, ...]: them, or their refs."""
        if by_ref:
            return jax.vmap(env.observation_ref, in_axes=(0, None))(env_states, env_params)
        return observations

    def rebuilt(items: dict[str, Any], env_params: Any) -> dict[str, Any]:
        """A batch of items with its observations [batch, ...] (rebuilt from refs if stored so) and
        int32 actions, as the loss reads them."""
        items = {**items, "action": items["action"].astype(jnp.int32)}
        if not by_ref:
            return items
        rebuild = jax.vmap(env.observation_from_ref, in_axes=(0, None))
        return {**items, "observation": rebuild(items["observation"], env_params).astype(jnp.float32),
                "next_observation": rebuild(items["next_observation"], env_params).astype(jnp.float32)}

    def item_example(observation: Any) -> dict[str, Any]:
        """One item, zeros, with `observation` (one stored observation) as both observations."""
        observation = jax.tree.map(jnp.zeros_like, observation)
        return {"observation": observation, "next_observation": observation,
                "action": jnp.zeros(action_shape, stored_action),
                "n_step_return": jnp.zeros([], jnp.float32), "discount": jnp.zeros([], jnp.float32)}

    def device_key(key: jax.Array) -> jax.Array:
        return key if axis_name is None else jax.random.fold_in(key, jax.lax.axis_index(axis_name))

    def init(key: jax.Array, env_params: Any) -> TrainState:
        params_key, rng = jax.random.split(key)
        learner = init_state_from_key(init_params, optimizer, params_key)  # identical on every device
        rng, reset_key = jax.random.split(device_key(rng))
        observations, env_states = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(reset_key, B), env_params)
        observations = observations.astype(jnp.float32)
        example = item_example(jax.tree.map(lambda x: x[0], stored(env_states, observations, env_params)))
        pending = jax.tree.map(lambda x: jnp.zeros((B, n - 1, *x.shape), x.dtype), example)
        n_step_state = NStepState(
            jax.tree.map(lambda x: jnp.zeros((B, n, *x.shape), x.dtype), example["observation"]),
            jnp.zeros((B, n, *action_shape), jnp.int32), jnp.zeros((B, n), jnp.float32),
            jnp.zeros((B, n, *action_shape), jnp.float32), jnp.zeros((B,), jnp.int32),
            pending, jnp.zeros((B, n - 1), jnp.float32))
        replay = jax_replay.init(example, sizes.replay_capacity)
        return TrainState(learner, replay, env_states, observations, n_step_state, rng, jnp.zeros([], jnp.int32))

    def transitions(s: NStepState, final_observation: Any, terminated: jax.Array, q_final: jax.Array,
                    member: MemberSettings):
        """The n transitions [B, n] ending at `final_observation` (as stored), their priorities and validity."""
        n_step_return = s.rewards @ member.return_weights  # [B, n]
        discounts = jnp.where(terminated[:, None], 0.0, member.bootstrap_discounts[None, :])  # [B, n]
        q_next = q_final[:, None]  # [B, 1, (D,) A]: one network serves as online and target
        td_error = double_q_td_error(s.q_taken, n_step_return, discounts, q_next, q_next)  # [B, n, (D)]
        priorities = priority(per_item(jnp.abs(td_error), 2), priority_epsilon)  # as the loss's
        valid = s.episode_steps[:, None] >= steps_spanned[None, :]  # [B, n]
        items = {
            "observation": s.observations,
            "next_observation": jax.tree.map(lambda final, history: jnp.broadcast_to(final[:, None], history.shape),
                                             final_observation, s.observations),
            "action": s.actions.astype(stored_action), "n_step_return": n_step_return, "discount": discounts,
        }
        return items, jnp.where(valid, priorities, 0.0)

    def step_randomness(key: jax.Array, num_actions: int, epsilons: jax.Array):
        """One step's exploration draws and env keys [B] from its key (the draws of
        epsilon_greedy(q, explore_key, action_key, epsilons)); vmapped over a rollout's keys, so
        that the rollout draws them in a few batched calls rather than a few per step."""
        explore_key, action_key, env_key = jax.random.split(key, 3)
        return (*exploration_draws(explore_key, action_key, epsilons, B, num_actions, num_branches),
                jax.random.split(env_key, B))

    def act(carry, randomness, params, env_params, member: MemberSettings):
        """One step of the B envs: acts, steps, and emits one replay item per env."""
        env_states, observations, q, s = carry
        acted_on = stored(env_states, observations, env_params)  # the states show the observations
        explore, random_actions, env_keys = randomness  # [B] each (env_keys [B, 2])
        actions = explore_or_greedy(q, explore, random_actions)  # [B] ([B, D])
        next_obs, env_states, reward, done, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            env_keys, env_states, actions, env_params)
        next_obs = next_obs.astype(jnp.float32)
        final_obs = info["final_observation"].astype(jnp.float32)
        q_both = apply(params, jnp.concatenate([next_obs, final_obs]))  # [2B, A]
        q_next, q_final = q_both[:B], q_both[B:]
        q_taken = jnp.take_along_axis(q, actions[..., None], axis=-1)[..., 0]
        shift = _shift_in
        s = s._replace(observations=jax.tree.map(shift, s.observations, acted_on), actions=shift(s.actions, actions),
                       rewards=shift(s.rewards, reward.astype(jnp.float32) * reward_scale),
                       q_taken=shift(s.q_taken, q_taken), episode_steps=s.episode_steps + 1)
        final_stored = info["final_observation_ref"] if by_ref else final_obs
        items, priorities = transitions(s, final_stored, info["terminated"].astype(bool), q_final, member)
        emitted, emitted_priority = jax.tree.map(lambda x: x[:, 0], items), priorities[:, 0]
        if n > 1:  # during an episode's first n - 1 steps: a k < n transition of the one before
            early = s.episode_steps < n  # [B]
            select, shift_out = _where_rows, _shift_out
            emitted = jax.tree.map(lambda now, old: select(early, old[:, 0], now), emitted, s.pending)
            emitted_priority = select(early, s.pending_priorities[:, 0], emitted_priority)
            # The pending transitions leave one per step (a shift register); an end refills them.
            s = s._replace(
                pending=jax.tree.map(lambda old, new: select(done, new[:, 1:], shift_out(old)), s.pending, items),
                pending_priorities=select(done, priorities[:, 1:], shift_out(s.pending_priorities)))
        s = s._replace(episode_steps=jnp.where(done, 0, s.episode_steps))
        return (env_states, next_obs, q_next, s), (emitted, emitted_priority, reward, done)

    def update(carry, uniforms, env_params, member: MemberSettings):
        """One sgd_step on a batch sampled from the replay at `uniforms` [batch_size] (those of
        jax_replay.sample's key); the new priorities written back."""
        learner, replay = carry
        sample = jax_replay.sample_at(replay, uniforms)
        table_size = jnp.full((sizes.batch_size,), sample.size, jnp.float32)
        learner, extra = member.sgd_step(learner, Batch(rebuilt(sample.items, env_params), sample.probabilities,
                                                        table_size))
        replay = jax_replay.set_priorities(replay, sample.indices, extra.priorities, member.priority_exponent)
        return (learner, replay), extra.metrics

    def train_step(state: TrainState, env_params: Any, hyperparameters: dict[str, jax.Array] | None = None
                   ) -> tuple[TrainState, dict[str, jax.Array]]:
        member = member_settings(hyperparameters)
        params = state.learner.params
        rng, act_key, update_key = jax.random.split(state.rng, 3)
        q = apply(params, state.observations)
        randomness = jax.vmap(step_randomness, in_axes=(0, None, None))(
            jax.random.split(act_key, sizes.rollout_steps), q.shape[-1], member.epsilons)  # [K, B] each
        (env_states, observations, _, n_step_state), (items, priorities, rewards, dones) = jax.lax.scan(
            lambda carry, step: act(carry, step, params, env_params, member),
            (state.env_states, state.observations, q, state.n_step), randomness)
        flat = lambda x: x.reshape(-1, *x.shape[2:])  # noqa: E731  [K, B, ...] -> [K * B, ...]
        replay = jax_replay.add(state.replay, jax.tree.map(flat, items), flat(priorities), member.priority_exponent)
        ready = replay.size >= sizes.min_replay_size
        if axis_name is not None:  # every device takes the same branch (the updates pmean)
            ready = jax.lax.pmin(ready.astype(jnp.int32), axis_name) > 0
        update_uniforms = jax.vmap(jax_replay.sample_uniforms, in_axes=(0, None))(
            jax.random.split(update_key, sizes.updates_per_cycle), sizes.batch_size)  # [U, batch_size]

        # The updates always run and are dropped until the replay is ready: under vmap over seeds
        # (as launch/anakin/driver.py runs it) a lax.cond on the batched `ready` would run both branches
        # anyway, and tracing none saves a second trace of the updates. Only the learner and the
        # priorities are selected: the stored items are not copied.
        (learned, updated), update_metrics = jax.lax.scan(
            lambda carry, uniforms: update(carry, uniforms, env_params, member), (state.learner, replay),
            update_uniforms)
        learner, leaves = jax.tree.map(lambda new, old: jnp.where(ready, new, old),
                                       (learned, updated.leaves), (state.learner, replay.leaves))
        metrics = jax.tree.map(lambda m: jnp.where(ready, jnp.mean(m), 0.0).astype(m.dtype), update_metrics)
        replay = replay._replace(leaves=leaves)
        metrics = {**metrics, "replay_size": replay.size.astype(jnp.float32),
                   "reward_mean": jnp.mean(rewards).astype(jnp.float32),
                   "episodes": jnp.sum(dones).astype(jnp.float32)}
        new_state = TrainState(learner, replay, env_states, observations, n_step_state, rng,
                               state.env_steps + sizes.num_envs * sizes.rollout_steps)
        return new_state, metrics

    return core.AnakinAgent(
        init=init,
        train_step=train_step,
        policy_params=lambda state: state.learner.params,
        learner_steps=lambda state: state.learner.step,
        env_steps=lambda state: state.env_steps,
        hyperparameters={name: float(value) for name, value in defaults.items()},
    )
