"""Builds every Ape-X DQN component from a config and an environment spec: launch/ uses only this.

A new agent is a new package with these same functions and one line in agents/registry.py.
Reverb and TensorFlow are imported by the functions that use them (tables, adders, learner,
actor), so the builder imports without them: --lp_launch_type=anakin never loads them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import gymnasium as gym
import jax
import numpy as np

from agents import building, core, specs, torsos
from agents.apex_dqn import anakin, losses, networks
from agents.apex_dqn.acting import apex_epsilon
from agents.apex_dqn.config import ApexDQNConfig, make_config  # noqa: F401  (builder API)
from agents.layouts import TransitionLayout
from agents.pmap_learner import DEVICE_AXIS
from agents.variable_client import VariableClient

if TYPE_CHECKING:
    import reverb

    from agents.apex_dqn.actor import ApexDQNActor
    from agents.apex_dqn.learning import ApexDQNLearner

Config = ApexDQNConfig
REPLAY_CHECKPOINTED = True  # a prioritized replay: worth keeping across --restore


def make_environment_spec(env: gym.Env | gym.vector.VectorEnv) -> specs.EnvironmentSpec:
    return specs.make_environment_spec(env)


def make_transition_layout(config: ApexDQNConfig, spec: specs.EnvironmentSpec) -> TransitionLayout:
    return TransitionLayout.from_spec(spec, config.n_step)


def make_networks(config: ApexDQNConfig, spec: specs.EnvironmentSpec) -> networks.Networks:
    frames = spec.observation_shape[1:] if spec.num_branches is not None else spec.observation_shape
    return networks.make_networks(spec, config.hidden_sizes, torsos.make_torso(config.torso_config(), frames),
                                  config.cross_asset_points)


def parameter_count(config: ApexDQNConfig, spec: specs.EnvironmentSpec) -> int:
    """Scalars in this config's network parameters (from shapes only: nothing is initialised)."""
    return building.parameter_count(make_networks(config, spec).init)


def make_replay_tables(config: ApexDQNConfig, spec: specs.EnvironmentSpec) -> list[reverb.Table]:
    from agents import replay

    return [
        replay.make_prioritized_table(
            name=config.replay_table_name,
            layout=make_transition_layout(config, spec),
            max_size=config.max_replay_size,
            priority_exponent=config.priority_exponent,
            min_size_to_sample=config.min_replay_size,
            samples_per_insert=config.samples_per_insert,
        )
    ]


def make_loss(config: ApexDQNConfig, spec: specs.EnvironmentSpec, layout: TransitionLayout,
              axis_name: str | None) -> losses.LossFn:
    """The double-Q loss of this config: the one the Reverb learner and Anakin both update with."""
    return losses.make_double_q_loss(
        make_networks(config, spec).apply,
        layout,
        config.importance_sampling_exponent,
        config.huber_delta,
        axis_name,
        priority_epsilon=config.priority_epsilon,
    )


def make_optimizer(config: ApexDQNConfig):
    return losses.make_optimizer(config.learning_rate, config.adam_eps, config.max_gradient_norm)


def make_sgd_step(config: ApexDQNConfig, spec: specs.EnvironmentSpec, axis_name: str | None = DEVICE_AXIS):
    """The pure update (and its optimizer) for this config; pmap it with `axis_name`, or jit with None."""
    loss = make_loss(config, spec, make_transition_layout(config, spec), axis_name)
    optimizer = make_optimizer(config)
    return losses.make_sgd_step(loss, optimizer, config.target_update_period, axis_name), optimizer


def make_anakin_layout(config: ApexDQNConfig, spec: specs.EnvironmentSpec) -> TransitionLayout:
    """Anakin's items hold both observations (no frame sharing: they are small and in memory)."""
    return TransitionLayout(spec.observation_shape, np.dtype(np.float32), config.n_step)


