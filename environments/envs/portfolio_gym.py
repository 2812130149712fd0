"""PortfolioEnv: N instruments of a panel traded at once, as a gymnasium env in numpy (gymnasium
id "PortfolioEnv-v0"), settled by environments.envs.accounting.rebalance as JaxPortfolioEnv is:
the same observations, rewards and values step by step (float64 here, float32 there)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from environments.data.panel import PanelData
from environments.envs.accounting import rebalance
from environments.envs.config import EnvConfig


class PortfolioEnv(gym.Env):
    """Trades every instrument of `panel` at once.

    Action: MultiDiscrete([K] * N), one index into `positions` per instrument; instrument i's
    target weight is positions[a_i] / (instruments holdable at bar t), 0 where it cannot be
    held to the next bar (a held position is then closed at bar t's price and counted in
    info["forced_closes"]). Observation: float32 [N, window, F + 2]: per instrument and bar of
    the window, its features, the position level it held there and whether it could be held
    there. Reward, modes and episode lengths as TradingEnv's (environments/envs/trading.py).
    info: portfolio_value, position (gross exposure sum |w|), weights [N], cost, traded,
    forced_closes, step_index.
    """

    metadata = {"render_modes": []}

    def __init__(self, panel: PanelData, config: EnvConfig | None = None, mode: str = "train"):
        config = config or EnvConfig()
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        needed = config.window + 1 + (config.episode_length if mode == "train" else 1)
        if len(panel) < needed:
            raise ValueError(f"{panel.source}: has {len(panel)} bars, a {mode} episode with "
                             f"window={config.window} and episode_length={config.episode_length} "
                             f"needs at least {needed}")
        self.panel, self.config, self.mode = panel, config, mode
        self.window = config.window
        self.positions = np.asarray(config.positions, np.float64)
        self._features = panel.features  # [T, N, F] float32, read in place
        self._can_hold = panel.can_hold  # [T, N]
        self._returns = panel.step_returns  # [T, N]
        num, width = panel.num_instruments, len(panel.feature_names) + 2
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (num, config.window, width),
                                                np.float32)
        self.action_space = gym.spaces.MultiDiscrete([len(self.positions)] * num)
        self._first, self._last = config.window, len(panel) - 1  # as TradingEnv
        self._needs_reset = True

    @classmethod
    def from_config(cls, panel: PanelData, config: EnvConfig, mode: str = "eval") -> "PortfolioEnv":
        return cls(panel, config, mode)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if self.mode == "train":
            starts = self._last - self._first - self.config.episode_length + 1
            self._t = self._first + int(self.np_random.integers(starts))
            self._end = self._t + self.config.episode_length
        else:
            self._t, self._end = self._first, self._last
        num = self.panel.num_instruments
        self._weights = np.zeros(num)
        self._held = np.zeros((self.window, num))  # levels held at bars t - window + 1 .. t
        self._value = float(self.config.initial_value)
        self._needs_reset = False
        return self._observe(), {"portfolio_value": self._value, "position": 0.0,
                                 "weights": self._weights.copy(), "cost": 0.0, "traded": False,
                                 "forced_closes": 0, "step_index": self._t}

    def step(self, action):
        if self._needs_reset:
            raise RuntimeError("PortfolioEnv.step called before reset() or after the episode ended")
        action = np.asarray(action)
        if action.shape != (self.panel.num_instruments,) or not (
                (action >= 0) & (action < len(self.positions))).all():
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        t, config = self._t, self.config
        can_hold = self._can_hold[t]
        levels = np.where(can_hold, self.positions[action], 0.0)
        forced = int(((self._weights != 0) & ~can_hold).sum())
        reward, value, cost, bankrupt, weights = rebalance(
            self._value, self._weights, levels, can_hold, self._returns[t],
            config.trade_cost_rate, config.borrow_rate, np, config.risk_aversion)
        traded = bool((weights != self._weights).any())
        self._t, self._value, self._weights = t + 1, float(value), weights
        self._held = np.concatenate([self._held[1:], levels[None]])
        terminated = bool(bankrupt) or (self.mode == "eval" and self._t >= self._end)
        truncated = not terminated and self._t >= self._end
        self._needs_reset = terminated or truncated
        info = {"portfolio_value": self._value, "position": float(np.abs(weights).sum()),
                "weights": weights.copy(), "cost": float(cost), "traded": traded,
                "forced_closes": forced, "step_index": self._t}
        return self._observe(), float(reward), terminated, truncated, info

    def _observe(self) -> np.ndarray:
        rows = slice(self._t - self.window + 1, self._t + 1)
        obs = np.concatenate([self._features[rows], self._held[..., None],
                              self._can_hold[rows][..., None]], axis=2, dtype=np.float32)
        return obs.transpose(1, 0, 2)  # [N, window, F + 2]
