"""Panels from CSV files: a wide close-price CSV (a date column, then one price column per
instrument), or a folder of OHLCV CSV files (one instrument per file, read by load_csv) aligned
on the union of their timestamps. A bar an instrument lacks is NaN, never filled; every bad
input raises MarketDataError naming the file, the row as numbered in the file (header = row 1)
and the column. docs/data.md, "Panels", says what is accepted.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import logging
import os
import pathlib
from typing import Sequence

import numpy as np

from environments.data import data_cache
from environments.data.csv_loader import load_csv
from environments.data.csv_rows import TIMESTAMP_COLUMNS, read_header, sniff_text_csv
from environments.data.features import FEATURE_NAMES
from environments.data.market import PRICE_COLUMNS, MarketDataError
from environments.data.panel import PanelData
from environments.data.timestamps import ISO_RE, parse_timestamps

# Cells that mean "no bar" in a wide CSV: empty, or pyarrow's (and pandas') spellings of NaN
MISSING = frozenset(("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan",
                     "1.#IND", "1.#QNAN", "N/A", "NA", "NULL", "NaN", "n/a", "nan", "null"))
# Instruments whose median bar spacings differ more than this are of mixed frequencies
MAX_SPACING_RATIO = 3.0


def load_panel(path: str | os.PathLike, date_format: str | None = None, *,
               cache: bool | str | None = None,
               extra_columns: Sequence[str] | None = None) -> PanelData:
    """The panel at `path`: a wide close-price CSV file (read_wide_csv), or a folder of OHLCV
    CSV files (every *.csv) or a glob pattern matching them (read_csv_folder)."""
    path = os.fspath(path)
    if os.path.isfile(path):
        if extra_columns:
            raise MarketDataError(f"{path}: a wide close-price CSV has no extra columns; "
                                  f"extra_columns={list(extra_columns)} needs a folder of OHLCV "
                                  "files")
        return read_wide_csv(path, date_format, cache=cache)
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(glob.escape(path), "*.csv")))
        if not files:
            raise MarketDataError(f"{path}: no *.csv file in this folder; expected one OHLCV CSV "
                                  "file per instrument")
    elif glob.has_magic(path):
        files = sorted(name for name in glob.glob(path) if os.path.isfile(name))
        if not files:
            raise MarketDataError(f"{path}: no file matches this pattern")
    else:
        raise MarketDataError(f"{path}: no such file or folder; expected a wide close-price CSV "
                              "file, a folder of OHLCV CSV files or a glob pattern")
    return read_csv_folder(files, path, date_format, cache=cache, extra_columns=extra_columns)


# --- the wide close-price CSV ------------------------------------------------------------------

def read_wide_csv(path: str | os.PathLike, date_format: str | None = None, *,
                  cache: bool | str | None = None) -> PanelData:
    """A wide close-price CSV: row 1 is `Date,<name>,<name>,...` (the first column named date,
    time, datetime or timestamp, any case, or blank), then one row per timestamp, oldest first;
    an empty cell (or NA, NaN, null) is a bar the instrument lacks. Rows where no instrument
    has a price are not part of the calendar (the union of the instruments' bars) and are
    skipped. Timestamps as load_csv reads them (`date_format` otherwise).

    The checked closes and the features are cached as load_csv's bars are (`cache`: as
    load_csv's), so every process of a machine maps one copy."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MarketDataError(f"{path}: no such file")
    delimiter = sniff_text_csv(path)
    names = _wide_header(path, delimiter)
    # The cache file is named by the layout and date_format, and keyed also by this code's
    # version: a change to the panel code rebuilds the same file.
    variant = f"panel-wide:{date_format or ''}"
    cache_file = data_cache.cache_file(path, variant, cache)
    if cache_file is None:
        timestamps, close = _parse_wide(path, delimiter, names, date_format)
        return PanelData(timestamps, close, names, path)

    def build() -> dict[str, np.ndarray]:
        timestamps, close = _parse_wide(path, delimiter, names, date_format)
        panel = PanelData(timestamps, close, names, path)
        return {"timestamps": panel.timestamps, "close": panel.close, "features": panel.features}

    arrays = data_cache.load_or_build(cache_file, path, f"{variant}:{_code_version()}", build)
    return PanelData(arrays["timestamps"], arrays["close"], names, path,
                     features_=arrays["features"])


def _wide_header(path: str, delimiter: str) -> tuple[str, ...]:
    """The instrument names of row 1 (MarketDataError: no date column first, a blank or
    repeated name, or an OHLCV file)."""
    with open(path, newline="", encoding="utf-8-sig") as file:
        header = [name.strip() for name in next(csv.reader(file, delimiter=delimiter), [])]
    if len(header) < 2:
        raise MarketDataError(f"{path}: row 1 (header) has {len(header)} column(s), expected a "
                              "date column then one close-price column per instrument")
    lowered = [name.lower() for name in header]
    if all(name in lowered for name in PRICE_COLUMNS):
        raise MarketDataError(f"{path}: is an OHLCV file (one instrument); a panel is a wide "
                              "close-price CSV (Date,<instrument>,...) or a folder of OHLCV files")
    if lowered[0] not in TIMESTAMP_COLUMNS + ("",):
        raise MarketDataError(f"{path}: row 1 (header): column 1 is {header[0]!r}, expected the "
                              f"timestamp column (named one of {list(TIMESTAMP_COLUMNS)}, any "
                              "case, or blank) before the instruments' price columns")
    seen: dict[str, int] = {}
    for number, name in enumerate(header[1:], start=2):
        if not name:
            raise MarketDataError(f"{path}: row 1 (header): column {number} has no name, "
                                  "expected an instrument name")
        if name in seen:
            raise MarketDataError(f"{path}: row 1 (header): instrument {name!r} appears twice "
                                  f"(columns {seen[name]} and {number}); expected one column "
                                  "per instrument")
        seen[name] = number
    return tuple(header[1:])


def _parse_wide(path: str, delimiter: str, names: tuple[str, ...],
                date_format: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Checked (timestamps datetime64[ns] [T], close float64 [T, N]): pyarrow reads the file;
    a file it does not take is read row by row, which names the first bad row and column."""
    from environments.data import csv_columnar  # imports pyarrow: only when a CSV is parsed

    rows = csv_columnar.FileRowNumbers(path, delimiter)
    parsed = _read_wide_columnar(path, delimiter, len(names))
    if parsed is None:
        stamps, close, rows = _read_wide_rows(path, delimiter, names)
    else:
        stamps, close = parsed
    timestamps = _wide_timestamps(stamps, rows, path, date_format)
    where = lambda t: f"{path}: row {int(rows[t])}"  # noqa: E731
    bad = ~np.isnan(close) & ~(np.isfinite(close) & (close > 0))
    if bad.any():
        t, i = np.argwhere(bad)[0]
        raise MarketDataError(f"{where(t)}: column {i + 2} ({names[i]!r}) is {close[t, i]}, "
                              "expected a price > 0 (or an empty cell: no bar)")
    counts = (~np.isnan(close)).sum(axis=0)
    if (counts == 0).any():
        i = int(np.argmin(counts))
        raise MarketDataError(f"{path}: column {i + 2} ({names[i]!r}) has no price in any row; "
                              "expected at least one bar (remove the column)")
    if np.isnat(timestamps).any():
        raise MarketDataError(f"{where(int(np.argmax(np.isnat(timestamps))))}: timestamp is "
                              "missing")
    order = timestamps[1:] <= timestamps[:-1]
    if order.any():
        t = int(np.argmax(order)) + 1
        kind = "duplicates" if timestamps[t] == timestamps[t - 1] else "is earlier than"
        raise MarketDataError(f"{where(t)}: timestamp {timestamps[t]} {kind} the previous row's "
                              f"{timestamps[t - 1]}; rows must be in strictly increasing time "
                              "order (one row per timestamp, oldest first)")
    kept = ~np.isnan(close).all(axis=1)  # rows with no bar at all are not on the calendar
    timestamps, close = timestamps[kept], close[kept]
    check_frequencies([timestamps[~np.isnan(close[:, i])] for i in range(len(names))],
                      [f"column {i + 2} ({name!r})" for i, name in enumerate(names)], path)
    return timestamps, close


def _read_wide_columnar(path: str, delimiter: str, num_instruments: int):
    """(timestamp texts as a pyarrow string array [T], close float64 [T, N]) read by pyarrow,
    or None when it does not take the file (wrong field counts, text in a price cell, bytes
    that are not UTF-8)."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    from environments.data import csv_columnar

    columns = [f"column_{i}" for i in range(num_instruments + 1)]
    utf8, quoted = csv_columnar._scan(path)  # noqa: SLF001 - the same pass load_csv makes
    if not utf8:
        return None
    try:
        table = pa_csv.read_csv(
            path, read_options=pa_csv.ReadOptions(skip_rows=1, column_names=columns,
                                                  block_size=1 << 23),  # few chunks to join
            parse_options=pa_csv.ParseOptions(delimiter=delimiter, newlines_in_values=quoted),
            convert_options=pa_csv.ConvertOptions(
                column_types={columns[0]: pa.string()} | {name: pa.float64()
                                                          for name in columns[1:]},
                null_values=sorted(MISSING), strings_can_be_null=False))
    except (pa.ArrowException, OSError):
        return None
    by_instrument = np.empty((num_instruments, table.num_rows))  # [N, T]: rows filled whole
    for i, name in enumerate(columns[1:]):
        by_instrument[i] = csv_columnar._to_numpy(table[name])  # noqa: SLF001 - nulls: NaN
    return table[columns[0]], np.ascontiguousarray(by_instrument.T)  # [T], [T, N]


def _read_wide_rows(path: str, delimiter: str,
                    names: tuple[str, ...]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(timestamp texts, close [T, N], file row numbers [T]) read with the csv module; the first
    row with the wrong number of fields, or a cell that is not a number, raises."""
    from environments.data.csv_rows import _first_non_utf8_row

    with open(path, newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file, delimiter=delimiter)
        next(reader)  # the header
        try:
            records = [(reader.line_num, record) for record in reader
                       if record and not (len(record) == 1 and not record[0].strip())]
        except UnicodeDecodeError:
            raise _first_non_utf8_row(path) from None
    close = np.empty((len(records), len(names)))
    for t, (row, record) in enumerate(records):
        if len(record) != len(names) + 1:
            raise MarketDataError(f"{path}: row {row} has {len(record)} fields, expected "
                                  f"{len(names) + 1} as in the header")
        for i, text in enumerate(record[1:]):
            text = text.strip()
            try:
                close[t, i] = np.nan if text in MISSING else float(text)
            except ValueError:
                raise MarketDataError(f"{path}: row {row}: column {i + 2} ({names[i]!r}) is "
                                      f"{text!r}, expected a price (a number, or an empty cell "
                                      "for no bar)") from None
    return ([record[0].strip() for _, record in records], close,
            np.array([row for row, _ in records], dtype=np.int64))


def _wide_timestamps(stamps, rows, path: str, date_format: str | None) -> np.ndarray:
    """datetime64[ns] [T] of the timestamp texts (a list or a pyarrow string array): ISO 8601
    cast by pyarrow, anything else as load_csv's row reader parses it (naming a bad row)."""
    if not isinstance(stamps, list):
        import pyarrow as pa
        import pyarrow.compute as pc

        from environments.data import csv_columnar

        stamps = pc.utf8_trim_whitespace(stamps)
        first = stamps[0].as_py() if len(stamps) else ""
        if date_format is None and ISO_RE.match(first):
            try:
                return csv_columnar._to_numpy(pc.cast(stamps, pa.timestamp("ns")))  # noqa: SLF001
            except pa.ArrowException:
                pass  # the row reader names the row
        stamps = stamps.to_pylist()
    return parse_timestamps(stamps, rows, path, date_format)


# --- a folder of OHLCV CSV files ---------------------------------------------------------------

def read_csv_folder(files: Sequence[str], source: str, date_format: str | None = None, *,
                    cache: bool | str | None = None,
                    extra_columns: Sequence[str] | None = None) -> PanelData:
    """One instrument per OHLCV file (named by its file stem), each read and checked by load_csv
    (and its cache), aligned on the union of their timestamps. The features are each file's own
    (from its OHLCV bars, over its own bars), then its extra columns.

    Extra columns: the numeric columns of a file beyond its timestamp and OHLCV columns.
    `extra_columns=None` keeps those every file has (the intersection; a column only some files
    have is left out with a warning naming it and the files that lack it); a list of names
    requires each in every file (MarketDataError naming a file without one); () keeps none."""
    if not files:
        raise MarketDataError(f"{source}: no CSV file, expected one per instrument")
    names = [pathlib.Path(name).stem for name in files]
    for i, name in enumerate(names):
        if names.index(name) != i:
            first = files[names.index(name)]
            raise MarketDataError(f"{source}: instrument {name!r} is both {first} and {files[i]};"
                                  " expected one file per instrument name")
    markets = [load_csv(name, date_format, cache=cache) for name in files]
    found = [_extra_columns(name) for name in files]  # [N] of {column: values [T_i]}
    chosen = _choose_extras(files, found, extra_columns, source)
    calendar = np.unique(np.concatenate([market.timestamps for market in markets]))  # [T]
    shape = (len(calendar), len(files))
    close = np.full(shape, np.nan)
    extra = np.full(shape + (len(chosen),), np.nan) if chosen else None  # [T, N, E]
    features = np.zeros(shape + (len(FEATURE_NAMES) + len(chosen),), np.float32)  # [T, N, F]
    for i, (market, columns) in enumerate(zip(markets, found)):
        rows = np.searchsorted(calendar, market.timestamps)
        close[rows, i] = market.close
        features[rows, i, :len(FEATURE_NAMES)] = market.features
        for e, column in enumerate(chosen):
            extra[rows, i, e] = columns[column]
            features[rows, i, len(FEATURE_NAMES) + e] = columns[column]
    check_frequencies([market.timestamps for market in markets], list(files), source)
    return PanelData(calendar, close, tuple(names), source, extra, tuple(chosen),
                     features_=features)


def _extra_columns(path: str) -> dict[str, np.ndarray]:
    """{name: float64 [T]} of the file's numeric columns beyond the timestamp and OHLCV ones.
    A column of text (e.g. a ticker symbol) is not one; a column whose first cell is a number
    must be numbers throughout (MarketDataError naming the row and column otherwise)."""
    delimiter = sniff_text_csv(path)
    layout = read_header(path, delimiter)
    used = set(layout.price_index + layout.time_index + [layout.volume_index])
    wanted = {}  # column index -> name
    for index, name in enumerate(layout.header):
        name = name.strip()
        if index in used or not name:
            continue
        if name in wanted.values():
            raise MarketDataError(f"{path}: row 1 (header): column {name!r} appears twice; "
                                  "expected distinct column names")
        wanted[index] = name
    if not wanted:
        return {}
    with open(path, newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file, delimiter=delimiter)
        next(reader)  # the header
        records = [(reader.line_num, record) for record in reader
                   if record and not (len(record) == 1 and not record[0].strip())]
    columns = {}
    for index, name in wanted.items():
        cells = [record[index].strip() if index < len(record) else "" for _, record in records]
        if not cells or not _is_number(cells[0]):
            continue  # a text column, ignored as load_csv ignores it
        try:
            values = np.array(cells, dtype=np.float64)
        except ValueError:
            values = None
        if values is None or not np.isfinite(values).all():
            t = next(t for t, text in enumerate(cells)
                     if not (_is_number(text) and np.isfinite(float(text))))
            raise MarketDataError(f"{path}: row {records[t][0]}: column {name!r} is "
                                  f"{cells[t]!r}, expected a finite number (an extra column's "
                                  "first row is a number, so every row must be)")
        columns[name] = values
    return columns


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _choose_extras(files: Sequence[str], found: list[dict[str, np.ndarray]],
                   extra_columns: Sequence[str] | None, source: str) -> list[str]:
    """The extra columns of the panel, in the first file's order (module docstring)."""
    if extra_columns is not None:
        for path, columns in zip(files, found):
            for name in extra_columns:
                if name not in columns:
                    raise MarketDataError(f"{path}: has no numeric column {name!r}; "
                                          f"extra_columns={list(extra_columns)} needs it in "
                                          f"every file (found {sorted(columns)})")
        return list(extra_columns)
    everywhere = [name for name in found[0] if all(name in columns for columns in found)]
    for name in sorted({name for columns in found for name in columns} - set(everywhere)):
        lacking = [path for path, columns in zip(files, found) if name not in columns]
        logging.warning("%s: extra column %r is left out of the panel: %d of %d files lack it "
                        "(e.g. %s); pass extra_columns to require it", source, name,
                        len(lacking), len(files), lacking[0])
    return everywhere


# --- checks shared by both layouts -------------------------------------------------------------

def check_frequencies(timestamps: Sequence[np.ndarray], labels: Sequence[str],
                      where: str) -> None:
    """MarketDataError when two instruments' median bar spacings (over their own bars) differ
    by more than MAX_SPACING_RATIO, e.g. daily bars beside hourly or weekly ones."""
    spacings = np.array([np.median(np.diff(stamps.astype(np.int64))) if len(stamps) > 2
                         else np.nan for stamps in timestamps])
    if np.isnan(spacings).all():
        return
    low, high = int(np.nanargmin(spacings)), int(np.nanargmax(spacings))
    if spacings[high] > MAX_SPACING_RATIO * spacings[low]:
        raise MarketDataError(f"{where}: mixed bar frequencies: {labels[low]} has a median "
                              f"spacing of {_spell(spacings[low])} between its bars, "
                              f"{labels[high]} {_spell(spacings[high])}; expected one frequency "
                              "for every instrument (resample them to one)")


def _spell(nanoseconds: float) -> str:
    """A spacing in the largest unit that divides it, e.g. "1 day", "5 minutes"."""
    for unit, size in (("day", 86_400), ("hour", 3600), ("minute", 60), ("second", 1)):
        count = nanoseconds / (size * 1e9)
        if count >= 1 and count == int(count):
            return f"{int(count)} {unit}{'s' if count != 1 else ''}"
    return f"{nanoseconds / 1e9:g} seconds"


_code_digest: str | None = None


def _code_version() -> str:
    """A hash of the code that turns a wide CSV into cached arrays: part of its cache key."""
    global _code_digest
    if _code_digest is None:
        digest = hashlib.blake2b(digest_size=8)
        for name in ("panel_csv.py", "panel.py", "features.py", "timestamps.py"):
            digest.update((pathlib.Path(__file__).parent / name).read_bytes())
        _code_digest = digest.hexdigest()
    return _code_digest