def make_anakin_sizes(config: ApexDQNConfig) -> anakin.AnakinSizes:
    """Anakin's sizes; ValueError naming the settings when the replay cannot hold one cycle."""
    block = config.anakin_num_envs * config.anakin_rollout_steps  # items written per cycle
    if config.max_replay_size < block or config.min_replay_size > config.max_replay_size // block * block:
        raise ValueError(
            f"apex_dqn config: under anakin the replay holds max_replay_size={config.max_replay_size} items "
            f"rounded down to whole cycles of anakin_num_envs * anakin_rollout_steps = {block}; expected at "
            f"least one cycle and min_replay_size={config.min_replay_size} at most that")
    return anakin.AnakinSizes(config.anakin_num_envs, config.anakin_rollout_steps, config.anakin_updates_per_cycle,
                              config.batch_size, config.max_replay_size // block * block, config.min_replay_size)


def make_anakin(config: ApexDQNConfig, spec: specs.EnvironmentSpec, env: core.FunctionalEnv,
                axis_name: str | None) -> core.AnakinAgent:
    """Ape-X DQN as one compiled cycle per device (agents/apex_dqn/anakin.py), updating with
    make_loss, the Reverb learner's loss. batch_size is per device."""
    if spec.num_branches is not None and spec.num_actions > 127:
        raise ValueError(f"a portfolio's replay stores each instrument's action in int8: at most 127 "
                         f"positions, got {spec.num_actions}")
    network = make_networks(config, spec)
    return anakin.make_anakin(
        network.apply, network.init, make_loss(config, spec, make_anakin_layout(config, spec), axis_name),
        make_optimizer(config), env, make_anakin_sizes(config),
        target_update_period=config.target_update_period, n_step=config.n_step, discount=config.discount,
        reward_scale=config.reward_scale, priority_exponent=config.priority_exponent,
        priority_epsilon=config.priority_epsilon, epsilon_base=config.epsilon_base,
        epsilon_exponent=config.epsilon_exponent, axis_name=axis_name, num_branches=spec.num_branches,
    )


def make_learner(
    config: ApexDQNConfig, spec: specs.EnvironmentSpec, replay_address: str, seed: int
) -> ApexDQNLearner:
    import reverb

    from agents import replay
    from agents.apex_dqn import learning

    sgd_step, optimizer = make_sgd_step(config, spec)
    initial_state = losses.init_state(make_networks(config, spec).init, optimizer, seed)
    iterator = replay.sample_batches(
        replay_address, config.replay_table_name, config.batch_size, config.prefetch_batches
    )
    return learning.ApexDQNLearner(
        sgd_step, initial_state, iterator, reverb.Client(replay_address), config.replay_table_name
    )


def make_actor(
    config: ApexDQNConfig,
    spec: specs.EnvironmentSpec,
    variable_source: core.VariableSource,
    replay_address: str,
    actor_id: int,
    num_actors: int,
    seed: int,
) -> ApexDQNActor:
    import reverb

    from agents.adders import NStepAdder
    from agents.apex_dqn.actor import ApexDQNActor

    layout = make_transition_layout(config, spec)
    client = reverb.Client(replay_address)

    def make_adder(num_envs: int) -> NStepAdder:
        return NStepAdder(client, config.replay_table_name, layout, num_envs, config.discount)

    return ApexDQNActor(
        apply=make_networks(config, spec).apply,
        make_adder=make_adder,
        variable_client=VariableClient(variable_source, "params", config.variable_update_period),
        epsilon=apex_epsilon(actor_id, num_actors, config.epsilon_base, config.epsilon_exponent),
        n_step=config.n_step,
        seed=seed,
        reward_scale=config.reward_scale,
        priority_epsilon=config.priority_epsilon,
    )


def make_eval_policy(config: ApexDQNConfig, spec: specs.EnvironmentSpec) -> Callable[[Any, np.ndarray], jax.Array]:
    """Greedy policy(params, obs [B, ...]) -> actions [B] (the highest Q-value), jitted."""
    return building.greedy_policy(make_networks(config, spec).apply)
