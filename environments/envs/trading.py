"""TradingEnv: one instrument, discrete target positions, close-to-close accounting with
commission, half-spread and short-borrow costs (environments.envs.accounting, with
trade_cost_rate = (commission_bps + spread_bps) / 1e4 and borrow_rate = borrow_bps_per_step /
1e4); reward is the log change of portfolio value. TradingSetup holds what every env built on
the same settings shares.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import gymnasium as gym
import numpy as np

from environments.data.csv_loader import load_csv
from environments.data.features import NUM_FEATURES
from environments.data.market import MarketData
from environments.data.synthetic import synthetic_market
from environments.envs.accounting import SCALAR, cost_table, settle
from environments.envs.config import EnvConfig

DEFAULT_MARKET = dict(kind="ou", num_steps=4096, seed=0)  # used when no market is given
_RING_STEPS = 128  # steps between compactions of a TradingEnv's recent-frames ring


@dataclasses.dataclass(frozen=True, eq=False)
class TradingSetup:
    """A config (EnvConfig) and a mode applied to markets: the per-market arrays both
    TradingEnv and TradingVectorEnv use, and JaxTradingEnv's params are made from.

    Several markets (a universe) are laid end to end: bar indices are global, market m owns
    bars offsets[m] .. offsets[m + 1] - 1, and no window or episode crosses a boundary.
    """

    markets: tuple[MarketData, ...]
    config: EnvConfig
    mode: str  # "train" or "eval"
    positions: np.ndarray  # float64 [K] target position per action, read-only
    # float32 [T, F], read-only: the markets' features end to end. With one market, its own
    # array (a view: memory-mapped from the data cache, so shared by every env and process).
    features: np.ndarray
    step_returns: np.ndarray  # float64 [T]: close[t+1] / close[t] - 1, and 0 at each market's end
    offsets: np.ndarray  # int64 [M + 1]: first global bar of each market, then T
    first_steps: np.ndarray  # int64 [M]: first bar an episode may start at in each market
    last_steps: np.ndarray  # int64 [M]: each market's final bar (no action is taken there)
    start_counts: np.ndarray  # int64 [M + 1]: cumulative number of training start bars

    # The config's settings, as the envs read them.
    window = property(lambda self: self.config.window)
    episode_length = property(lambda self: self.config.episode_length)
    initial_value = property(lambda self: self.config.initial_value)
    risk_aversion = property(lambda self: self.config.risk_aversion)  # accounting.py's kappa
    trade_cost_rate = property(lambda self: self.config.trade_cost_rate)
    borrow_rate = property(lambda self: self.config.borrow_rate)

    @property
    def market(self) -> MarketData:
        """The first (in eval mode: the only) market."""
        return self.markets[0]

    @property
    def first_step(self) -> int:
        return int(self.first_steps[0])

    @property
    def last_step(self) -> int:
        return int(self.last_steps[0])

    @property
    def num_starts(self) -> int:
        """Number of possible training start bars, over all markets."""
        return int(self.start_counts[-1])

    def starts(self, uniforms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(market index, global start bar) of training episodes, one per uniform in [0, 1).

        Every (market, start bar) pair is equally likely, so a market is drawn in proportion
        to its number of start bars (equally, for markets of equal length). With one market
        this is first_step + floor(u * num_starts).
        """
        k = (np.asarray(uniforms) * self.num_starts).astype(np.int64)
        market = np.searchsorted(self.start_counts, k, side="right") - 1
        return market, self.first_steps[market] + (k - self.start_counts[market])


def as_markets(market: MarketData | Sequence[MarketData] | str | os.PathLike | None
               ) -> tuple[MarketData, ...]:
    """What TradingEnv's `market` argument may be (gymnasium's make passes it as given): one
    MarketData, a non-empty sequence of them (a universe), a CSV path, or None (the default
    synthetic market)."""
    if market is None:
        return (synthetic_market(**DEFAULT_MARKET),)
    if isinstance(market, (str, os.PathLike)):
        return (load_csv(market),)
    if isinstance(market, MarketData):
        return (market,)
    if isinstance(market, (list, tuple)) and market and all(
            isinstance(m, MarketData) for m in market):
        return tuple(market)
    raise TypeError(f"market must be a MarketData, a non-empty sequence of them (a universe), a "
                    f"CSV path or None, got {type(market).__name__}")


