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
    # One action per instrument of a portfolio (MultiDiscrete([num_actions] * D)): D, and
    # observations [D, window, F]; None: one action.
    num_branches: int | None = None

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
    num_branches = None
    if isinstance(action_space, gym.spaces.MultiDiscrete) and action_space.nvec.ndim == 1 and len(
            set(action_space.nvec.tolist())) == 1:
        num_branches, num_actions = len(action_space.nvec), int(action_space.nvec[0])
    elif isinstance(action_space, gym.spaces.Discrete):
        num_actions = int(action_space.n)
    else:
        raise ValueError(
            f"{type(env).__name__}: expected a Discrete action space (or MultiDiscrete with the "
            f"same number of actions in every branch), got {action_space}"
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
        num_actions=num_actions,
        observation_is_frame_window=is_frame_window,
        num_branches=num_branches,
    )
