"""The market type: one instrument's OHLCV bars in time order (`MarketData`), validated once by
`check_columns`, then read-only; its features are computed on first use."""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from environments.data.features import compute_features

PRICE_COLUMNS = ("open", "high", "low", "close")
ARRAY_FIELDS = ("timestamps",) + PRICE_COLUMNS + ("volume",)  # the bars, without the features


class MarketDataError(ValueError):
    """Bad market data: the message names the file (or source), the row and the problem."""


@dataclasses.dataclass(frozen=True, eq=False)
class MarketData:
    """One instrument's bars in time order. Arrays are read-only; `len(m)` is the number of bars.

    `volume` is zeros when the source had none. `source` is the CSV path or e.g.
    "synthetic:ou(seed=0)", and is used in error messages.
    """

    timestamps: np.ndarray  # datetime64[ns] [T], strictly increasing
    open: np.ndarray  # float64 [T]
    high: np.ndarray  # float64 [T]
    low: np.ndarray  # float64 [T]
    close: np.ndarray  # float64 [T]
    volume: np.ndarray  # float64 [T], >= 0
    source: str = "arrays"
    # float32 [T, NUM_FEATURES] or None: computed on first use. Rows taken with a slice (and
    # so every split) carry the slice of their parent's features, so the features of a test
    # split are the whole market's features on those bars (the trailing windows reach back
    # into earlier splits: past bars only, never future ones).
    features_: np.ndarray | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self):
        timestamps = read_only(self.timestamps, "datetime64[ns]")
        object.__setattr__(self, "timestamps", timestamps)
        for name in PRICE_COLUMNS + ("volume",):
            values = read_only(getattr(self, name), np.float64)
            if values.shape != timestamps.shape or values.ndim != 1:
                raise MarketDataError(
                    f"{self.source}: column {name!r} has shape {values.shape}, expected "
                    f"{timestamps.shape} like the timestamps"
                )
            object.__setattr__(self, name, values)
        check_columns({name: getattr(self, name) for name in ARRAY_FIELDS}, where=self.source)
        if self.features_ is not None:
            features = read_only(self.features_, np.float32)
            if features.ndim != 2 or features.shape[0] != len(timestamps):
                raise MarketDataError(f"{self.source}: features have shape {features.shape}, "
                                      f"expected [{len(timestamps)}, num_features]")
            object.__setattr__(self, "features_", features)

    @classmethod
    def from_checked(cls, source: str, **arrays: np.ndarray) -> "MarketData":
        """A MarketData of arrays that already passed `check_columns` (rows of a checked
        market, a validated cache file): read-only arrays of the right dtypes, kept as they
        are (views, memory maps), not checked again."""
        market = object.__new__(cls)
        for field in dataclasses.fields(cls):
            value = arrays.get(field.name)
            if field.name == "source":
                value = source
            elif value is not None and value.flags.writeable:
                raise ValueError(f"{source}: {field.name} must be read-only")
            object.__setattr__(market, field.name, value)
        return market

    @property
    def features(self) -> np.ndarray:
        """float32 [T, NUM_FEATURES] (environments.data.features), computed once per market."""
        if self.features_ is None:
            features = compute_features(self)
            features.setflags(write=False)
            object.__setattr__(self, "features_", features)
        return self.features_

    def __len__(self) -> int:
        return len(self.timestamps)

    def __getitem__(self, index: slice) -> "MarketData":
        """Rows `index` (a slice) as a new MarketData with the same source."""
        if not isinstance(index, slice):
            raise TypeError(f"MarketData rows are taken with a slice, got {type(index).__name__}")
        return self._rows(index, self.source)

    def rows(self, begin: int, end: int) -> "MarketData":
        """Rows begin..end-1 as a new MarketData whose source names them, e.g.
        "prices.csv[2000:2600]"; its features are this market's on those rows."""
        if not 0 <= begin < end <= len(self):
            raise ValueError(f"{self.source}: rows [{begin}:{end}] are not a non-empty range of "
                             f"its {len(self)} rows")
        return self._rows(slice(begin, end), f"{self.source}[{begin}:{end}]")

    def _rows(self, index: slice, source: str) -> "MarketData":
        arrays = {name: getattr(self, name)[index] for name in ARRAY_FIELDS}  # views
        return MarketData.from_checked(source, **arrays, features_=self.features[index])

    def split(self, *fractions: float) -> tuple["MarketData", ...]:
        """Chronological split into len(fractions) + 1 parts: the first `fractions[0]` of the
        rows, the next `fractions[1]`, ..., and the rest. No row is in two parts.

        `split(0.8)` is (train, test); `split(0.6, 0.2)` is (train, validation, test). Each
        part's source names its rows, e.g. "prices.csv[2000:2600]". Features are computed on
        the whole market first (see `features`).
        """
        fractions = fractions or (0.8,)
        if not all(0.0 < f < 1.0 for f in fractions) or sum(fractions) >= 1.0:
            raise ValueError(f"split fractions must each be in (0, 1) and sum to < 1, got "
                             f"{list(fractions)}")
        boundaries = [0]
        for fraction in np.cumsum(fractions):
            boundaries.append(int(round(len(self) * fraction)))
        boundaries.append(len(self))
        if any(b <= a for a, b in zip(boundaries, boundaries[1:])):
            raise MarketDataError(
                f"{self.source}: {len(self)} rows cannot be split at fractions {list(fractions)} "
                "(a part would be empty)"
            )
        self.features  # noqa: B018 - computed once on the whole market, then sliced
        return tuple(self._rows(slice(a, b), f"{self.source}[{a}:{b}]")
                     for a, b in zip(boundaries, boundaries[1:]))

    def check_min_rows(self, min_rows: int, needed_for: str) -> None:
        """Raises MarketDataError when there are fewer than `min_rows` rows."""
        if len(self) < min_rows:
            raise MarketDataError(
                f"{self.source}: has {len(self)} rows, but {needed_for} needs at least "
                f"{min_rows} rows; use a longer file/split or a smaller window/episode_length"
            )


