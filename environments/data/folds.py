"""Walk-forward folds of one market: K folds, each a training, a validation and a test part
separated by an embargo, whose test parts follow each other in time without gap or overlap;
and the rows of a fold's parts as markets (the whole market's features, sliced).

Parts are ranges [begin, end) of *decision bars*: at the close of bar t a position is set that
earns close[t+1] / close[t] - 1, so a market of N bars has the N - 1 decision bars 0..N-2 and
a part [b, e) earns the returns from close[b] to close[e]. With D = N - 1, test bars L_t,
validation bars L_v, embargo E and K folds, fold k (0 = earliest) is
    test        = [D - (K - k) L_t,  D - (K - k - 1) L_t)
    validation  = [test.begin - E - L_v,  test.begin - E)
    train       = [0 or train.end - train_bars,  validation.begin - E)   (expanding or rolling)
so no decision bar is in two parts of a fold, E decision bars lie between parts, and the test
parts of folds 0..K-1 tile [D - K L_t, D) in time order. Default sizes: L_t = L_v =
(D - 2E) // (K + 4), so fold 0 trains on about 3 L_t bars (one fold is a 60/20/20 split).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from environments.data.market import MarketData, MarketDataError

FOLD_PARTS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class FoldSizes:
    """How a market is cut into walk-forward folds (sizes in decision bars)."""

    folds: int  # K >= 1
    test_bars: int = 0  # bars of each test part; 0: (D - 2 embargo) // (K + 4)
    validation_bars: int = 0  # 0: as many as a test part
    train_bars: int = 0  # 0: an expanding training window from bar 0; > 0: a rolling one
    embargo: int = 0  # decision bars between train and validation, validation and test

    def __post_init__(self):
        if not (isinstance(self.folds, int) and self.folds >= 1):
            raise ValueError(f"folds={self.folds!r}: expected an integer >= 1")
        for name in ("test_bars", "validation_bars", "train_bars", "embargo"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 0):
                raise ValueError(f"{name}={value!r}: expected an integer >= 0")

    @property
    def window_kind(self) -> str:
        return "rolling" if self.train_bars else "expanding"


@dataclasses.dataclass(frozen=True)
class Fold:
    """Fold `index` of a market: each part a range [begin, end) of decision bars."""

    index: int
    train: tuple[int, int]
    validation: tuple[int, int]
    test: tuple[int, int]

    def part(self, name: str) -> tuple[int, int]:
        if name not in FOLD_PARTS:
            raise ValueError(f"unknown part {name!r}, expected one of {FOLD_PARTS}")
        return getattr(self, name)


def walk_forward(num_bars: int, sizes: FoldSizes, where: str = "market") -> tuple[Fold, ...]:
    """The K folds of a market of `num_bars` bars, earliest first; MarketDataError naming
    `where` (the file) and the fewest bars these sizes need when the market is too short."""
    folds = _layout(num_bars, sizes)
    if folds is None:
        needed = num_bars + 1
        while _layout(needed, sizes) is None:  # the default sizes grow with the market
            needed += 1
        size = {name: getattr(sizes, name) or "default"
                for name in ("test_bars", "validation_bars")}
        raise MarketDataError(
            f"{where}: has {num_bars} bars, too few for {sizes.folds} walk-forward folds with "
            f"test_bars={size['test_bars']}, validation_bars={size['validation_bars']}, "
            f"embargo={sizes.embargo} and {'a rolling' if sizes.train_bars else 'an expanding'} "
            "training window"
            + (f" of {sizes.train_bars} bars" if sizes.train_bars else "")
            + f": needs at least {needed} bars (use fewer or smaller folds, or a longer market)")
    return folds


def _layout(num_bars: int, sizes: FoldSizes) -> tuple[Fold, ...] | None:
    """The folds (module docstring), or None when a part would be empty or start before 0."""
    last = num_bars - 1  # D: decision bars 0..D-1
    folds, embargo = sizes.folds, sizes.embargo
    test_bars = sizes.test_bars or (last - 2 * embargo) // (folds + 4)
    validation_bars = sizes.validation_bars or test_bars
    if test_bars < 1:
        return None
    result = []
    for index in range(folds):
        test_begin = last - (folds - index) * test_bars
        validation_end = test_begin - embargo
        train_end = validation_end - validation_bars - embargo
        train_begin = train_end - sizes.train_bars if sizes.train_bars else 0
        if train_begin < 0 or train_end <= train_begin:
            return None
        result.append(Fold(index, train=(train_begin, train_end),
                           validation=(validation_end - validation_bars, validation_end),
                           test=(test_begin, test_begin + test_bars)))
    return tuple(result)


def part_rows(market: MarketData, part: tuple[int, int], lookback: int) -> MarketData:
    """The rows an env of part [begin, end) walks: `lookback` bars of history before `begin`
    (as many as the market has), the part's bars, and bar `end` whose close ends the part's
    last return. An eval env with window == lookback then decides exactly at bars begin..end-1.
    """
    begin, end = part
    return market.rows(max(begin - lookback, 0), end + 1)


def fold_parts(market: MarketData, sizes: FoldSizes, fold: int,
               lookback: int = 0) -> tuple[MarketData, MarketData, MarketData]:
    """(train, validation, test) rows of fold `fold` of `market` (part_rows of each part);
    features are computed on the whole market first, then sliced."""
    folds = walk_forward(len(market), sizes, where=market.source)
    if not (isinstance(fold, int) and 0 <= fold < sizes.folds):
        raise ValueError(f"fold={fold!r}: expected an integer in [0, {sizes.folds}) "
                         f"(folds={sizes.folds})")
    market.features  # noqa: B018 - computed once on the whole market, then sliced
    chosen = folds[fold]
    return tuple(part_rows(market, chosen.part(name), lookback) for name in FOLD_PARTS)


def source_fold_sizes(source: Any) -> FoldSizes | None:
    """The FoldSizes of a source's walk-forward fields (MarketSource's, PanelSource's: folds,
    fold, lookback, fold_test_bars, fold_validation_bars, fold_train_bars, embargo), None for
    folds = 0 (the single split); ValueError naming a bad value."""
    folds, fold, lookback = source.folds, source.fold, source.lookback
    if folds == 0:
        return None
    if not (isinstance(folds, int) and folds > 0):
        raise ValueError(f"folds={folds!r}: expected an integer >= 0 (0: one split)")
    if not (isinstance(fold, int) and 0 <= fold < folds):
        raise ValueError(f"fold={fold!r}: expected an integer in [0, {folds}) "
                         f"(folds={folds}, 0 = the earliest)")
    if not (isinstance(lookback, int) and lookback >= 0):
        raise ValueError(f"lookback={lookback!r}: expected an integer >= 0")
    return FoldSizes(folds, test_bars=source.fold_test_bars,
                     validation_bars=source.fold_validation_bars,
                     train_bars=source.fold_train_bars, embargo=source.embargo)
