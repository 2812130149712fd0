"""Builds every IMPALA component from a config and an environment spec (agents.core.AgentBuilder).

The second agent behind the same builder functions as agents/apex_dqn/builder.py: a FIFO queue
fed by a sequence adder where Ape-X has a prioritized replay fed by an n-step adder. Reverb
and TensorFlow are imported by the functions that use them, as there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import gymnasium as gym
import jax
import numpy as np

from agents import building, core, specs, torsos
from agents.impala import anakin, losses, networks
from agents.impala.config import ImpalaConfig, make_config  # noqa: F401  (builder API)
from agents.layouts import SequenceLayout
from agents.pmap_learner import DEVICE_AXIS
from agents.variable_client import VariableClient

if TYPE_CHECKING:
    import reverb

    from agents.impala.actor import ImpalaActor
    from agents.impala.learning import ImpalaLearner

Config = ImpalaConfig
# An on-policy queue: after a restart its sequences come from an old policy, so the replay
# node neither checkpoints nor restores it (--restore starts with an empty queue).
REPLAY_CHECKPOINTED = False


def make_environment_spec(env: gym.Env | gym.vector.VectorEnv) -> specs.EnvironmentSpec:
    return specs.make_environment_spec(env)


def make_sequence_layout(config: ImpalaConfig, spec: specs.EnvironmentSpec) -> SequenceLayout:
    return SequenceLayout.from_spec(spec, config.sequence_length)


def make_networks(config: ImpalaConfig, spec: specs.EnvironmentSpec) -> networks.Networks:
    frames = spec.observation_shape[1:] if spec.num_branches is not None else spec.observation_shape
    return networks.make_networks(spec, config.hidden_sizes, torsos.make_torso(config.torso_config(), frames),
                                  config.cross_asset_points)


def parameter_count(config: ImpalaConfig, spec: specs.EnvironmentSpec) -> int:
    """Scalars in this config's network parameters (from shapes only: nothing is initialised)."""
    return building.parameter_count(make_networks(config, spec).init)


def make_replay_tables(config: ImpalaConfig, spec: specs.EnvironmentSpec) -> list[reverb.Table]:
    from agents import replay

    signature = make_sequence_layout(config, spec).item_spec()
    return [replay.make_queue_table(config.queue_table_name, signature, config.max_queue_size)]


def make_loss(config: ImpalaConfig, spec: specs.EnvironmentSpec) -> losses.LossFn:
    """The V-trace loss of this config: the one the Reverb learner and Anakin both update with."""
    return losses.make_impala_loss(
        make_networks(config, spec).apply, config.discount, config.baseline_cost, config.entropy_cost,
        config.clip_rho_threshold, config.clip_pg_rho_threshold, config.vtrace_lambda,
    )


def make_optimizer(config: ImpalaConfig):
    return losses.make_optimizer(config.learning_rate, config.rmsprop_decay, config.rmsprop_eps,
                                 config.max_gradient_norm)


def make_sgd_step(config: ImpalaConfig, spec: specs.EnvironmentSpec, axis_name: str | None = DEVICE_AXIS):
    """The pure update (and its optimizer) for this config; pmap it with `axis_name`, or jit with None."""
    optimizer = make_optimizer(config)
    return losses.make_sgd_step(make_loss(config, spec), optimizer, axis_name), optimizer


def make_anakin(config: ImpalaConfig, spec: specs.EnvironmentSpec, env: core.FunctionalEnv,
                axis_name: str | None) -> core.AnakinAgent:
    """IMPALA as one compiled cycle per device (agents/impala/anakin.py), updating with make_loss,
    the Reverb learner's loss. batch_size is per device."""
    network = make_networks(config, spec)
    return anakin.make_anakin(
        network.apply, network.init, make_loss(config, spec), make_optimizer(config), env,
        num_envs=config.anakin_num_envs, sequence_length=config.sequence_length, batch_size=config.batch_size,
        discount=config.discount, reward_scale=config.reward_scale, axis_name=axis_name,
    )


def make_learner(config: ImpalaConfig, spec: specs.EnvironmentSpec, replay_address: str, seed: int) -> ImpalaLearner:
    from agents import replay
    from agents.impala import learning

    sgd_step, optimizer = make_sgd_step(config, spec)
    layout = make_sequence_layout(config, spec)

    def sgd_step_on_items(state: losses.LearnerState, items: dict[str, jax.Array]):
        """The update on the queue's items, rebuilt as rows inside the compiled step."""
        return sgd_step(state, layout.rows(items))

    initial_state = losses.init_state(make_networks(config, spec).init, optimizer, seed)
    # One worker keeps the queue's order; only one batch is taken ahead (on-policy data ages).
    iterator = replay.sample_batches(
        replay_address, config.queue_table_name, config.batch_size, config.prefetch_batches,
        max_in_flight_samples_per_worker=config.batch_size, num_workers_per_iterator=1,
    )
    # An empty queue (actors stopped) would hold a bare iterator forever, even once the
    # server is gone; the fetcher gives up when the server stops answering.
    return learning.ImpalaLearner(sgd_step_on_items, initial_state, replay.BatchFetcher(iterator, replay_address))


def make_actor(
    config: ImpalaConfig,
    spec: specs.EnvironmentSpec,
    variable_source: core.VariableSource,
    replay_address: str,
    actor_id: int,
    num_actors: int,
    seed: int,
) -> ImpalaActor:
    import reverb

    from agents.impala.actor import ImpalaActor
    from agents.sequence_adder import SequenceAdder

    layout = make_sequence_layout(config, spec)
    client = reverb.Client(replay_address)

    def make_adder(num_envs: int) -> SequenceAdder:
        return SequenceAdder(client, config.queue_table_name, layout, num_envs)

    return ImpalaActor(
        apply=make_networks(config, spec).apply,
        make_adder=make_adder,
        variable_client=VariableClient(variable_source, "params", config.variable_update_period),
        seed=seed,
        reward_scale=config.reward_scale,
    )


def make_eval_policy(config: ImpalaConfig, spec: specs.EnvironmentSpec) -> Callable[[Any, np.ndarray], jax.Array]:
    """Greedy policy(params, obs [B, ...]) -> actions [B] (the most probable action), jitted."""
    return building.greedy_policy(make_networks(config, spec).apply, scores=lambda output: output[0])
