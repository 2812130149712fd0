"""TradingVectorEnv: B TradingEnv episodes on one market or a universe of markets, stepped
together with numpy arrays.

Same accounting, observations and episodes as TradingEnv (env i seeded with seed + i gives
the trajectory of a TradingEnv reset with that seed), with gymnasium 1.0 NEXT_STEP
autoreset: the step after an episode ends resets that env, ignores its action, and returns
its reset observation with reward 0 and terminated = truncated = False.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector.utils import batch_space

from environments.data.features import NUM_FEATURES
from environments.data.market import MarketData
from environments.envs.accounting import cost_table, settle
from environments.envs.config import EnvConfig
from environments.envs.trading import as_markets, make_setup

_UNIFORMS_PER_REFILL = 64  # start-bar uniforms drawn per env at a time (same stream as TradingEnv)
_RING_STEPS = 128  # steps between compactions of the recent-frames ring
_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}  # by itemsize
_INFO_KEYS = ("portfolio_value", "position", "cost", "traded", "step_index", "market_index")


class TradingVectorEnv(gym.vector.VectorEnv):
    """`num_envs` independent TradingEnv episodes; takes TradingEnv's keyword arguments.

    obs: float32 [B, window, NUM_FEATURES + 1]; actions: int [B]; rewards float64 [B].
    info: arrays [B] for portfolio_value, position, cost, traded, step_index, market_index (each
    with its gymnasium "_key" mask, all True).
    """

    metadata = {"render_modes": [], "observation_is_frame_window": True,
                "autoreset_mode": getattr(getattr(gym.vector, "AutoresetMode", None),
                                          "NEXT_STEP", "NextStep")}

    def __init__(self, market: MarketData | Sequence[MarketData] | str | None = None,
                 num_envs: int = 1, **env_kwargs):
        if not (isinstance(num_envs, (int, np.integer)) and num_envs >= 1):
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        if env_kwargs.get("render_mode") is not None:
            raise ValueError("TradingVectorEnv has no render modes")
        env_kwargs.pop("render_mode", None)
        mode = env_kwargs.pop("mode", "train")
        self.setup = setup = make_setup(as_markets(market), EnvConfig(**env_kwargs), mode)
        self.market = setup.market
        self.markets = setup.markets
        self.num_envs = int(num_envs)
        self.window = setup.window
        self.mode = setup.mode
        self.positions = tuple(float(p) for p in setup.positions)
        self.single_observation_space = gym.spaces.Box(
            -np.inf, np.inf, shape=(setup.window, NUM_FEATURES + 1), dtype=np.float32)
        self.single_action_space = gym.spaces.Discrete(len(setup.positions))
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        B = self.num_envs
        self._t = np.zeros(B, dtype=np.int64)  # current bar
        self._end = np.zeros(B, dtype=np.int64)  # bar at which the episode ends
        self._market_index = np.zeros(B, dtype=np.int64)  # the episode's market
        self._position = np.zeros(B)  # position held at the current bar
        self._value = np.full(B, setup.initial_value)
        # Each env's recent frames (features + held position), appended one row per step; the
        # observation is the last `window` rows, recent[:, end - window : end]. Compacted every
        # _RING_STEPS steps, so a step writes one frame per env and copies one block.
        self._recent = np.zeros((B, setup.window + _RING_STEPS, NUM_FEATURES + 1),
                                dtype=np.float32)  # [B, window + _RING_STEPS, F + 1]
        self._recent_end = setup.window
        self._make_views()
        # cost fraction of moving from the level at row i (K: the flat start) to level j
        self._cost_table = cost_table(setup.positions, setup.trade_cost_rate,
                                      setup.borrow_rate)  # [K + 1, K]
        self._num_levels = np.array(len(setup.positions), dtype=np.uint64)
        self._needs_reset = np.zeros(B, dtype=bool)
        all_true = np.ones(B, dtype=bool)
        all_true.setflags(write=False)
        self._info_masks = {"_" + key: all_true for key in _INFO_KEYS}
        self._generators: list[np.random.Generator] = []
        self._uniforms = np.zeros((B, _UNIFORMS_PER_REFILL))
        self._uniform_index = np.zeros(B, dtype=np.int64)
        self._reset_done = False

    @classmethod
    def from_config(cls, markets: MarketData | Sequence[MarketData], config: EnvConfig,
                    num_envs: int = 1, mode: str = "train") -> "TradingVectorEnv":
        """`num_envs` envs of `config` on `markets` (a universe in mode "train")."""
        return cls(markets, num_envs=num_envs, mode=mode, **dataclasses.asdict(config))

    def _make_views(self) -> None:
        # Views of the setup's features, which are shared (never copied per env).
        # windows[s] == features[s : s + window], [T - window + 1, window, F]; resets gather
        # from it.
        features = self.setup.features  # [T, F]
        self._windows = np.lib.stride_tricks.sliding_window_view(
            features, (self.window, NUM_FEATURES))[:, 0]
        row_type = np.dtype((np.void, features.itemsize * NUM_FEATURES))
        self._feature_rows = features.view(row_type)[:, 0]  # [T] records of F floats
        # [B, window + _RING_STEPS] records: the feature columns of the recent frames
        self._recent_rows = self._recent[..., :NUM_FEATURES].view(row_type)[..., 0]

    def __getstate__(self):  # views must be rebuilt, not pickled as copies
        state = self.__dict__.copy()
        for name in ("_windows", "_feature_rows", "_recent_rows"):
            del state[name]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._make_views()

    # -- randomness: env i draws one uniform per training reset from its own generator, in
    #    blocks, which is the same stream TradingEnv.np_random.random() gives one at a time.
    def _seed(self, seed: int | Sequence[int | None] | None) -> None:
        self._generators = env_generators(seed, self.num_envs)
        self._refill(np.arange(self.num_envs))

    def _refill(self, envs: np.ndarray) -> None:
        for i in envs:  # runs once per _UNIFORMS_PER_REFILL episodes of an env
            self._uniforms[i] = self._generators[i].random(_UNIFORMS_PER_REFILL)
        self._uniform_index[envs] = 0

    def _start_episodes(self, envs: np.ndarray) -> None:
        """Resets the envs with indices `envs` (state arrays are copied first: the arrays
        handed out in the last info must not change)."""
        setup = self.setup
        self._t = self._t.copy()
        self._end = self._end.copy()
        self._market_index = self._market_index.copy()
        self._position = self._position.copy()
        self._value = self._value.copy()
        if self.mode == "train":
            exhausted = envs[self._uniform_index[envs] >= _UNIFORMS_PER_REFILL]
            if len(exhausted):
                self._refill(exhausted)
            uniforms = self._uniforms[envs, self._uniform_index[envs]]
            self._uniform_index[envs] += 1
            market, start = setup.starts(uniforms)
            self._market_index[envs] = market
            self._t[envs] = start
            self._end[envs] = start + setup.episode_length
        else:
            self._t[envs] = setup.first_step
            self._end[envs] = setup.last_step
        self._position[envs] = 0.0
        self._value[envs] = setup.initial_value
        self._level_index[envs] = len(setup.positions)  # the flat start
        end = self._recent_end
        window = self._windows[self._t[envs] - (self.window - 1)]  # [n, window, F]
        self._recent[envs, end - self.window:end, :NUM_FEATURES] = window
        self._recent[envs, end - self.window:end, NUM_FEATURES] = 0.0  # no position yet

    def _observe(self) -> np.ndarray:
        end = self._recent_end
        return self._recent[:, end - self.window:end].copy()  # [B, window, F + 1]

    def _info(self, cost: np.ndarray, traded: np.ndarray) -> dict:
        # State arrays are replaced, never modified in place, once handed out here.
        info = {"portfolio_value": self._value, "position": self._position, "cost": cost,
                "traded": traded, "step_index": self._t, "market_index": self._market_index}
        info.update(self._info_masks)
        return info

    def reset(self, *, seed: int | Sequence[int | None] | None = None,
              options: dict | None = None):
        if seed is not None or not self._generators:
            self._seed(seed)
        self._recent_end = self.window
        self._level_index = np.zeros(self.num_envs, dtype=np.int64)  # row of the cost table
        self._start_episodes(np.arange(self.num_envs))
        self._needs_reset = np.zeros(self.num_envs, dtype=bool)
        self._reset_done = True
        B = self.num_envs
        return self._observe(), self._info(np.zeros(B), np.zeros(B, dtype=bool))

    def step(self, actions):
        if not self._reset_done:
            raise RuntimeError("TradingVectorEnv.step called before reset()")
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or actions.dtype.kind not in "iu":
            raise ValueError(f"actions must be integers of shape ({self.num_envs},), got "
                             f"{actions.dtype} {actions.shape}")
        setup = self.setup
        levels = setup.positions
        # Viewed as unsigned, a negative action is out of range too (compared with a 0-d array:
        # a python int costs numpy a scalar conversion per step).
        if np.count_nonzero(actions.view(_UNSIGNED[actions.itemsize]) >= self._num_levels):
            raise ValueError(f"actions must be in [0, {len(levels)}), got {actions}")
        target = levels[actions]  # [B]
        position = self._position
        cost_fraction = self._cost_table[self._level_index, actions]  # [B]
        self._level_index = actions.copy()
        reward, self._value, cost, bankrupt = settle(  # [B] each
            self._value, target, setup.step_returns[self._t], cost_fraction, np, setup.risk_aversion)
        any_bankrupt = np.count_nonzero(bankrupt)
        traded = target != position
        self._position = target
        self._t = self._t + 1
        if self._recent_end == self._recent.shape[1]:
            keep = self.window - 1
            self._recent[:, :keep] = self._recent[:, self._recent_end - keep:]
            self._recent_end = keep
        # Append this bar's frame per env: features moved as opaque records of F floats (much
        # faster than a float gather), then the held position written into the last column.
        # An env that ended at the last bar steps once more before its reset, past the end:
        # "clip" gives it the last bar's features, which its reset then overwrites.
        self._recent_rows[:, self._recent_end] = self._feature_rows.take(self._t, mode="clip")
        self._recent[:, self._recent_end, NUM_FEATURES] = target
        self._recent_end += 1
        if self.mode == "train":
            truncated = self._t >= self._end
            if any_bankrupt:
                truncated &= ~bankrupt
            terminated = bankrupt
        else:
            terminated = self._t >= self._end
            if any_bankrupt:
                terminated |= bankrupt
            truncated = np.zeros(self.num_envs, dtype=bool)
        if np.count_nonzero(self._needs_reset):  # NEXT_STEP autoreset of the envs that ended
            resetting = np.flatnonzero(self._needs_reset)
            self._start_episodes(resetting)
            reward[resetting] = 0.0
            terminated[resetting] = False
            truncated[resetting] = False
            cost[resetting] = 0.0
            traded[resetting] = False
        self._needs_reset = terminated | truncated
        return self._observe(), reward, terminated, truncated, self._info(cost, traded)

    def close_extras(self, **kwargs):
        pass


def env_generators(seed: int | Sequence[int | None] | None, num_envs: int) -> list[np.random.Generator]:
    """The random generators of `num_envs` vector envs: env i's from seed + i (gymnasium's
    np_random, as the single env reset with that seed has), or from one seed each of a list."""
    if seed is None or isinstance(seed, (int, np.integer)):
        seeds = [None if seed is None else int(seed) + i for i in range(num_envs)]
    else:
        seeds = list(seed)
        if len(seeds) != num_envs:
            raise ValueError(f"got {len(seeds)} seeds for {num_envs} envs")
    return [seeding.np_random(s)[0] for s in seeds]
