"""Timestamp formats of market CSV files and their parsing: ISO 8601 (with or without a UTC
offset), epoch seconds/ms/us/ns, common day/month/year forms, or an explicit strptime format.
Used by the row reader (csv_rows) and, for the formats it takes, the columnar reader."""

from __future__ import annotations

import datetime as dt
import re

import numpy as np

from environments.data.market import MarketDataError

# Tried in order when no `date_format` is given (ISO 8601 and epoch numbers are handled first).
# A file whose dates parse under two of these (e.g. 01/02/2020 as m/d or d/m) is rejected as
# ambiguous and must name its `date_format`.
COMMON_DATE_FORMATS = (
    "%Y/%m/%d", "%Y/%m/%d %H:%M", "%Y/%m/%d %H:%M:%S",
    "%Y.%m.%d", "%Y.%m.%d %H:%M", "%Y.%m.%d %H:%M:%S",
    "%Y%m%d", "%Y%m%d %H:%M", "%Y%m%d %H:%M:%S", "%Y%m%d %H%M%S",
    "%m/%d/%Y", "%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %I:%M %p",
    "%d/%m/%Y", "%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S",
    "%d.%m.%Y", "%d.%m.%Y %H:%M", "%d.%m.%Y %H:%M:%S",
    "%d-%m-%Y", "%d-%m-%Y %H:%M", "%d-%m-%Y %H:%M:%S",
    "%d-%b-%Y", "%d %b %Y", "%b %d, %Y",
)
ISO_RE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?$")  # no offset
ISO_TZ_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$")
EPOCH_RE = re.compile(r"^\d{9,19}$")
EPOCH_UNITS = {10: "s", 13: "ms", 16: "us", 19: "ns"}  # number of digits -> unit (9 digits: s)


def epoch_unit(text: str) -> str | None:
    """The unit ("s", "ms", "us" or "ns") of an epoch timestamp `text`, judged by its number
    of digits, or None when `text` is not one (a file's first row decides for all its rows)."""
    if not EPOCH_RE.match(text):
        return None
    return EPOCH_UNITS.get(len(text), "s" if len(text) <= 10 else None)


def parse_timestamps(stamps: list[str], row_numbers: np.ndarray, path: str,
                     date_format: str | None) -> np.ndarray:
    """datetime64[ns] [T] of the timestamp texts of a file's rows (`row_numbers`: their file
    rows, for errors). The format is `date_format` or the one the first row is in; a row that
    does not parse in it raises MarketDataError naming the file and the row."""
    if not stamps:
        return np.zeros(0, dtype="datetime64[ns]")
    for i, text in enumerate(stamps):
        if not text:
            raise MarketDataError(f"{path}: row {int(row_numbers[i])}: timestamp is empty")
    if date_format is not None:
        return _strptime_all(stamps, date_format, row_numbers, path, explicit=True)
    first = stamps[0]
    if ISO_RE.match(first):
        try:
            result = np.array(stamps).astype("datetime64[ns]")
            if not np.isnat(result).any():
                return result
        except ValueError:
            pass
        return _per_row(stamps, row_numbers, path, "ISO 8601 (YYYY-MM-DD[ HH:MM[:SS]])",
                        lambda s: np.datetime64(s, "ns") if ISO_RE.match(s) else None)
    if ISO_TZ_RE.match(first):
        def parse_aware(text):
            moment = dt.datetime.fromisoformat(text)
            moment = moment.astimezone(dt.timezone.utc).replace(tzinfo=None)
            return np.datetime64(moment, "ns")
        return _per_row(stamps, row_numbers, path, "ISO 8601 with a UTC offset", parse_aware)
    unit = epoch_unit(first)
    if unit is not None:
        def parse_epoch(text):
            if not text.isdigit():
                raise ValueError(text)
            return np.datetime64(int(text), unit).astype("datetime64[ns]")
        return _per_row(stamps, row_numbers, path, f"epoch {unit}", parse_epoch)
    candidates = []
    for fmt in COMMON_DATE_FORMATS:
        try:
            dt.datetime.strptime(first, fmt)
            candidates.append(fmt)
        except ValueError:
            continue
    if not candidates:
        raise MarketDataError(
            f"{path}: row {int(row_numbers[0])}: timestamp {first!r} is not in a recognised "
            "format; pass date_format (a datetime.strptime format such as '%d/%m/%Y %H:%M')"
        )
    parsed = {}
    for fmt in candidates:
        try:
            parsed[fmt] = _strptime_all(stamps, fmt, row_numbers, path, explicit=False)
        except MarketDataError as error:
            last_error = error
    if len(parsed) > 1:
        raise MarketDataError(
            f"{path}: timestamps such as {first!r} are ambiguous (they parse as each of "
            f"{sorted(parsed)}); pass date_format to say which"
        )
    if not parsed:
        raise last_error
    return next(iter(parsed.values()))


def _strptime_all(stamps, fmt, row_numbers, path, explicit):
    def parse(text):
        moment = dt.datetime.strptime(text, fmt)
        if moment.tzinfo is not None:
            moment = moment.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return np.datetime64(moment, "ns")
    what = f"date_format {fmt!r}" if explicit else f"the format {fmt!r} of the first row"
    return _per_row(stamps, row_numbers, path, what, parse)


def _per_row(stamps, row_numbers, path, expected, parse):
    result = np.empty(len(stamps), dtype="datetime64[ns]")
    for i, text in enumerate(stamps):
        try:
            value = parse(text)
        except (ValueError, OverflowError):
            value = None
        if value is None or np.isnat(value):
            raise MarketDataError(
                f"{path}: row {int(row_numbers[i])}: timestamp {text!r} does not parse as "
                f"{expected}; pass date_format if the file uses another format"
            )
        result[i] = value
    return result
