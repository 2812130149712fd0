"""PortfolioVectorEnv: B PortfolioEnv episodes on one panel, stepped together with numpy arrays
(the actors' form under the program of nodes; launch/distributed/nodes/actor.py).

Same accounting (environments.envs.accounting.rebalance), observations and episodes as
PortfolioEnv: env i seeded with seed + i gives the trajectory of a PortfolioEnv reset with that
seed. gymnasium 1.0 NEXT_STEP autoreset, as TradingVectorEnv's: the step after an episode ends
resets that env, ignores its action, and returns its reset observation with reward 0 and
terminated = truncated = False.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.vector.utils import batch_space

from environments.data.panel import PanelData
from environments.envs.accounting import rebalance
from environments.envs.config import EnvConfig
from environments.envs.portfolio_gym import PortfolioEnv
from environments.envs.vector import env_generators

_INFO_KEYS = ("portfolio_value", "position", "cost", "traded", "forced_closes", "step_index")


class PortfolioVectorEnv(gym.vector.VectorEnv):
    """`num_envs` independent PortfolioEnv episodes of one panel.

    obs: float32 [B, N, window, F + 2]; actions: int [B, N] (indices into the env's positions);
    rewards float64 [B]. info: arrays [B] for portfolio_value, position (gross exposure),
    cost, traded, forced_closes and step_index (each with its gymnasium "_key" mask, all True),
    and "weights" [B, N].
    """

    metadata = {"render_modes": [],
                "autoreset_mode": getattr(getattr(gym.vector, "AutoresetMode", None),
                                          "NEXT_STEP", "NextStep")}

    def __init__(self, panel: PanelData, config: EnvConfig | None = None, num_envs: int = 1,
                 mode: str = "train"):
        if not (isinstance(num_envs, (int, np.integer)) and num_envs >= 1):
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        single = PortfolioEnv(panel, config, mode)  # checks the panel's length and the mode
        self.panel, self.config, self.mode = panel, single.config, mode
        self.num_envs, self.window = int(num_envs), single.window
        self.positions = single.positions  # float64 [K]
        self.single_observation_space = single.observation_space
        self.single_action_space = single.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._features = panel.features  # [T, N, F] float32, read in place
        self._can_hold = panel.can_hold  # [T, N]
        self._returns = panel.step_returns  # [T, N]
        self._first, self._last = single._first, single._last
        self._episode_starts = self._last - self._first - self.config.episode_length + 1
        self._back = np.arange(1 - self.window, 1)  # [window] bar offsets of an observation
        self._generators: list[np.random.Generator] = []
        self._reset_done = False
        all_true = np.ones(self.num_envs, dtype=bool)
        all_true.setflags(write=False)
        self._info_masks = {"_" + key: all_true for key in _INFO_KEYS}

    def _start_episodes(self, envs: np.ndarray) -> None:
        """Resets the envs with indices `envs` (the same draw as PortfolioEnv.reset's)."""
        for i in envs:
            if self.mode == "train":
                self._t[i] = self._first + int(self._generators[i].integers(self._episode_starts))
                self._end[i] = self._t[i] + self.config.episode_length
            else:
                self._t[i], self._end[i] = self._first, self._last
        self._weights[envs] = 0.0
        self._held[envs] = 0.0
        self._value[envs] = float(self.config.initial_value)

    def reset(self, *, seed=None, options: dict | None = None):
        if seed is not None or not self._generators:
            self._generators = env_generators(seed, self.num_envs)
        B, N = self.num_envs, self.panel.num_instruments
        self._t = np.zeros(B, np.int64)  # the current bar
        self._end = np.zeros(B, np.int64)  # the bar the episode ends at
        self._weights = np.zeros((B, N))  # held over the step that led to bar t
        self._held = np.zeros((B, self.window, N))  # levels held at bars t - window + 1 .. t
        self._value = np.zeros(B)
        self._start_episodes(np.arange(B))
        self._needs_reset = np.zeros(B, bool)
        self._reset_done = True
        zeros = np.zeros(B)
        return self._observe(), self._info(zeros, np.zeros(B, bool), np.zeros(B, np.int64))

    def step(self, actions):
        if not self._reset_done:
            raise RuntimeError("PortfolioVectorEnv.step called before reset()")
        actions = np.asarray(actions)
        shape = (self.num_envs, self.panel.num_instruments)
        if actions.shape != shape or actions.dtype.kind not in "iu" or not (
                (actions >= 0) & (actions < len(self.positions))).all():
            raise ValueError(f"actions must be integers in [0, {len(self.positions)}) of shape "
                             f"{shape}, got {actions.dtype} {actions.shape}")
        config, t = self.config, self._t
        can_hold = self._can_hold[t]  # [B, N]
        levels = np.where(can_hold, self.positions[actions], 0.0)  # [B, N]
        forced = ((self._weights != 0) & ~can_hold).sum(axis=1)  # [B]
        reward, value, cost, bankrupt, weights = rebalance(
            self._value, self._weights, levels, can_hold, self._returns[t],
            config.trade_cost_rate, config.borrow_rate, np, config.risk_aversion)
        traded = (weights != self._weights).any(axis=1)
        self._t, self._value, self._weights = t + 1, value, weights
        self._held = np.concatenate([self._held[:, 1:], levels[:, None]], axis=1)
        if self.mode == "train":
            terminated = bankrupt
            truncated = ~terminated & (self._t >= self._end)
        else:
            terminated = bankrupt | (self._t >= self._end)
            truncated = np.zeros(self.num_envs, bool)
        if self._needs_reset.any():  # NEXT_STEP autoreset of the envs that ended
            resetting = np.flatnonzero(self._needs_reset)
            self._start_episodes(resetting)
            for array in (reward, cost, forced):
                array[resetting] = 0
            for array in (terminated, truncated, traded):
                array[resetting] = False
        self._needs_reset = terminated | truncated
        return self._observe(), reward, terminated, truncated, self._info(cost, traded, forced)

    def _observe(self) -> np.ndarray:
        rows = self._t[:, None] + self._back  # [B, window]
        features = self._features[rows]  # [B, window, N, F]
        F = features.shape[-1]
        obs = np.empty((self.num_envs, self.panel.num_instruments, self.window, F + 2), np.float32)
        obs[..., :F] = features.transpose(0, 2, 1, 3)
        obs[..., F] = self._held.transpose(0, 2, 1)
        obs[..., F + 1] = self._can_hold[rows].transpose(0, 2, 1)
        return obs

    def _info(self, cost: np.ndarray, traded: np.ndarray, forced: np.ndarray) -> dict:
        # State arrays are replaced, never modified in place, once handed out here.
        info = {"portfolio_value": self._value.copy(), "position": np.abs(self._weights).sum(axis=1),
                "cost": cost, "traded": traded, "forced_closes": forced, "step_index": self._t.copy(),
                "weights": self._weights.copy()}
        info.update(self._info_masks)
        return info

    def close_extras(self, **kwargs):
        pass
