"""The settings every trading env is built from, typed and checked once: `EnvConfig`.

TradingEnv, TradingVectorEnv and JaxTradingEnv all take one (through `make_setup`), so the
envs of every split and every launch type of a run are built from the same value.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import numpy as np


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    """What a trading env is, apart from its market and its mode (train or eval).

    Costs follow environments/envs/accounting.py: trade_cost_rate = (commission_bps +
    spread_bps) / 1e4 per unit of traded notional, borrow_rate = borrow_bps_per_step / 1e4 per
    step and unit of short notional. Every value is checked when the config is made: a bad one
    raises ValueError naming the setting, the value and what was expected.
    """

    window: int = 32  # bars in one observation
    positions: tuple[float, ...] = (-1.0, 0.0, 1.0)  # the target position of each action
    commission_bps: float = 1.0  # per unit of traded notional
    spread_bps: float = 1.0  # half-spread paid per unit of traded notional
    borrow_bps_per_step: float = 0.4  # holding a short position, per step
    episode_length: int = 256  # steps of a training episode
    initial_value: float = 1.0  # portfolio value at an episode's start
    risk_aversion: float = 0.0  # kappa of the reward's variance penalty (accounting.py)

    def __post_init__(self):
        if not (_integer(self.window) and self.window >= 1):
            raise ValueError(f"window must be an integer >= 1, got {self.window!r}")
        try:
            levels = np.asarray(self.positions, dtype=np.float64)
        except (TypeError, ValueError):
            levels = np.array([np.nan])
        if levels.ndim != 1 or len(levels) < 1 or not np.isfinite(levels).all():
            raise ValueError(f"positions must be a non-empty list of finite numbers, got {self.positions!r}")
        if len(np.unique(levels)) != len(levels):
            raise ValueError(f"positions must be distinct, got {self.positions!r}")
        for name in ("commission_bps", "spread_bps", "borrow_bps_per_step", "risk_aversion"):
            value = getattr(self, name)
            if not (_number(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not (_integer(self.episode_length) and self.episode_length >= 1):
            raise ValueError(f"episode_length must be an integer >= 1, got {self.episode_length!r}")
        if not (_number(self.initial_value) and self.initial_value > 0):
            raise ValueError(f"initial_value must be a finite number > 0, got {self.initial_value!r}")
        # Plain Python values, so that two equal configs compare, hash and print alike.
        for name, value in (("window", int(self.window)), ("episode_length", int(self.episode_length)),
                            ("positions", tuple(float(p) for p in levels))):
            object.__setattr__(self, name, value)
        for name in ("commission_bps", "spread_bps", "borrow_bps_per_step", "risk_aversion", "initial_value"):
            object.__setattr__(self, name, float(getattr(self, name)))

    @property
    def trade_cost_rate(self) -> float:
        """(commission + half-spread) per unit of traded notional."""
        return (self.commission_bps + self.spread_bps) / 1e4

    @property
    def borrow_rate(self) -> float:
        """Per step, per unit of short notional."""
        return self.borrow_bps_per_step / 1e4

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready settings (positions as a list): summary.json's "env"."""
        return {**dataclasses.asdict(self), "positions": list(self.positions)}

    @classmethod
    def from_dict(cls, settings: Mapping[str, Any]) -> "EnvConfig":
        """The config of `as_dict`'s settings (e.g. a run's summary.json "env")."""
        return cls(**{**settings, "positions": tuple(settings.get("positions", cls.positions))})


def _integer(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
            and math.isfinite(value))
