"""The columnar (pyarrow) CSV reader reads the common formats to exactly what the row-by-row
reader reads, leaves every other file to it, and rows it found bad are named by file row."""

import numpy as np
import pytest

from environments import MarketDataError, load_csv
from environments.data import csv_columnar, csv_rows

HEADER = "Date,Open,High,Low,Close,Adj Close,Volume\n"
ROWS = ["2020-01-02,10,11,9,10.5,10.4,100\n", "2020-01-03,10.5,12,10,11,10.9,200\n",
        "2020-01-06,11,11.5,10.5,11.2,11.1,150\n"]


def both_readers(path):
    """(columnar columns or None, row reader columns) of the file at `path`."""
    delimiter = csv_rows.sniff_text_csv(str(path))
    layout = csv_rows.read_header(str(path), delimiter)
    columnar = csv_columnar.read(str(path), delimiter, layout, None)
    rows, _ = csv_rows.read_rows(str(path), delimiter, layout, None)
    return columnar, rows


@pytest.mark.parametrize("text", [
    HEADER + "".join(ROWS),
    (HEADER + "".join(ROWS)).replace(",", ";"),
    (HEADER + "".join(ROWS)).replace(",", "\t").replace("\n", "\r\n"),
    "\ufeff" + HEADER + ROWS[0] + "\n" + ROWS[1] + '2020-01-06,11,11.5,10.5,11.2,"11,1",150\n\n',
    "timestamp,open,high,low,close\n2020-01-02T09:30:00.25,1,2,0.5,1\n2020-01-02 09:31,1,2,0.5,1\n",
    "timestamp,open,high,low,close\n1577923200,1,2,0.5,1\n1577923260,1,2,0.5,1\n",
    "timestamp,open,high,low,close\n1577923200000,1,2,0.5,1\n1577923260000,1,2,0.5,1\n",
    "date,time,open,high,low,close,volume\n"
    "2020-01-02,09:30,1,2,0.5,1,7\n2020-01-02,09:31,1,2,1e-1,1,0\n",
    'date,open,high,low,close,note\n2020-01-02,1,2,0.5,1,"two\nlines"\n2020-01-03,1,2,.5,1,x\n',
], ids=["yahoo", "semicolon", "tab-crlf", "bom-blank-quoted", "iso-times", "epoch-s", "epoch-ms",
        "date-and-time", "quoted-line-break"])
def test_common_formats_read_columnar_to_the_same_arrays(tmp_path, text):
    path = tmp_path / "bars.csv"
    path.write_text(text, newline="")
    columnar, rows = both_readers(path)
    assert columnar is not None, "expected the columnar reader to take this file"
    for name, values in rows.items():
        assert columnar[name].dtype == values.dtype
        np.testing.assert_array_equal(columnar[name], values, err_msg=name)


@pytest.mark.parametrize("text", [
    "date,open,high,low,close\n01/13/2020,1,2,0.5,1\n01/14/2020,1,2,0.5,1\n",  # strptime
    "timestamp,open,high,low,close\n2020-01-02T09:30Z,1,2,0.5,1\n2020-01-02T09:31Z,1,2,0.5,1\n",
    "date,open,high,low,close\n2020-01-02 ,1,2,0.5,1\n2020-01-03,1,2,0.5,1\n",  # a space
    "date,open,high,low,close\n2020-01-02,1,2,0.5,1,extra\n2020-01-03,1,2,0.5,1\n",
    "date,open,high,low,close\n2020-01-02,1,2,0.5,1\n2020-01-03,1,2,NaN,1\n",  # null to pyarrow
    "date,open,high,low,close\n2020-01-02,1,2,0.5,1\n2020-01\n",  # too few fields
])
def test_other_files_are_left_to_the_row_reader(tmp_path, text):
    path = tmp_path / "bars.csv"
    path.write_text(text)
    delimiter = csv_rows.sniff_text_csv(str(path))
    layout = csv_rows.read_header(str(path), delimiter)
    assert csv_columnar.read(str(path), delimiter, layout, None) is None


def test_a_bad_byte_in_an_ignored_column_is_still_an_error(tmp_path):
    path = tmp_path / "bars.csv"  # past the first 64 KiB, which the delimiter sniffer reads
    rows = [f"{day},10,11,9,10.5,10.4,100\n" for day in np.arange(
        np.datetime64("2000-01-01"), np.datetime64("2000-01-01") + 3000)]
    path.write_bytes((HEADER + "".join(rows)).encode() + b"2010-01-03,10.5,12,10,11,10.9\xe9,2\n")
    with pytest.raises(MarketDataError, match=r"row 3002: byte 0xe9 is not UTF-8 text"):
        load_csv(path)


def test_a_bad_value_after_blank_lines_and_a_quoted_line_break_names_its_file_row(tmp_path):
    path = tmp_path / "bars.csv"
    path.write_text('date,open,high,low,close,note\n2020-01-02,1,2,0.5,1,"two\nlines"\n\n'
                    "2020-01-03,1,2,0.5,1,x\n2020-01-04,1,2,0.5,1,x\n\n2020-01-04,1,2,0.5,1,x\n")
    columnar, _ = both_readers(path)
    assert columnar is not None  # read columnar; the duplicate is found by the vectorized check
    with pytest.raises(MarketDataError, match=r"bars\.csv: row 8: timestamp 2020-01-04.* "
                                              r"duplicates the previous row's"):
        load_csv(path, cache=False)
