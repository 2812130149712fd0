"""TradingEnv: one instrument, discrete target positions, close-to-close accounting with
commission, half-spread and short-borrow costs; reward is the log change of portfolio value.

Accounting for the step at bar t (position p held before, target p' chosen now, r the
close-to-close return from t to t+1; positions are fractions of portfolio value V):
    cost_fraction = |p' - p| * (commission_bps + spread_bps) / 1e4
                    + max(-p', 0) * borrow_bps_per_step / 1e4
    growth        = 1 + p' * r - cost_fraction
    V_{t+1}       = V_t * growth,   reward = log(growth)
The position is re-established at each close without charging for its drift with the price.
If growth <= MIN_GROWTH the portfolio is bankrupt: V becomes max(V * growth, 0), reward is
log(MIN_GROWTH) and the episode terminates.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Sequence

import gymnasium as gym
import numpy as np

from environments.features import NUM_FEATURES, compute_features
from environments.market_data import MarketData, load_csv, synthetic_market

MIN_GROWTH = 1e-6
LOG_MIN_GROWTH = math.log(MIN_GROWTH)
DEFAULT_MARKET = dict(kind="ou", num_steps=4096, seed=0)  # used when no market is given


@dataclasses.dataclass(frozen=True, eq=False)
class TradingSetup:
    """Validated settings plus the per-market arrays both TradingEnv and TradingVectorEnv use."""

    market: MarketData
    window: int
    positions: np.ndarray  # float64 [K] target position per action
    trade_cost_rate: float  # (commission + half-spread) per unit of traded notional
    borrow_rate: float  # per step, per unit of short notional
    episode_length: int
    mode: str
    initial_value: float
    frames: np.ndarray  # float32 [T, F + 1], features then a zero position column; read-only
    step_returns: np.ndarray  # float64 [T]: close[t+1] / close[t] - 1, and 0 at T - 1
    first_step: int  # first bar an episode may start at (every window frame has a return)
    last_step: int  # the final bar (T - 1): no action is taken there

    @property
    def num_starts(self) -> int:
        """Number of possible training start bars."""
        return self.last_step - self.episode_length - self.first_step + 1


def make_setup(market: MarketData | str | os.PathLike | None = None, window: int = 32,
               positions: Sequence[float] = (-1.0, 0.0, 1.0), commission_bps: float = 1.0,
               spread_bps: float = 1.0, borrow_bps_per_step: float = 0.4,
               episode_length: int = 256, mode: str = "train",
               initial_value: float = 1.0) -> TradingSetup:
    if market is None:
        market = synthetic_market(**DEFAULT_MARKET)
    elif isinstance(market, (str, os.PathLike)):
        market = load_csv(market)
    elif not isinstance(market, MarketData):
        raise TypeError(f"market must be a MarketData, a CSV path or None, got {type(market)}")
    if not (isinstance(window, (int, np.integer)) and window >= 1):
        raise ValueError(f"window must be an integer >= 1, got {window!r}")
    levels = np.asarray(positions, dtype=np.float64)
    if levels.ndim != 1 or len(levels) < 1 or not np.isfinite(levels).all():
        raise ValueError(f"positions must be a non-empty list of finite numbers, got {positions!r}")
    if len(np.unique(levels)) != len(levels):
        raise ValueError(f"positions must be distinct, got {positions!r}")
    for name, value in (("commission_bps", commission_bps), ("spread_bps", spread_bps),
                        ("borrow_bps_per_step", borrow_bps_per_step)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if mode not in ("train", "eval"):
        raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
    if not (isinstance(episode_length, (int, np.integer)) and episode_length >= 1):
        raise ValueError(f"episode_length must be an integer >= 1, got {episode_length!r}")
    if not (math.isfinite(initial_value) and initial_value > 0):
        raise ValueError(f"initial_value must be a finite number > 0, got {initial_value!r}")
    window, episode_length = int(window), int(episode_length)
    first_step = window  # frames t-window+1..t all have a log return (bar 0 has none)
    if mode == "train":
        market.check_min_rows(first_step + episode_length + 1,
                              f"training with window={window} and episode_length={episode_length}")
    else:
        market.check_min_rows(first_step + 2, f"evaluation with window={window}")
    frames = np.zeros((len(market), NUM_FEATURES + 1), dtype=np.float32)  # [T, F + 1]
    frames[:, :NUM_FEATURES] = compute_features(market)
    frames.setflags(write=False)
    step_returns = np.zeros(len(market))  # [T]
    step_returns[:-1] = market.close[1:] / market.close[:-1] - 1.0
    step_returns.setflags(write=False)
    levels.setflags(write=False)
    return TradingSetup(
        market=market, window=window, positions=levels,
        trade_cost_rate=(commission_bps + spread_bps) / 1e4,
        borrow_rate=borrow_bps_per_step / 1e4, episode_length=episode_length, mode=mode,
        initial_value=float(initial_value), frames=frames, step_returns=step_returns,
        first_step=first_step, last_step=len(market) - 1,
    )


class TradingEnv(gym.Env):
    """Single-instrument trading environment (gymnasium id "TradingEnv-v0").

    Observation: float32 [window, NUM_FEATURES + 1]; row k is the frame of bar
    t - window + 1 + k: that bar's features then the position held at that bar (0 before the
    episode start). Action: Discrete(len(positions)), the target position.
    mode="train": a random start bar (from the reset seed), `episode_length` steps, then
    truncated=True. mode="eval": starts at the first valid bar and walks the whole market
    once; terminated=True at the last bar. info: portfolio_value, position (now held), cost
    (paid this step, in portfolio currency), traded (position changed), step_index (bar t).
    """

    metadata = {"render_modes": [], "observation_is_frame_window": True}

    def __init__(self, market: MarketData | str | None = None, window: int = 32,
                 positions: Sequence[float] = (-1.0, 0.0, 1.0), commission_bps: float = 1.0,
                 spread_bps: float = 1.0, borrow_bps_per_step: float = 0.4,
                 episode_length: int = 256, mode: str = "train", initial_value: float = 1.0,
                 render_mode: str | None = None):
        if render_mode is not None:
            raise ValueError(f"TradingEnv has no render modes, got render_mode={render_mode!r}")
        self.setup = make_setup(market, window, positions, commission_bps, spread_bps,
                                borrow_bps_per_step, episode_length, mode, initial_value)
        setup = self.setup
        self.market = setup.market
        self.window = setup.window
        self.positions = tuple(float(p) for p in setup.positions)
        self.mode = setup.mode
        self.episode_length = setup.episode_length
        self.observation_space = gym.spaces.Box(
            -np.inf, np.inf, shape=(setup.window, NUM_FEATURES + 1), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(len(self.positions))
        # Per-env copy of the frames: the position column is written as the episode goes, so
        # an observation is a single contiguous slice copy.
        self._frames = setup.frames.copy()  # [T, F + 1]
        self._step_returns = setup.step_returns.tolist()  # python floats: fast scalar maths
        self._trade_cost_rate = setup.trade_cost_rate
        self._borrow_rate = setup.borrow_rate
        self._t = setup.first_step
        self._end = setup.last_step
        self._steps_left = 0
        self._position = 0.0
        self._value = setup.initial_value
        self._needs_reset = True

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        setup = self.setup
        if self.mode == "train":
            # One uniform draw per reset (TradingVectorEnv draws the same stream).
            start = setup.first_step + int(self.np_random.random() * setup.num_starts)
            self._end = start + setup.episode_length
        else:
            start = setup.first_step
            self._end = setup.last_step
        self._t = start
        self._steps_left = self._end - start
        self._position = 0.0
        self._value = setup.initial_value
        self._needs_reset = False
        self._frames[start - self.window + 1:start + 1, NUM_FEATURES] = 0.0
        obs = self._frames[start - self.window + 1:start + 1].copy()  # [window, F + 1]
        info = {"portfolio_value": self._value, "position": 0.0, "cost": 0.0, "traded": False,
                "step_index": start}
        return obs, info

    def step(self, action):
        if self._needs_reset:
            raise RuntimeError("TradingEnv.step called before reset() or after the episode ended")
        positions = self.positions
        if not 0 <= action < len(positions):
            raise ValueError(f"action {action!r} is outside Discrete({len(positions)})")
        target = positions[action]
        position = self._position
        t = self._t
        cost_fraction = abs(target - position) * self._trade_cost_rate
        if target < 0.0:
            cost_fraction += (-target) * self._borrow_rate
        growth = 1.0 + target * self._step_returns[t] - cost_fraction
        value = self._value
        cost = value * cost_fraction
        if growth > MIN_GROWTH:
            reward = math.log(growth)
            self._value = value * growth
            bankrupt = False
        else:
            reward = LOG_MIN_GROWTH
            self._value = value * max(growth, 0.0)
            bankrupt = True
        t += 1
        self._t = t
        self._position = target
        frames = self._frames
        frames[t, NUM_FEATURES] = target  # position held at bar t + 1
        obs = frames[t - self.window + 1:t + 1].copy()  # [window, F + 1]
        self._steps_left -= 1
        terminated = bankrupt or (self.mode == "eval" and t >= self._end)
        truncated = not terminated and self._steps_left <= 0
        if terminated or truncated:
            self._needs_reset = True
        info = {"portfolio_value": self._value, "position": target, "cost": cost,
                "traded": target != position, "step_index": t}
        return obs, reward, terminated, truncated, info
