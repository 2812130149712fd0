"""Acme-style interfaces every node of the program is written against.

These mirror `acme/core.py` (names and meaning); dm-acme itself cannot be imported on
Python 3.11 (see BUILD.md). No logic lives here, only the contracts (and, for the fused
single-host path, FunctionalEnv and AnakinAgent).
"""

import abc
from typing import Any, Callable, Generic, Mapping, NamedTuple, Protocol, Sequence, TypeVar

import numpy as np

T = TypeVar("T")


class VariableSource(abc.ABC):
    """Serves the latest values of named variables (e.g. a learner's parameters)."""

    @abc.abstractmethod
    def get_variables(self, names: Sequence[str]) -> list[Any]:
        """Returns one pytree per name, in order. May be called from any thread.

        Must not wait for a whole training step: a source serves the latest
        published values. By convention the entry named "version" is the learner
        step the parameters came from.
        """


class Worker(abc.ABC):
    """A node's main loop."""

    @abc.abstractmethod
    def run(self) -> None:
        """Runs until told to stop (or until its own limit is reached); may block."""


class Saveable(abc.ABC):
    """An object whose state can be checkpointed and restored."""

    @abc.abstractmethod
    def save(self) -> Any:
        """Returns the state to checkpoint (a pytree of arrays and scalars)."""

    @abc.abstractmethod
    def restore(self, state: Any) -> None:
        """Sets the state from what `save` returned."""


class Actor(abc.ABC):
    """Interacts with an environment: picks actions and records what it sees.

    Batched: one actor steps a vector of B environments, so actions, observations
    and rewards carry a leading [B] axis.
    """

    @abc.abstractmethod
    def select_action(self, observation: np.ndarray) -> np.ndarray:
        """Returns actions [B] for observations [B, ...]; never blocks on the network."""

    @abc.abstractmethod
    def observe_first(self, observation: np.ndarray, env_mask: np.ndarray | None = None) -> None:
        """Records the first observation of new episodes (for envs where env_mask is True)."""

    @abc.abstractmethod
    def observe(
        self,
        action: np.ndarray,
        reward: np.ndarray,
        next_observation: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        env_mask: np.ndarray | None = None,
    ) -> None:
        """Records one transition for every env where env_mask is True (may write to replay).

        With a vector env's next-step autoreset, the step after an episode end only
        resets that env: the loop passes env_mask False for it and then calls
        `observe_first` with its new first observation.
        """

    @abc.abstractmethod
    def update(self, wait: bool = False) -> None:
        """Lets the actor refresh its parameters from its variable source.

        With wait=False it must return at once (the fetch happens in the background);
        with wait=True it blocks until the newest parameters are in use.
        """

    def close(self) -> None:
        """Releases what the actor owns (its adder's writers, its variable client); called
        once, after the last step. Items it could not send by then may be dropped."""


class Learner(VariableSource, Worker, Saveable):
    """Consumes replay data and updates parameters."""

    @abc.abstractmethod
    def step(self) -> dict[str, float]:
        """Performs one update (one sampled batch) and returns its metrics."""

    def run(self, num_steps: int | None = None) -> None:
        """Steps forever, or `num_steps` times."""
        step = 0
        while num_steps is None or step < num_steps:
            self.step()
            step += 1

    def close(self) -> None:
        """Releases what the learner owns (sampling threads, pending priority updates);
        called once, after the last step and the last `save`."""


class Adder(abc.ABC, Generic[T]):
    """Writes experience to replay. Defines what one replay item is."""

    @abc.abstractmethod
    def add_first(self, timestep: T) -> None:
        """Starts an episode."""

    @abc.abstractmethod
    def add(self, *args: Any, **kwargs: Any) -> None:
        """Adds one step; writes items once enough steps are there."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Drops partial episodes (e.g. after a restart)."""


