"""The columnar CSV reader: pyarrow parses a file's needed columns into arrays (in C++, on all
cores), then load_csv runs its checks on them vectorized.

It takes files in the common formats: UTF-8, every data row with the header's number of
fields, numbers pyarrow reads (a subset of what numpy reads, to the same float), timestamps in
ISO 8601 without a UTC offset or epoch digits. For any other file it returns None and load_csv
reads the file row by row, which names the first bad row: so a file that does not parse here
gets the same result and the same error message as before this reader existed.
"""

from __future__ import annotations

import codecs
import csv

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from environments.data.csv_rows import CsvLayout
from environments.data.market import PRICE_COLUMNS
from environments.data.timestamps import ISO_RE, epoch_unit

_NS_PER_UNIT = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
_BLOCK_BYTES = 1 << 24


def read(path: str, delimiter: str, layout: CsvLayout,
         date_format: str | None) -> dict[str, np.ndarray] | None:
    """Unchecked columns {timestamps, open, high, low, close, volume} (datetime64[ns] and
    float64 [T]), or None when the file needs the row-by-row reader."""
    if date_format is not None:
        return None
    utf8, quoted = _scan(path)
    if not utf8:
        return None
    names = [f"column_{i}" for i in range(len(layout.header))]
    numbers = [names[i] for i in layout.price_index]
    if layout.volume_index is not None:
        numbers.append(names[layout.volume_index])
    times = [names[i] for i in layout.time_index]
    # One ISO 8601 column (judged by the first row, as the row reader judges it) is parsed to
    # timestamps by pyarrow while it reads; anything else is read as text and parsed after.
    iso = len(times) == 1 and bool(ISO_RE.match(_first_stamp(path, delimiter, layout)))
    types = {name: pa.float64() for name in numbers} | {
        name: pa.timestamp("ns") if iso else pa.string() for name in times}
    wanted = list(dict.fromkeys(numbers + times))
    try:
        table = pa_csv.read_csv(
            path,
            read_options=pa_csv.ReadOptions(skip_rows=1, column_names=names),
            # a quoted field may hold a line break: pyarrow must then not split blocks at any
            # line break (slower, so only for files with quotes)
            parse_options=pa_csv.ParseOptions(delimiter=delimiter, newlines_in_values=quoted),
            convert_options=pa_csv.ConvertOptions(column_types=types, include_columns=wanted),
        )
    except (pa.ArrowException, OSError):  # wrong field counts, text in a number column, ...
        return None
    if table.num_rows == 0 or any(table[name].null_count for name in numbers + times):
        return None  # empty cells are nulls here; the row reader names them
    timestamps = _timestamps([table[name] for name in times])
    if timestamps is None:
        return None
    columns = {"timestamps": timestamps}
    for column, name in zip(PRICE_COLUMNS + ("volume",), numbers):
        columns[column] = _to_numpy(table[name])  # [T] float64
    if layout.volume_index is None:
        columns["volume"] = np.zeros(table.num_rows)
    return columns


def _to_numpy(column: pa.ChunkedArray) -> np.ndarray:
    """One numpy array: the chunk itself when there is one, else the chunks concatenated
    (much faster than ChunkedArray.to_numpy for the ~100 chunks of a 100 MB file)."""
    chunks = [chunk.to_numpy(zero_copy_only=False) for chunk in column.chunks]
    return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)


def _timestamps(parts: list[pa.ChunkedArray]) -> np.ndarray | None:
    """datetime64[ns] [T] from the timestamp column (or the date and time columns joined with
    a space), or None unless the row reader would read every row the same way: ISO 8601
    when the first row matches ISO_RE (pyarrow parses a subset of the strings numpy parses,
    to the same instant), epoch digits in the unit of the first row's length otherwise."""
    if pa.types.is_timestamp(parts[0].type):  # parsed as ISO 8601 while reading
        return _to_numpy(parts[0])
    stamps = parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, " ")
    first = stamps[0].as_py()
    if ISO_RE.match(first):
        try:
            return _to_numpy(pc.cast(stamps, pa.timestamp("ns")))
        except pa.ArrowException:  # e.g. month 13, a space around the stamp
            return None
    unit = epoch_unit(first)
    if unit is not None:
        if not pc.all(pc.ascii_is_decimal(stamps)).as_py():
            return None
        try:
            counts = _to_numpy(pc.cast(stamps, pa.int64()))
        except pa.ArrowException:  # beyond int64
            return None
        per_unit = _NS_PER_UNIT[unit]
        if counts.max() > np.iinfo(np.int64).max // per_unit:
            return None
        return (counts * per_unit).view("datetime64[ns]")
    return None  # strptime formats and UTC offsets: the row reader


def _first_stamp(path: str, delimiter: str, layout: CsvLayout) -> str:
    """The timestamp field of the first data row, as it is in the file ("" when none)."""
    with open(path, newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file, delimiter=delimiter)
        next(reader)  # the header
        for record in reader:
            if record and not (len(record) == 1 and not record[0].strip()):
                index = layout.time_index[0]
                return record[index] if index < len(record) else ""
    return ""


def _scan(path: str) -> tuple[bool, bool]:
    """(whether the whole file is UTF-8, whether it holds a quote character): one pass over
    the bytes, ASCII blocks checked without decoding."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    quoted = False
    try:
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(_BLOCK_BYTES), b""):
                quoted = quoted or b'"' in block
                if not (block.isascii() and not decoder.getstate()[0]):
                    decoder.decode(block)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False, quoted
    return True, quoted


class FileRowNumbers:
    """Maps the index of a data row to its row number in the file (header = row 1, blank lines
    and quoted line breaks counted), by reading the file with the csv module as far as that
    row: done only to name a row that failed a check."""

    def __init__(self, path: str, delimiter: str):
        self.path, self.delimiter = path, delimiter

    def __getitem__(self, index: int) -> int:
        with open(self.path, newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file, delimiter=self.delimiter)
            next(reader)  # the header
            count = -1
            for record in reader:
                if not record or (len(record) == 1 and not record[0].strip()):
                    continue  # blank, as the row reader skips it
                count += 1
                if count == index:
                    return reader.line_num
        raise IndexError(f"{self.path} has no data row {index}")