def read_only(values, dtype) -> np.ndarray:
    """`values` as a read-only array of `dtype`: an array that is already read-only (a row
    slice of another market, a memory-mapped cache) is kept as it is, anything else is copied."""
    if isinstance(values, np.ndarray) and values.dtype == dtype and not values.flags.writeable:
        return values
    values = np.array(values, dtype=dtype)
    values.setflags(write=False)
    return values


def _row_label(where: str, index: int, row_numbers) -> str:
    if row_numbers is None:
        return f"{where}: row index {index}"
    return f"{where}: row {int(row_numbers[index])}"


def check_columns(columns: Mapping[str, np.ndarray], where: str, row_numbers=None) -> None:
    """Vectorized data-quality checks of the bars {timestamps, open, high, low, close, volume}
    ([T] each); MarketDataError names the first offending row: `where` (a file or source) and
    `row_numbers[i]` (the file row of bar i; None: the bar's index)."""
    for name in PRICE_COLUMNS + ("volume",):
        values = columns[name]
        bad = ~np.isfinite(values)
        if bad.any():
            i = int(np.argmax(bad))
            raise MarketDataError(
                f"{_row_label(where, i, row_numbers)}: column {name!r} is {values[i]}, "
                "expected a finite number"
            )
        bad = values < 0 if name == "volume" else values <= 0
        if bad.any():
            i = int(np.argmax(bad))
            expected = ">= 0" if name == "volume" else "a price > 0"
            raise MarketDataError(
                f"{_row_label(where, i, row_numbers)}: column {name!r} is {values[i]}, "
                f"expected {expected}"
            )
    high, low = columns["high"], columns["low"]
    bad = high < low
    if bad.any():
        i = int(np.argmax(bad))
        raise MarketDataError(
            f"{_row_label(where, i, row_numbers)}: high {high[i]} is below low "
            f"{low[i]}, expected high >= low"
        )
    timestamps = columns["timestamps"]
    if np.isnat(timestamps).any():
        i = int(np.argmax(np.isnat(timestamps)))
        raise MarketDataError(f"{_row_label(where, i, row_numbers)}: timestamp is missing")
    bad = timestamps[1:] <= timestamps[:-1]
    if bad.any():
        i = int(np.argmax(bad)) + 1
        kind = "duplicates" if timestamps[i] == timestamps[i - 1] else "is earlier than"
        raise MarketDataError(
            f"{_row_label(where, i, row_numbers)}: timestamp {timestamps[i]} {kind} the "
            f"previous row's {timestamps[i - 1]}; rows must be in strictly increasing time "
            "order (sort the file oldest first and remove duplicate bars)"
        )