def make_setup(markets: MarketData | Sequence[MarketData], config: EnvConfig = EnvConfig(),
               mode: str = "train") -> TradingSetup:
    """`config` applied to `markets` (one MarketData, or in mode "train" a universe) in `mode`;
    ValueError naming what does not fit (a market too short for the window and episode)."""
    if isinstance(markets, MarketData):
        markets = (markets,)
    markets = tuple(markets)
    if not markets or not all(isinstance(m, MarketData) for m in markets):
        raise TypeError(f"markets must be a MarketData or a non-empty sequence of them, got {markets!r:.80}")
    if not isinstance(config, EnvConfig):
        raise TypeError(f"config must be an EnvConfig, got {type(config).__name__}")
    if mode not in ("train", "eval"):
        raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
    if mode == "eval" and len(markets) != 1:
        raise ValueError(f"mode='eval' walks one market, got {len(markets)}; make one eval env "
                         "per market")
    window, episode_length = config.window, config.episode_length
    for one in markets:  # frames t-window+1..t all have a log return (bar 0 has none)
        if mode == "train":
            one.check_min_rows(window + episode_length + 1,
                               f"training with window={window} and episode_length={episode_length}")
        else:
            one.check_min_rows(window + 2, f"evaluation with window={window}")
    levels = np.asarray(config.positions, dtype=np.float64)  # [K]
    lengths = np.array([len(one) for one in markets], dtype=np.int64)  # [M]
    offsets = np.concatenate([[0], np.cumsum(lengths)])  # [M + 1]
    if len(markets) == 1:
        features = np.ascontiguousarray(markets[0].features)  # [T, F]: itself, read-only
    else:
        features = np.concatenate([one.features for one in markets])  # [T, F]
    step_returns = np.zeros(offsets[-1])  # [T]
    for one, begin, end in zip(markets, offsets[:-1], offsets[1:]):
        step_returns[begin:end - 1] = one.close[1:] / one.close[:-1] - 1.0
    first_steps = offsets[:-1] + window
    last_steps = offsets[1:] - 1
    starts_per_market = last_steps - episode_length - first_steps + 1  # [M]
    for array in (features, step_returns, levels, offsets, first_steps, last_steps):
        array.setflags(write=False)
    start_counts = np.concatenate([[0], np.cumsum(starts_per_market)])
    start_counts.setflags(write=False)
    return TradingSetup(
        markets=markets, config=config, mode=mode, positions=levels, features=features,
        step_returns=step_returns, offsets=offsets, first_steps=first_steps,
        last_steps=last_steps, start_counts=start_counts,
    )


