"""Builds every Ape-X DQN component from a config and an environment spec: launch/ uses only this.

A new agent is a new package with these same functions and one line in agents/registry.py.
"""

import dataclasses
from typing import Any, Callable

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import reverb

from agents import core, replay, specs
from agents.adders import NStepAdder, TransitionLayout
from agents.apex_dqn import learning, losses, networks
from agents.apex_dqn.actor import ApexDQNActor, apex_epsilon
from agents.apex_dqn.config import ApexDQNConfig, make_config  # noqa: F401  (builder API)
from agents.environment_loop import EnvironmentLoop  # noqa: F401  (part of the builder's API)
from agents.variable_client import VariableClient

Config = ApexDQNConfig
REPLAY_CHECKPOINTED = True  # a prioritized replay: worth keeping across --restore


def make_environment_spec(env: gym.Env | gym.vector.VectorEnv) -> specs.EnvironmentSpec:
    return specs.make_environment_spec(env)


def make_transition_layout(config: ApexDQNConfig, spec: specs.EnvironmentSpec) -> TransitionLayout:
    return TransitionLayout.from_spec(spec, config.n_step)


def make_networks(config: ApexDQNConfig, spec: specs.EnvironmentSpec) -> networks.Networks:
    return networks.make_networks(spec, config.hidden_sizes)


def make_replay_tables(config: ApexDQNConfig, spec: specs.EnvironmentSpec) -> list[reverb.Table]:
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


def make_sgd_step(config: ApexDQNConfig, spec: specs.EnvironmentSpec, axis_name: str | None = learning.DEVICE_AXIS):
    """The pure update (and its optimizer) for this config; pmap it with `axis_name`, or jit with None."""
    network = make_networks(config, spec)
    loss = losses.make_double_q_loss(
        network.apply,
        make_transition_layout(config, spec),
        config.importance_sampling_exponent,
        config.huber_delta,
        axis_name,
        priority_epsilon=config.priority_epsilon,
    )
    optimizer = losses.make_optimizer(config.learning_rate, config.adam_eps, config.max_gradient_norm)
    return losses.make_sgd_step(loss, optimizer, config.target_update_period, axis_name), optimizer


def make_learner(
    config: ApexDQNConfig, spec: specs.EnvironmentSpec, replay_address: str, seed: int
) -> learning.ApexDQNLearner:
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
    """Greedy policy(params, obs [B, ...]) -> actions [B], jitted."""
    apply = make_networks(config, spec).apply

    @jax.jit
    def policy(params: Any, observation: jax.Array) -> jax.Array:
        return jnp.argmax(apply(params, observation), axis=-1).astype(jnp.int32)

    return policy
