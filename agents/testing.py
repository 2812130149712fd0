"""Tiny deterministic environments and helpers for tests of agents (like acme/testing).

Real gymnasium environments (and CountingEnv as pure jax functions for the Anakin path), small
enough that tests can compute expected numbers by hand.
"""

from typing import Any, NamedTuple, Sequence

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from agents import core


class CountingEnv(gym.Env):
    """obs_t = [t, last action, tag] (float32 [3]); reward_t = t + 1; episodes last `episode_length` steps.

    The last step terminates the episode when `terminates` is True, else truncates it (a time
    limit). `tag` marks whose experience an observation is (e.g. an actor id).
    """

    metadata = {"observation_is_frame_window": False}

    def __init__(self, episode_length: int = 5, num_actions: int = 3, terminates: bool = True, tag: float = 0.0):
        self.episode_length = episode_length
        self.terminates = terminates
        self.tag = tag
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(num_actions)
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._t = 0
        return np.array([0.0, -1.0, self.tag], np.float32), {}

    def step(self, action):
        reward = float(self._t + 1)
        self._t += 1
        end = self._t >= self.episode_length
        obs = np.array([self._t, action, self.tag], np.float32)
        return obs, reward, end and self.terminates, end and not self.terminates, {}


class FrameWindowEnv(CountingEnv):
    """Like CountingEnv, but obs_t is the window of frames [t - window + 1 .. t], frame_s = [s, a_{s-1}, tag].

    Frames before the episode start are [s, -1, tag] with s <= 0, as a trading env shows
    market history from before the episode with a flat position.
    """

    metadata = {"observation_is_frame_window": True}

    def __init__(self, window: int = 4, **kwargs: Any):
        super().__init__(**kwargs)
        self.window = window
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(window, 3), dtype=np.float32)
        self._frames = np.zeros((window, 3), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        steps = np.arange(-self.window + 1, 1, dtype=np.float32)
        self._frames = np.stack([steps, -np.ones_like(steps), np.full_like(steps, self.tag)], axis=1)
        return self._frames.copy(), {}

    def step(self, action):
        frame, reward, terminated, truncated, info = super().step(action)
        self._frames = np.concatenate([self._frames[1:], frame[None]], axis=0)
        return self._frames.copy(), reward, terminated, truncated, info


def make_vector_env(env_cls: type = CountingEnv, num_envs: int = 2, **kwargs: Any) -> gym.vector.VectorEnv:
    """A SyncVectorEnv (gymnasium 1.0: next-step autoreset) of `num_envs` identical envs."""
    return gym.vector.SyncVectorEnv([lambda: env_cls(**kwargs) for _ in range(num_envs)])


class StaticVariableSource(core.VariableSource):
    """Serves fixed variables (e.g. initial parameters in a process without a learner)."""

    def __init__(self, variables: dict[str, Any]):
        self._variables = dict(variables)

    def get_variables(self, names: Sequence[str]) -> list[Any]:
        return [self._variables[name] for name in names]


class CountingEnvParams(NamedTuple):
    """The data of a functional CountingEnv (an explicit argument, as gymnax's env params)."""

    episode_length: jax.Array  # int32 []
    terminates: jax.Array  # bool []: the last step terminates (True) or truncates (False)
    tag: jax.Array  # float32 []


class CountingEnvState(NamedTuple):
    t: jax.Array  # int32 [] steps done in the episode


def counting_env_params(episode_length: int = 5, terminates: bool = True, tag: float = 0.0) -> CountingEnvParams:
    return CountingEnvParams(jnp.int32(episode_length), jnp.bool_(terminates), jnp.float32(tag))


def make_counting_functional_env() -> core.FunctionalEnv:
    """CountingEnv as gymnax-style pure functions, auto-resetting (agents.core.FunctionalEnv):
    obs_t = [t, last action, tag], reward_t = t + 1; on the episode's last step `obs` is the next
    episode's first observation and info["final_observation"] = [episode_length, action, tag]."""

    def reset(key: jax.Array, params: CountingEnvParams):
        del key
        return jnp.stack([jnp.float32(0.0), jnp.float32(-1.0), params.tag]), CountingEnvState(jnp.int32(0))

    def step(key: jax.Array, state: CountingEnvState, action: jax.Array, params: CountingEnvParams):
        t = state.t + 1
        end = t >= params.episode_length
        final_observation = jnp.stack([t.astype(jnp.float32), action.astype(jnp.float32), params.tag])
        first_observation, first_state = reset(key, params)
        observation = jnp.where(end, first_observation, final_observation)
        new_state = CountingEnvState(jnp.where(end, first_state.t, t))
        info = {"final_observation": final_observation, "terminated": end & params.terminates,
                "truncated": end & ~params.terminates}
        return observation, new_state, (state.t + 1).astype(jnp.float32), end, info

    return core.FunctionalEnv(reset=reset, step=step)


class FrameWindowEnvState(NamedTuple):
    t: jax.Array  # int32 [] steps done in the episode
    frames: jax.Array  # float32 [window, 3] the observation shown last


def make_frame_window_functional_env(window: int) -> core.FunctionalEnv:
    """FrameWindowEnv as pure auto-resetting functions (its obs [window, 3] of frames
    [s, a_{s-1}, tag], oldest first), on make_counting_functional_env's params and rewards."""

    def reset(key: jax.Array, params: CountingEnvParams):
        del key
        steps = jnp.arange(-window + 1, 1, dtype=jnp.float32)  # [window]
        frames = jnp.stack([steps, -jnp.ones_like(steps), jnp.full_like(steps, params.tag)], axis=1)
        return frames, FrameWindowEnvState(jnp.int32(0), frames)

    def step(key: jax.Array, state: FrameWindowEnvState, action: jax.Array, params: CountingEnvParams):
        t = state.t + 1
        end = t >= params.episode_length
        frame = jnp.stack([t.astype(jnp.float32), action.astype(jnp.float32), params.tag])
        final_observation = jnp.concatenate([state.frames[1:], frame[None]])  # [window, 3]
        first_observation, first_state = reset(key, params)
        observation = jnp.where(end, first_observation, final_observation)
        new_state = FrameWindowEnvState(jnp.where(end, first_state.t, t), observation)
        info = {"final_observation": final_observation, "terminated": end & params.terminates,
                "truncated": end & ~params.terminates}
        return observation, new_state, t.astype(jnp.float32), end, info

    return core.FunctionalEnv(reset=reset, step=step)
