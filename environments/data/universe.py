"""Where a run's markets come from: one CSV market or a synthetic process, and its three-way
split into train / validation / test markets that share no bar and no path (one chronological
split, or fold `fold` of `folds` walk-forward folds: environments.data.folds).

A synthetic source is a *process*: `synthetic_paths` training paths, `validation_paths` and
`test_paths` held-out paths, each from its own seed, so more actors bring new experience
instead of more passes over the same bars. A CSV file is a universe of one market; a folder
of CSV files (or a glob pattern) is a universe of one market per file. Every file market is
split chronologically, each on its own.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import glob
import os

import numpy as np

from environments.data.csv_loader import load_csv
from environments.data.folds import Fold, FoldSizes, fold_parts, source_fold_sizes, walk_forward
from environments.data.market import MarketData
from environments.data.synthetic import synthetic_market

PARTS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class MarketSplits:
    """Markets of each part; every bar (and every synthetic path) is in exactly one part."""

    train: tuple[MarketData, ...]
    validation: tuple[MarketData, ...]
    test: tuple[MarketData, ...]

    def part(self, name: str) -> tuple[MarketData, ...]:
        if name not in PARTS:
            raise ValueError(f"unknown split {name!r}, expected one of {PARTS}")
        return getattr(self, name)


def path_seed(seed: int, part: str, index: int) -> int:
    """The seed of synthetic path `index` of `part`: distinct for every (seed, part, index)."""
    entropy = [int(seed) % 2**32, PARTS.index(part), int(index)]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


@dataclasses.dataclass(frozen=True)
class MarketSource:
    """A small, picklable description of a run's markets; each node loads them itself.

    Nodes get this rather than the arrays: Ray would otherwise put the arrays in its object
    store as constructor arguments of restartable actors. A CSV path must be readable where
    the nodes run (like the workdir). `load()` is cached per process, and each CSV file's
    arrays per machine (environments.data.data_cache: the nodes on a machine map one copy).
    """

    # "synthetic" (= synthetic:ou), "synthetic:<kind>", a CSV path, a folder of CSV files or a
    # glob pattern ("bars/*.csv"): each file is one market of the universe
    data: str = "synthetic"
    date_format: str | None = None
    synthetic_steps: int = 4096  # bars of each synthetic path
    synthetic_paths: int = 32  # training paths of a synthetic process
    validation_paths: int = 4
    test_paths: int = 8
    seed: int = 0
    train_fraction: float = 0.6  # CSV: chronological train / validation / test fractions, per file
    validation_fraction: float = 0.2
    # load_csv's data cache: None follows $APEX_DATA_CACHE (default: on), "off", or a folder
    cache: str | None = None
    # Walk-forward folds (environments.data.folds), cut in every file on its own (a synthetic
    # source: in one path of synthetic_steps bars from `seed`); 0 keeps the fraction split.
    folds: int = 0
    fold: int = 0  # the fold whose parts load() returns, 0 = earliest
    fold_test_bars: int = 0  # sizes in decision bars; 0: the default (environments.data.folds)
    fold_validation_bars: int = 0
    fold_train_bars: int = 0  # 0: an expanding training window; > 0: a rolling one
    embargo: int = 0  # decision bars between the parts of a fold
    lookback: int = 0  # history bars each part's rows carry before its first bar (the window)

    @property
    def is_synthetic(self) -> bool:
        return self.data == "synthetic" or self.data.startswith("synthetic:")

    @property
    def synthetic_kind(self) -> str:
        return self.data.partition(":")[2] or "ou"

    def files(self) -> list[str]:
        """The CSV files of a file source: the file itself, every *.csv of a folder, or the
        files a glob pattern matches (sorted); FileNotFoundError when there are none."""
        if os.path.isfile(self.data):
            return [self.data]
        if os.path.isdir(self.data):
            files = sorted(glob.glob(os.path.join(glob.escape(self.data), "*.csv")))
            what = "no *.csv file in this folder"
        elif glob.has_magic(self.data):
            files = sorted(path for path in glob.glob(self.data) if os.path.isfile(path))
            what = "no file matches this pattern"
        else:
            files = []
            what = ("no such file (expected 'synthetic[:kind]', a CSV path, a folder of CSV "
                    "files or a glob pattern)")
        if not files:
            raise FileNotFoundError(errno.ENOENT, what, self.data)
        return files

    @property
    def fold_sizes(self) -> FoldSizes | None:
        """The walk-forward sizes, None for the single split (ValueError on bad values)."""
        return source_fold_sizes(self)

    def whole_markets(self) -> tuple[MarketData, ...]:
        """The markets before they are split: one per file, or the one path a walk-forward
        synthetic source cuts into folds (a split synthetic source has none: ValueError)."""
        return _whole_markets(self)

    def walk_forward(self) -> tuple[tuple[Fold, ...], ...]:
        """The folds of each of whole_markets() (environments.data.folds.walk_forward)."""
        sizes = self.fold_sizes
        if sizes is None:
            raise ValueError("walk_forward() needs a source with folds >= 1")
        return tuple(walk_forward(len(market), sizes, where=market.source)
                     for market in self.whole_markets())

    def load(self) -> MarketSplits:
        """The markets of every part (MarketDataError / FileNotFoundError on bad data)."""
        return _load(self)

    def split(self, part: str) -> tuple[MarketData, ...]:
        return self.load().part(part)


@functools.lru_cache(maxsize=4)
def _whole_markets(source: MarketSource) -> tuple[MarketData, ...]:
    if source.is_synthetic:
        if source.folds == 0:
            raise ValueError("a synthetic source split into paths has no whole market; set "
                             "folds >= 1 to walk forward through one path")
        market = synthetic_market(kind=source.synthetic_kind, num_steps=source.synthetic_steps,
                                  seed=source.seed)
        return (dataclasses.replace(
            market, source=f"synthetic:{source.synthetic_kind}(seed={source.seed})"),)
    return tuple(load_csv(path, date_format=source.date_format, cache=source.cache)
                 for path in source.files())


@functools.lru_cache(maxsize=4)
def _load(source: MarketSource) -> MarketSplits:
    sizes = source.fold_sizes
    if sizes is not None:
        parts = [fold_parts(market, sizes, source.fold, source.lookback)
                 for market in source.whole_markets()]  # [M] of (train, validation, test)
        return MarketSplits(*(tuple(markets) for markets in zip(*parts)))
    if source.is_synthetic:
        counts = dict(train=source.synthetic_paths, validation=source.validation_paths,
                      test=source.test_paths)
        for part, count in counts.items():
            if count < 1:
                raise ValueError(f"a synthetic source needs at least one {part} path, got {count}")
        parts = {}
        for part, count in counts.items():
            markets = []
            for index in range(count):
                seed = path_seed(source.seed, part, index)
                market = synthetic_market(kind=source.synthetic_kind,
                                          num_steps=source.synthetic_steps, seed=seed)
                markets.append(dataclasses.replace(
                    market, source=f"synthetic:{source.synthetic_kind}/{part}/{index}(seed={seed})"))
            parts[part] = tuple(markets)
        return MarketSplits(**parts)
    parts: dict[str, list[MarketData]] = {part: [] for part in PARTS}
    for market in source.whole_markets():
        for part, rows in zip(PARTS, market.split(source.train_fraction,
                                                  source.validation_fraction)):
            parts[part].append(rows)
    return MarketSplits(**{part: tuple(markets) for part, markets in parts.items()})
