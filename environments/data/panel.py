"""Panels: several instruments on one calendar, the data of a portfolio.

A panel's calendar is the union of its instruments' bars. An instrument without a bar at a
timestamp (before its listing, after its delisting, on its own holidays) has a NaN close there:
it is not tradable, its features are 0 and its tradable flag is False in the observation.
Nothing is forward-filled. A position is held from bar t to bar t + 1 only where the instrument
has both bars (`can_hold`); elsewhere the env closes it at bar t's price.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from environments.data.features import FEATURE_NAMES, compute_features
from environments.data.market import MarketDataError, read_only


@dataclasses.dataclass(frozen=True, eq=False)
class PanelData:
    """N instruments' closes on one calendar of T bars (read-only arrays; `len(p)` is T).

    `extra`: a user's own numeric columns (float64 [T, N, E], NaN where an instrument has no
    bar), observation features after the computed ones, named by `extra_names`.
    """

    timestamps: np.ndarray  # datetime64[ns] [T], strictly increasing
    close: np.ndarray  # float64 [T, N]: > 0, NaN where the instrument has no bar
    names: tuple[str, ...]  # [N], distinct
    source: str = "arrays"
    extra: np.ndarray | None = None  # float64 [T, N, E]
    extra_names: tuple[str, ...] = ()
    features_: np.ndarray | None = dataclasses.field(default=None, repr=False)  # cached

    def __post_init__(self):
        timestamps = read_only(self.timestamps, "datetime64[ns]")
        close = read_only(self.close, np.float64)
        object.__setattr__(self, "timestamps", timestamps)
        object.__setattr__(self, "close", close)
        object.__setattr__(self, "names", tuple(str(name) for name in self.names))
        object.__setattr__(self, "extra_names", tuple(str(name) for name in self.extra_names))
        where = self.source
        if timestamps.ndim != 1 or close.shape != (len(timestamps), len(self.names)):
            raise MarketDataError(f"{where}: close has shape {close.shape}, expected [bars, "
                                  f"instruments] = [{len(timestamps)}, {len(self.names)}]")
        if len(set(self.names)) != len(self.names):
            twice = sorted({name for name in self.names if self.names.count(name) > 1})
            raise MarketDataError(f"{where}: instrument {twice[0]!r} appears twice; expected "
                                  "distinct instrument names")
        if np.isnat(timestamps).any() or (timestamps[1:] <= timestamps[:-1]).any():
            i = int(np.argmax(np.isnat(timestamps))) if np.isnat(timestamps).any() else \
                int(np.argmax(timestamps[1:] <= timestamps[:-1])) + 1
            raise MarketDataError(f"{where}: row index {i}: timestamp {timestamps[i]} is missing "
                                  "or not after the previous one; expected strictly increasing "
                                  "times")
        bad = ~np.isnan(close) & ~(np.isfinite(close) & (close > 0))
        if bad.any():
            t, i = np.argwhere(bad)[0]
            raise MarketDataError(f"{where}: row index {t}, instrument {self.names[i]!r}: close "
                                  f"is {close[t, i]}, expected a price > 0 (or no bar)")
        if self.extra is not None:
            extra = read_only(self.extra, np.float64)
            if extra.shape != close.shape + (len(self.extra_names),):
                raise MarketDataError(f"{where}: extra columns have shape {extra.shape}, expected "
                                      f"{close.shape + (len(self.extra_names),)}")
            object.__setattr__(self, "extra", extra)
        elif self.extra_names:
            raise MarketDataError(f"{where}: extra_names {self.extra_names} without extra columns")

    def __len__(self) -> int:
        return len(self.timestamps)

    @property
    def num_instruments(self) -> int:
        return len(self.names)

    @property
    def has_bar(self) -> np.ndarray:
        """bool [T, N]: the instrument has a bar (a price) at t."""
        return ~np.isnan(self.close)

    @property
    def can_hold(self) -> np.ndarray:
        """bool [T, N]: a position taken at bar t can be held to bar t + 1 (both bars exist);
        False on the last bar."""
        has_bar = self.has_bar
        held = np.zeros_like(has_bar)
        held[:-1] = has_bar[:-1] & has_bar[1:]
        return held

    @property
    def step_returns(self) -> np.ndarray:
        """float64 [T, N]: close[t + 1] / close[t] - 1 where `can_hold`, else 0."""
        returns = np.zeros(self.close.shape)
        hold = self.can_hold[:-1]
        returns[:-1][hold] = self.close[1:][hold] / self.close[:-1][hold] - 1.0
        return returns

    @property
    def feature_names(self) -> tuple[str, ...]:
        return FEATURE_NAMES + self.extra_names

    @property
    def features(self) -> np.ndarray:
        """float32 [T, N, F]: each instrument's features (environments.data.features, from its
        closes alone, over its own bars), then its extra columns; 0 where it has no bar.
        Computed once per panel; a part of a panel carries its parent's rows."""
        if self.features_ is None:
            features = np.zeros(self.close.shape + (len(self.feature_names),), np.float32)
            has_bar = self.has_bar
            for i in range(self.num_instruments):
                rows = np.flatnonzero(has_bar[:, i])
                if len(rows):
                    close = self.close[rows, i]
                    bars = _CloseOnly(close)
                    features[rows, i, :len(FEATURE_NAMES)] = compute_features(bars)
            if self.extra is not None:
                features[:, :, len(FEATURE_NAMES):] = np.where(has_bar[:, :, None], np.nan_to_num(
                    self.extra), 0.0)
            features.setflags(write=False)
            object.__setattr__(self, "features_", features)
        return self.features_

    def rows(self, begin: int, end: int) -> "PanelData":
        """Rows begin..end-1 as a new panel whose source names them; its features are this
        panel's on those rows (trailing windows reach back into earlier rows, never later)."""
        if not 0 <= begin < end <= len(self):
            raise ValueError(f"{self.source}: rows [{begin}:{end}] are not a non-empty range of "
                             f"its {len(self)} rows")
        index = slice(begin, end)
        return PanelData(self.timestamps[index], self.close[index], self.names,
                         f"{self.source}[{begin}:{end}]",
                         None if self.extra is None else self.extra[index], self.extra_names,
                         features_=self.features[index])

    def split(self, *fractions: float) -> tuple["PanelData", ...]:
        """Chronological parts of the common calendar, as MarketData.split: `split(0.6, 0.2)`
        is (train, validation, test); no bar is in two parts."""
        if not fractions or not all(0.0 < f < 1.0 for f in fractions) or sum(fractions) >= 1.0:
            raise ValueError(f"split fractions must each be in (0, 1) and sum to < 1, got "
                             f"{list(fractions)}")
        bounds = [0, *(int(round(len(self) * f)) for f in np.cumsum(fractions)), len(self)]
        if any(b <= a for a, b in zip(bounds, bounds[1:])):
            raise MarketDataError(f"{self.source}: {len(self)} rows cannot be split at fractions "
                                  f"{list(fractions)} (a part would be empty)")
        return tuple(self.rows(a, b) for a, b in zip(bounds, bounds[1:]))

    def check_instruments(self, min_bars: int, part: str) -> None:
        """Raises MarketDataError naming an instrument with fewer than `min_bars` bars here."""
        counts = self.has_bar.sum(axis=0)
        if (counts < min_bars).any():
            i = int(np.argmin(counts))
            raise MarketDataError(f"{self.source}: instrument {self.names[i]!r} has {counts[i]} "
                                  f"bars in the {part} part ({self.timestamps[0]} to "
                                  f"{self.timestamps[-1]}), expected at least {min_bars} (drop "
                                  "the instrument or move the split)")


class _CloseOnly:
    """What compute_features reads, from closes alone: high = low = close, no volume."""

    def __init__(self, close: np.ndarray):
        self.close = self.high = self.low = close
        self.volume = np.zeros_like(close)

    def __len__(self) -> int:
        return len(self.close)

