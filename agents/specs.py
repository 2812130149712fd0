"""What an agent needs to know about an environment, read once from its spaces."""

import dataclasses

import gymnasium as gym
import numpy as np


@dataclasses.dataclass(frozen=True)
class EnvironmentSpec:
    """Shapes of one (unbatched) environment.

    `observation_is_frame_window` means the observation [window, ...] is a sliding
    window of per-step frames (obs_{t+1}[:-1] == obs_t[1:]), so replay may store
    one frame per step and rebuild windows.
    """

    observation_shape: tuple[int, ...]
    observation_dtype: np.dtype
    num_actions: int
    observation_is_frame_window: bool = False

    @property
    def frame_window(self) -> int | None:
        """Number of frames in one observation, or None for ordinary observations."""
        return self.observation_shape[0] if self.observation_is_frame_window else None


def make_environment_spec(env: gym.Env | gym.vector.VectorEnv) -> EnvironmentSpec:
    """Reads the spec of a gymnasium Env or VectorEnv (its single-env spaces)."""
    if isinstance(env, gym.vector.VectorEnv):
        observation_space, action_space = env.single_observation_space, env.single_action_space
    else:
        observation_space, action_space = env.observation_space, env.action_space
    if not isinstance(action_space, gym.spaces.Discrete):
        raise ValueError(
            f"{type(env).__name__}: expected a Discrete action space, got {action_space}"
        )
    if not isinstance(observation_space, gym.spaces.Box):
        raise ValueError(
            f"{type(env).__name__}: expected a Box observation space, got {observation_space}"
        )
    is_frame_window = bool((env.metadata or {}).get("observation_is_frame_window", False))
    if is_frame_window and len(observation_space.shape) != 2:
        raise ValueError(
            f"{type(env).__name__}: metadata says observation_is_frame_window but the "
            f"observation shape is {observation_space.shape}, expected [window, frame_size]"
        )
    return EnvironmentSpec(
        observation_shape=tuple(int(d) for d in observation_space.shape),
        observation_dtype=np.dtype(observation_space.dtype),
        num_actions=int(action_space.n),
        observation_is_frame_window=is_frame_window,
    )