class AgentBuilder(Protocol):
    """What an agent package offers the launcher (launch/ knows agents only through this).

    Acme writes the same contract as `ActorLearnerBuilder` (acme/agents/jax/builders.py). Here
    an agent is a package: `config.py` holds `Config` (a dataclass of every hyper-parameter)
    and `make_config(preset, **overrides)`, importing nothing heavy, so that flags are
    checked before jax loads; `builder.py` offers the functions below (re-exporting both).
    Every function may be called in any node's process; none may rely on state of another.
    """

    Config: type
    # Whether the replay tables hold experience worth keeping across a restart (a prioritized
    # replay: True) or data of one policy only (an on-policy queue: False). True: the replay
    # node checkpoints its tables and `--restore` reloads them; False: it starts empty.
    REPLAY_CHECKPOINTED: bool

    def make_config(self, preset: str = ..., **overrides: Any) -> Any:
        """The named preset with `overrides`; ValueError naming a bad setting or value."""

    def make_environment_spec(self, env: Any) -> Any:
        """The spec (observation shape and dtype, number of actions) of a (vector) env."""

    def make_replay_tables(self, config: Any, spec: Any) -> list[Any]:
        """The reverb.Table objects of the replay node (their signatures from the adder)."""

    def make_learner(self, config: Any, spec: Any, replay_address: str, seed: int) -> Learner:
        """A Learner sampling from the replay at `replay_address` (host:port)."""

    def make_actor(self, config: Any, spec: Any, variable_source: VariableSource,
                   replay_address: str, actor_id: int, num_actors: int, seed: int) -> Actor:
        """Actor `actor_id` of `num_actors`, writing to the replay, with parameters from
        `variable_source`; it has `param_version` (the learner step of its parameters)."""

    def make_eval_policy(self, config: Any, spec: Any) -> Any:
        """policy(params, observations [B, ...]) -> actions [B]: the greedy policy; traceable
        inside jit/vmap (the anakin launcher evaluates it inside one compiled scan)."""

    def make_anakin(self, config: Any, spec: Any, env: "FunctionalEnv", axis_name: str | None) -> "AnakinAgent":
        """The agent as pure functions over one compiled training cycle (Podracer's Anakin):
        env, acting, replay and updates in one program. `axis_name` names the pmap axis over
        devices (gradients are averaged over it), or None on one device."""

    def parameter_count(self, config: Any, spec: Any) -> int:
        """Scalars in the network parameters of `config` (summary.json's parameter_count; an
        agent without networks, e.g. tests/test_launch/toy_agent.py, may leave it out)."""


class FunctionalEnv(NamedTuple):
    """What an Anakin agent sees of an environment: pure functions (gymnax style) with the
    env's data as an explicit argument, so the whole loop compiles."""

    reset: Callable  # (key, env_params) -> (obs, env_state)
    # (key, env_state, action, env_params) -> (obs, env_state, reward, done, info). Auto-resets:
    # when done, obs is the next episode's first observation; info has "final_observation" (the
    # ended episode's last observation, == obs when not done), "terminated" and "truncated".
    step: Callable
    # Optional, for replays that hold many observations: observation_ref(env_state, env_params)
    # -> a small pytree from which observation_from_ref(ref, env_params) rebuilds exactly the
    # observation `env_state` shows. An env that offers them also puts the ref of
    # info["final_observation"] in info["final_observation_ref"].
    observation_ref: Callable | None = None
    observation_from_ref: Callable | None = None


class AnakinAgent(NamedTuple):
    """An agent as pure functions (AgentBuilder.make_anakin). All are called under the same
    vmap (seeds) and pmap (devices, axis_name) by the launcher."""

    # (key, env_params) -> train_state: a pytree (learner state, replay state, env states, last
    # observations, counters). Parameters come from `key` alone (identical on every device);
    # env, replay and exploration randomness fold in jax.lax.axis_index(axis_name) when set.
    init: Callable
    # (train_state, env_params[, hyperparameters]) -> (train_state, metrics: dict[str, float32 []]):
    # ONE compiled cycle of acting into the in-graph replay (or straight into the update), then
    # the updates. `hyperparameters`, optional: {name: float32 []} for some names of the field
    # below, traced values that replace the config's (so vmapped members of one program, a
    # sweep, may each train with their own); left out, the config's are compiled in.
    train_step: Callable
    policy_params: Callable  # train_state -> the params that make_eval_policy's policy takes
    learner_steps: Callable  # train_state -> int32 [] updates done
    env_steps: Callable  # train_state -> int32 [] env steps done (all envs of this device)
    # The settings train_step takes per member, each with the config's value: a config field's
    # name (its value), or <field>_scale (a factor on the field's value: learning_rate_scale).
    # Settings not here (shapes, or built into the loss) are fixed when the program compiles.
    hyperparameters: Mapping[str, float] = {}


def member_hyperparameters(agent: str, hyperparameters: Mapping[str, Any],
                           defaults: Mapping[str, float]) -> dict[str, Any]:
    """Every per-member setting of `defaults` (AnakinAgent.hyperparameters) as float32 [], the
    member's traced value where `hyperparameters` has one; ValueError naming an unknown one."""
    import jax.numpy as jnp

    unknown = set(hyperparameters) - set(defaults)
    if unknown:
        raise ValueError(f"{agent} anakin: no per-member setting {sorted(unknown)}; "
                         f"expected some of {sorted(defaults)}")
    return {name: jnp.asarray(hyperparameters.get(name, value), jnp.float32)
            for name, value in defaults.items()}
