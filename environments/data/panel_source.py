"""Where a portfolio run's panel comes from (`--data=panel:<wide.csv or folder>` or
`--data=synthetic:panel`) and its train / validation / test parts on the common calendar: one
chronological split, or fold `fold` of `folds` walk-forward folds (environments.data.folds),
as MarketSource cuts one market. Each part is one PanelData; no decision bar is in two parts.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util

from environments.data.folds import Fold, FoldSizes, part_rows, source_fold_sizes, walk_forward
from environments.data.market import MarketDataError
from environments.data.panel import PanelData
from environments.data.panel_csv import load_panel

PARTS = ("train", "validation", "test")
PANEL_PREFIX = "panel:"
SYNTHETIC_PANEL = "synthetic:panel"


def is_panel_source(data: str) -> bool:
    """Whether a `--data` value names a panel: "panel:<path>" or "synthetic:panel"."""
    return data.startswith(PANEL_PREFIX) or data == SYNTHETIC_PANEL


def panel_path(data: str) -> str:
    """The path of "panel:<path>" ("synthetic:panel" as it is); ValueError for anything else."""
    if data == SYNTHETIC_PANEL:
        return data
    path = data[len(PANEL_PREFIX):].strip() if data.startswith(PANEL_PREFIX) else ""
    if not path:
        raise ValueError(f"--data={data!r}: expected 'panel:<wide close-price CSV, folder of "
                         "OHLCV CSV files or glob pattern>' or 'synthetic:panel'")
    return path


@dataclasses.dataclass(frozen=True)
class PanelSplits:
    """The panel's parts on its calendar; every decision bar is in at most one part."""

    train: PanelData
    validation: PanelData
    test: PanelData

    def part(self, name: str) -> PanelData:
        if name not in PARTS:
            raise ValueError(f"unknown split {name!r}, expected one of {PARTS}")
        return getattr(self, name)


@dataclasses.dataclass(frozen=True)
class PanelSource:
    """A small, picklable description of a run's panel; each process loads it itself (as
    MarketSource: the arrays never travel as arguments). `load()` is cached per process, and
    a wide CSV's arrays per machine (the data cache)."""

    # a wide close-price CSV, a folder of OHLCV CSV files, a glob pattern, or "synthetic:panel";
    # panel_path() turns a `--data=panel:<path>` value into this
    path: str = SYNTHETIC_PANEL
    train_fraction: float = 0.6  # chronological train / validation / test fractions
    validation_fraction: float = 0.2
    date_format: str | None = None
    cache: str | None = None  # the data cache: None follows $APEX_DATA_CACHE, "off", a folder
    # the extra columns of a folder's files: None keeps those every file has, () none
    extra_columns: tuple[str, ...] | None = None
    synthetic_instruments: int = 10  # "synthetic:panel": instruments, bars and seed
    synthetic_steps: int = 4096
    seed: int = 0
    # Walk-forward folds on the panel's calendar; 0 keeps the fraction split (as MarketSource)
    folds: int = 0
    fold: int = 0  # the fold whose parts load() returns, 0 = earliest
    fold_test_bars: int = 0  # sizes in decision bars; 0: the default (environments.data.folds)
    fold_validation_bars: int = 0
    fold_train_bars: int = 0  # 0: an expanding training window; > 0: a rolling one
    embargo: int = 0  # decision bars between the parts of a fold
    lookback: int = 0  # folds: history bars each part's rows carry before its first bar
    min_instrument_bars: int = 1  # every instrument needs this many bars in every part

    def __post_init__(self):
        if self.extra_columns is not None:  # a tuple: the source is a cache key
            object.__setattr__(self, "extra_columns", tuple(self.extra_columns))

    @property
    def is_synthetic(self) -> bool:
        return self.path == SYNTHETIC_PANEL

    @property
    def fold_sizes(self) -> FoldSizes | None:
        """The walk-forward sizes, None for the single split (ValueError on bad values)."""
        return source_fold_sizes(self)

    def whole_panel(self) -> PanelData:
        """The panel before it is split (its features computed on all of it)."""
        return _whole_panel(self)

    def walk_forward(self) -> tuple[Fold, ...]:
        """The folds of whole_panel() (environments.data.folds.walk_forward)."""
        sizes = self.fold_sizes
        if sizes is None:
            raise ValueError("walk_forward() needs a source with folds >= 1")
        panel = self.whole_panel()
        return walk_forward(len(panel), sizes, where=panel.source)

    def load(self) -> PanelSplits:
        """The panel's parts (MarketDataError on bad data, naming the file, row or column)."""
        return _load(self)

    def split(self, part: str) -> PanelData:
        return self.load().part(part)


@functools.lru_cache(maxsize=4)
def _whole_panel(source: PanelSource) -> PanelData:
    if not source.is_synthetic:
        return load_panel(source.path, source.date_format, cache=source.cache,
                          extra_columns=source.extra_columns)
    if importlib.util.find_spec("environments.data.synthetic_panel") is None:
        raise MarketDataError(f"{SYNTHETIC_PANEL}: synthetic panels are not available in this "
                              "version (environments/data/synthetic_panel.py is missing)")
    from environments.data.synthetic_panel import synthetic_panel

    panel, _ = synthetic_panel(num_instruments=source.synthetic_instruments,
                               num_steps=source.synthetic_steps, seed=source.seed)
    return panel


@functools.lru_cache(maxsize=4)
def _load(source: PanelSource) -> PanelSplits:
    panel = source.whole_panel()
    panel.features  # noqa: B018 - computed once on the whole panel, then sliced
    sizes = source.fold_sizes
    if sizes is None:
        parts = panel.split(source.train_fraction, source.validation_fraction)
        own_rows = parts
    else:
        fold = walk_forward(len(panel), sizes, where=panel.source)[source.fold]
        # the part's own bars (and the bar closing its last return), then with the history
        own_rows = [part_rows(panel, fold.part(name), 0) for name in PARTS]
        parts = [part_rows(panel, fold.part(name), source.lookback) for name in PARTS]
    for name, rows in zip(PARTS, own_rows):
        rows.check_instruments(source.min_instrument_bars, name)
    return PanelSplits(*parts)
