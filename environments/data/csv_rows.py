"""The row-by-row CSV reader (csv module): the file's delimiter and text checks, its header
layout, and rows read one by one, so the first bad row is named exactly (file row numbers,
header = row 1). It reads every file; the columnar reader is the fast path for common ones."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np

from environments.data.market import PRICE_COLUMNS, MarketDataError
from environments.data.timestamps import parse_timestamps

TIMESTAMP_COLUMNS = ("datetime", "timestamp", "date", "time")  # header names, any case
DELIMITERS = (",", ";", "\t", "|")


@dataclasses.dataclass(frozen=True)
class CsvLayout:
    """Where the columns are: indices into a row's fields."""

    header: list[str]
    price_index: list[int]  # open, high, low, close
    time_index: list[int]  # one column, or date and time (joined with a space)
    volume_index: int | None

    @property
    def needed(self) -> int:
        """The largest index used: a row needs more fields than this."""
        return max(self.price_index + self.time_index
                   + ([self.volume_index] if self.volume_index is not None else []))


def sniff_text_csv(path: str, probe_bytes: int = 1 << 16) -> str:
    """The field delimiter of a text CSV, from its header row; MarketDataError for a file that
    is not UTF-8 text (binary, compressed, or another encoding), naming what it looks like."""
    with open(path, "rb") as file:
        head = file.read(probe_bytes)
    signatures = {b"\x1f\x8b": "gzip-compressed", b"PK\x03\x04": "a zip archive (e.g. .xlsx)",
                  b"PAR1": "a Parquet file", b"\xd0\xcf\x11\xe0": "an old Excel (.xls) file"}
    for magic, kind in signatures.items():
        if head.startswith(magic):
            raise MarketDataError(f"{path}: is {kind}, not a text CSV file; expected UTF-8 text "
                                  "with a header row")
    nul = head.find(b"\x00")
    if nul >= 0:
        raise MarketDataError(f"{path}: holds a NUL byte at byte {nul}: a binary "
                              "file (or UTF-16 text), not a UTF-8 CSV file")
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        if len(head) < probe_bytes or error.start < len(head) - 4:  # not a cut character
            raise _not_utf8(path, head[:error.start].count(b"\n") + 1,
                            f"byte 0x{head[error.start]:02x} at byte {error.start}") from None
        text = head[:error.start].decode("utf-8-sig")
    header = text.splitlines()[0] if text else ""
    counts = {delimiter: header.count(delimiter) for delimiter in DELIMITERS}
    best = max(DELIMITERS, key=lambda delimiter: counts[delimiter])
    return best if counts[best] > 0 else ","


def read_header(path: str, delimiter: str) -> CsvLayout:
    """The layout of the file's columns, from its header row (MarketDataError when a price or
    the timestamp column is missing)."""
    with open(path, newline="", encoding="utf-8-sig") as file:
        header = next(csv.reader(file, delimiter=delimiter), None)
    if header is None:
        raise MarketDataError(f"{path}: file is empty, expected a header row")
    columns = {name.strip().lower(): i for i, name in enumerate(header)}
    price_index = []
    for name in PRICE_COLUMNS:
        if name not in columns:
            raise MarketDataError(
                f"{path}: row 1 (header) has no {name!r} column (any case); found columns "
                f"{[h.strip() for h in header]}, expected {list(PRICE_COLUMNS)}, an optional "
                "'volume' and one of date/time/datetime/timestamp"
            )
        price_index.append(columns[name])
    if "date" in columns and "time" in columns and not (
            "datetime" in columns or "timestamp" in columns):
        time_index = [columns["date"], columns["time"]]
    else:
        time_index = [columns[n] for n in TIMESTAMP_COLUMNS if n in columns][:1]
    if not time_index:
        raise MarketDataError(
            f"{path}: row 1 (header) has no timestamp column; found "
            f"{[h.strip() for h in header]}, expected one named date, time, datetime or "
            "timestamp (any case)"
        )
    return CsvLayout(header, price_index, time_index, columns.get("volume"))


def read_rows(path: str, delimiter: str, layout: CsvLayout,
              date_format: str | None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Unchecked columns {timestamps, open, high, low, close, volume} (datetime64[ns] and
    float64 [T]) and each row's file row number (int64 [T]); a row that does not parse raises
    MarketDataError naming it."""
    header, volume_index = layout.header, layout.volume_index
    with open(path, newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file, delimiter=delimiter)
        next(reader)  # the header
        stamps, cells, rows = [], [], []
        try:
            records = [(reader.line_num, record) for record in reader]
        except UnicodeDecodeError:  # past the bytes sniff_text_csv looked at
            raise _first_non_utf8_row(path) from None
        for line_num, record in records:
            if not record or (len(record) == 1 and not record[0].strip()):
                continue  # blank line (e.g. at the end of the file)
            if len(record) <= layout.needed:
                raise MarketDataError(
                    f"{path}: row {line_num} has {len(record)} fields, expected "
                    f"{len(header)} as in the header"
                )
            stamps.append(" ".join(record[i].strip() for i in layout.time_index))
            cells.append([record[i] for i in layout.price_index]
                         + ([record[volume_index]] if volume_index is not None else []))
            rows.append(line_num)
    row_numbers = np.asarray(rows, dtype=np.int64)
    names = list(PRICE_COLUMNS) + (["volume"] if volume_index is not None else [])
    values = _parse_numbers(cells, names, row_numbers, path)  # [T, 4 or 5]
    volume = values[:, 4] if volume_index is not None else np.zeros(len(rows))
    timestamps = parse_timestamps(stamps, row_numbers, path, date_format)
    fields = dict(timestamps=timestamps, open=values[:, 0], high=values[:, 1],
                  low=values[:, 2], close=values[:, 3], volume=volume)
    return {name: np.ascontiguousarray(values) for name, values in fields.items()}, row_numbers


def _first_non_utf8_row(path: str) -> MarketDataError:
    with open(path, "rb") as file:
        for row, line in enumerate(file, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as error:
                return _not_utf8(path, row, f"byte 0x{line[error.start]:02x}")
    return MarketDataError(f"{path}: is not UTF-8 text")


def _not_utf8(path: str, row: int, what: str) -> MarketDataError:
    return MarketDataError(f"{path}: row {row}: {what} is not UTF-8 text; save the file as UTF-8 "
                           "(e.g. from Latin-1: iconv -f latin1 -t utf-8)")


def _parse_numbers(cells: list[list[str]], names: list[str], row_numbers: np.ndarray,
                   path: str) -> np.ndarray:
    try:
        return np.array(cells, dtype=np.float64).reshape(len(cells), len(names))
    except ValueError:
        pass  # find the offending cell to name it
    for i, record in enumerate(cells):
        for name, text in zip(names, record):
            try:
                float(text)
            except ValueError:
                raise MarketDataError(
                    f"{path}: row {int(row_numbers[i])}: column {name!r} is {text!r}, expected "
                    "a number"
                ) from None
    raise AssertionError("unreachable: every cell parsed")