class TradingEnv(gym.Env):
    """Single-instrument trading environment (gymnasium id "TradingEnv-v0").

    `market` is one MarketData (or a CSV path), or in mode="train" a sequence of them, a
    universe: each episode then draws a market and a start bar (seeded), so more markets
    bring more distinct experience instead of more passes over the same bars.
    Observation: float32 [window, NUM_FEATURES + 1]; row k is the frame of bar
    t - window + 1 + k: that bar's features then the position held at that bar (0 before the
    episode start). Action: Discrete(len(positions)), the target position. Reward: the step's
    log growth of the portfolio, less risk_aversion / 2 times its squared return
    (environments/envs/accounting.py; 0 by default).
    mode="train": a random start bar (from the reset seed), `episode_length` steps, then
    truncated=True. mode="eval": starts at the first valid bar and walks the whole market
    once; terminated=True at the last bar. info: portfolio_value, position (now held), cost
    (paid this step, in portfolio currency), traded (position changed), step_index (bar t,
    counted over the markets laid end to end), market_index (the episode's market).
    """

    metadata = {"render_modes": [], "observation_is_frame_window": True}

    def __init__(self, market: MarketData | Sequence[MarketData] | str | None = None,
                 window: int = 32,
                 positions: Sequence[float] = (-1.0, 0.0, 1.0), commission_bps: float = 1.0,
                 spread_bps: float = 1.0, borrow_bps_per_step: float = 0.4,
                 episode_length: int = 256, mode: str = "train", initial_value: float = 1.0,
                 risk_aversion: float = 0.0, render_mode: str | None = None):
        if render_mode is not None:
            raise ValueError(f"TradingEnv has no render modes, got render_mode={render_mode!r}")
        config = EnvConfig(window, positions, commission_bps, spread_bps,
                           borrow_bps_per_step, episode_length, initial_value, risk_aversion)
        self.setup = make_setup(as_markets(market), config, mode)
        setup = self.setup
        self.market = setup.market
        self.markets = setup.markets
        self.window = setup.window
        self.positions = tuple(float(p) for p in setup.positions)
        self.mode = setup.mode
        self.episode_length = setup.episode_length
        self.observation_space = gym.spaces.Box(
            -np.inf, np.inf, shape=(setup.window, NUM_FEATURES + 1), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(len(self.positions))
        # The features are read in place (shared, never copied per env). The episode's recent
        # frames (features + held position) are appended to a small ring, one row per step, so
        # an observation is one contiguous slice copy; compacted every _RING_STEPS steps.
        self._recent = np.zeros((setup.window + _RING_STEPS, NUM_FEATURES + 1),
                                dtype=np.float32)  # [window + _RING_STEPS, F + 1]
        self._recent_end = setup.window
        self._recent_size = len(self._recent)
        self._make_views()
        self._num_actions = len(self.positions)
        # cost fraction of moving from level i (K: the flat start) to level j, as python floats
        self._risk_aversion = setup.risk_aversion
        self._cost_rows = cost_table(setup.positions, setup.trade_cost_rate,
                                     setup.borrow_rate).tolist()  # [K + 1][K]
        self._level = self._num_actions  # index of the position held (K: the flat start)
        self._eval = setup.mode == "eval"
        self._t = setup.first_step
        self._end = setup.last_step
        self._position = 0.0
        self._value = setup.initial_value
        self._needs_reset = True
        self._market_index = 0

    @classmethod
    def from_config(cls, market: MarketData | Sequence[MarketData], config: EnvConfig,
                    mode: str = "eval") -> "TradingEnv":
        """The env of `config` on `market` (one market, or in mode "train" a universe)."""
        return cls(market, mode=mode, **dataclasses.asdict(config))

    def _make_views(self) -> None:
        row_type = np.dtype((np.void, self.setup.features.itemsize * NUM_FEATURES))
        self._feature_rows = self.setup.features.view(row_type)[:, 0]  # [T] records of F floats
        self._recent_rows = self._recent[:, :NUM_FEATURES].view(row_type)[:, 0]
        # windows[end] == recent[end - window : end]: the observation's views, made once
        # (slicing each step takes a third of the copy's time)
        window = self.setup.window
        self._recent_windows = [self._recent[max(end - window, 0):end]
                                for end in range(len(self._recent) + 1)]
        # [T] float64; indexing a memoryview gives a python float (python float maths), twice
        # as fast as ndarray.item
        self._step_returns = memoryview(self.setup.step_returns)

    def __getstate__(self):  # views must be rebuilt, not pickled as copies
        state = self.__dict__.copy()
        for name in ("_feature_rows", "_recent_rows", "_recent_windows", "_step_returns"):
            del state[name]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._make_views()

    @property
    def step_index(self) -> int:
        """Bar t (counted over the markets laid end to end) at which the next action is taken:
        the step_index of the last reset's or step's info."""
        return self._t

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        setup = self.setup
        if self.mode == "train":
            # One uniform draw per reset (TradingVectorEnv draws the same stream).
            market, start = setup.starts(np.array([self.np_random.random()]))
            self._market_index, start = int(market[0]), int(start[0])
            self._end = start + setup.episode_length
        else:
            start = setup.first_step
            self._end = setup.last_step
        self._t = start
        self._position = 0.0
        self._level = self._num_actions
        self._value = setup.initial_value
        self._needs_reset = False
        window = self.window
        self._recent[:window, :NUM_FEATURES] = setup.features[start - window + 1:start + 1]
        self._recent[:window, NUM_FEATURES] = 0.0  # no position before the episode starts
        self._recent_end = window
        obs = self._recent[:window].copy()  # [window, F + 1]
        info = {"portfolio_value": self._value, "position": 0.0, "cost": 0.0, "traded": False,
                "step_index": start, "market_index": self._market_index}
        return obs, info

    def step(self, action):
        if self._needs_reset:
            raise RuntimeError("TradingEnv.step called before reset() or after the episode ended")
        if not 0 <= action < self._num_actions:
            raise ValueError(f"action {action!r} is outside Discrete({self._num_actions})")
        target = self.positions[action]
        position = self._position
        t = self._t
        reward, self._value, cost, bankrupt = settle(
            self._value, target, self._step_returns[t], self._cost_rows[self._level][action],
            SCALAR, self._risk_aversion)
        self._level = action
        t += 1
        self._t = t
        self._position = target
        recent, end, window = self._recent, self._recent_end, self.window
        if end == self._recent_size:
            recent[:window - 1] = recent[end - window + 1:end]
            end = window - 1
        self._recent_rows[end] = self._feature_rows[t]  # bar t + 1's features, as one record
        recent[end, NUM_FEATURES] = target  # position held at bar t + 1
        end += 1
        self._recent_end = end
        obs = self._recent_windows[end].copy()  # [window, F + 1]
        terminated = bankrupt or (self._eval and t >= self._end)
        truncated = not terminated and t >= self._end
        if terminated or truncated:
            self._needs_reset = True
        info = {"portfolio_value": self._value, "position": target, "cost": cost,
                "traded": target != position, "step_index": t,
                "market_index": self._market_index}
        return obs, reward, terminated, truncated, info
