"""load_csv: a market CSV file to a validated MarketData, through the data cache (one
memory-mapped copy per machine) and the columnar reader, or the row reader for the files the
columnar one does not take."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from environments.data import data_cache
from environments.data.csv_rows import read_header, read_rows, sniff_text_csv
from environments.data.market import MarketData, MarketDataError, check_columns


def load_csv(path: str | os.PathLike, date_format: str | None = None, min_rows: int = 2, *,
             cache: bool | str | None = None) -> MarketData:
    """Loads an OHLCV CSV file with a header row.

    Columns (any case, extra columns ignored): a timestamp column named date, time, datetime
    or timestamp (or separate date and time columns, joined); open, high, low, close; volume
    optional. Timestamps in ISO 8601, epoch seconds/ms/us/ns, or a common day/month/year form
    are recognised; pass `date_format` (a `datetime.strptime` format) otherwise. Fields may be
    separated by ',', ';', a tab or '|' (found from the header row). Nothing is
    dropped or filled: any bad value raises MarketDataError naming the file and the 1-based
    row as it appears in the file (the header is row 1).

    The validated arrays and the features are cached in a binary file that later loads (any
    process on the machine) memory-map read-only, sharing one copy (environments.data.data_cache).
    `cache`: None follows $APEX_DATA_CACHE (unset: on); True: on, beside the file when its
    folder is writable, else in the user cache folder; a folder: the cache goes there;
    False or "off": parse the file, write nothing.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MarketDataError(f"{path}: no such file")
    cache_file = data_cache.cache_file(path, date_format, cache)
    if cache_file is None:
        market = parse_csv(path, date_format)
    else:
        def parse() -> dict[str, np.ndarray]:
            market = parse_csv(path, date_format)
            market.features  # noqa: B018 - cached with the bars
            return {field.name: getattr(market, field.name)
                    for field in dataclasses.fields(MarketData) if field.name != "source"}

        arrays = data_cache.load_or_build(cache_file, path, date_format, build=parse)
        market = MarketData.from_checked(path, **arrays)
    market.check_min_rows(min_rows, "loading")
    return market


def parse_csv(path: str, date_format: str | None) -> MarketData:
    """The file's bars, validated (no cache). The columnar reader (pyarrow) reads files in the
    common formats; a file it does not take, or that has a bad row, is read row by row, which
    names the first bad row exactly as before the columnar reader existed."""
    from environments.data import csv_columnar  # imports pyarrow: only when a CSV is parsed

    delimiter = sniff_text_csv(path)
    layout = read_header(path, delimiter)
    columns = csv_columnar.read(path, delimiter, layout, date_format)
    if columns is None:
        fields, row_numbers = read_rows(path, delimiter, layout, date_format)
    else:
        fields, row_numbers = columns, csv_columnar.FileRowNumbers(path, delimiter)
    # Check with file row numbers before MarketData names rows by index.
    check_columns(fields, where=path, row_numbers=row_numbers)
    for values in fields.values():
        values.setflags(write=False)
    return MarketData.from_checked(path, **fields)
