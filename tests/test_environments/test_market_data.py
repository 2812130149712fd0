"""Market data: CSV loading and its validation errors, synthetic markets, chronological split."""

import pathlib

import numpy as np
import pytest

from environments import (MarketData, MarketDataError, TradingEnv, load_csv, synthetic_market)
from tests.conftest import SHARED_DATA

HEADER = "Date,Open,High,Low,Close,Adj Close,Volume\n"
GOOD_ROWS = [
    "2020-01-02,10,11,9,10.5,10.4,100\n",
    "2020-01-03,10.5,12,10,11,10.9,200\n",
    "2020-01-06,11,11.5,10.5,11.2,11.1,150\n",
]


def write(tmp_path, text, name="bars.csv") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_loads_yahoo_style_csv(tmp_path):
    market = load_csv(write(tmp_path, HEADER + "".join(GOOD_ROWS)))
    assert len(market) == 3
    np.testing.assert_array_equal(market.close, [10.5, 11.0, 11.2])
    np.testing.assert_array_equal(market.volume, [100, 200, 150])
    assert market.timestamps[2] == np.datetime64("2020-01-06")
    assert market.timestamps.dtype == np.dtype("datetime64[ns]")
    assert market.source.endswith("bars.csv")
    with pytest.raises(ValueError):
        market.close[0] = 1.0  # read-only


def test_any_case_headers_optional_volume_and_separate_date_time(tmp_path):
    text = ("TIME,date,CLOSE,low,High,oPen,extra\n"
            "09:30,2020-01-02,10,9,11,10,x\n"
            "09:31,2020-01-02,10.2,9.5,10.5,10,y\n")
    market = load_csv(write(tmp_path, text))
    np.testing.assert_array_equal(market.volume, [0.0, 0.0])
    assert market.timestamps[1] == np.datetime64("2020-01-02T09:31")


@pytest.mark.parametrize("stamps, date_format, expected", [
    (["1577923200", "1578009600"], None, "2020-01-02"),  # epoch seconds
    (["1577923200000", "1578009600000"], None, "2020-01-02"),  # epoch milliseconds
    (["2020-01-02T00:00:00Z", "2020-01-03T00:00:00Z"], None, "2020-01-02"),
    (["2020/01/02", "2020/01/03"], None, "2020-01-02"),
    (["01/02/2020", "01/13/2020"], None, "2020-01-02"),  # only m/d/Y fits day 13
    (["02.01.2020 00:00", "03.01.2020 00:00"], "%d.%m.%Y %H:%M", "2020-01-02"),
])
def test_timestamp_formats(tmp_path, stamps, date_format, expected):
    text = "timestamp,open,high,low,close\n" + "".join(f"{s},1,1,1,1\n" for s in stamps)
    market = load_csv(write(tmp_path, text), date_format=date_format)
    assert market.timestamps[0] == np.datetime64(expected)


def test_ambiguous_dates_need_a_date_format(tmp_path):
    path = write(tmp_path, "date,open,high,low,close\n01/02/2020,1,1,1,1\n01/03/2020,1,1,1,1\n")
    with pytest.raises(MarketDataError, match="ambiguous.*date_format"):
        load_csv(path)
    assert load_csv(path, date_format="%d/%m/%Y").timestamps[1] == np.datetime64("2020-03-01")


@pytest.mark.parametrize("bad_row, message", [
    ("2020-01-07,11,x,10,11,11,1\n", r"row 5: column 'high' is 'x', expected a number"),
    ("2020-01-07,11,,10,11,11,1\n", r"row 5: column 'high' is '', expected a number"),
    ("2020-01-07,11,12,10,nan,11,1\n", r"row 5: column 'close' is nan, expected a finite"),
    ("2020-01-07,11,inf,10,11,11,1\n", r"row 5: column 'high' is inf, expected a finite"),
    ("2020-01-07,0,12,10,11,11,1\n", r"row 5: column 'open' is 0.0, expected a price > 0"),
    ("2020-01-07,11,12,-1,11,11,1\n", r"row 5: column 'low' is -1.0, expected a price > 0"),
    ("2020-01-07,11,12,10,11,11,-5\n", r"row 5: column 'volume' is -5.0, expected >= 0"),
    ("2020-01-07,11,9,10,11,11,1\n", r"row 5: high 9.0 is below low 10.0"),
    ("2020-01-06,11,12,10,11,11,1\n", r"row 5: timestamp 2020-01-06.* duplicates"),
    ("2020-01-03,11,12,10,11,11,1\n", r"row 5: timestamp 2020-01-03.* is earlier than"),
    ("2020-13-45,11,12,10,11,11,1\n", r"row 5: timestamp '2020-13-45' does not parse"),
    ("2020-01-07,11,12\n", r"row 5 has 3 fields, expected 7"),
])
def test_each_bad_value_names_file_and_row(tmp_path, bad_row, message):
    path = write(tmp_path, HEADER + "".join(GOOD_ROWS) + bad_row + "2020-01-08,11,12,10,11,11,1\n")
    with pytest.raises(MarketDataError, match=message) as error:
        load_csv(path)
    assert path in str(error.value)


def test_missing_columns_and_files(tmp_path):
    with pytest.raises(MarketDataError, match="no 'low' column"):
        load_csv(write(tmp_path, "date,open,high,close\n2020-01-02,1,1,1\n"))
    with pytest.raises(MarketDataError, match="no timestamp column"):
        load_csv(write(tmp_path, "day,open,high,low,close\n2020-01-02,1,1,1,1\n"))
    with pytest.raises(MarketDataError, match="no such file"):
        load_csv(tmp_path / "missing.csv")
    with pytest.raises(MarketDataError, match="empty"):
        load_csv(write(tmp_path, ""))


def test_too_few_rows(tmp_path):
    path = write(tmp_path, HEADER + "".join(GOOD_ROWS))
    with pytest.raises(MarketDataError, match=r"has 3 rows, but loading needs at least 5"):
        load_csv(path, min_rows=5)
    with pytest.raises(MarketDataError, match=r"bars.csv: has 3 rows.*window=4"):
        TradingEnv(load_csv(path), window=4, mode="eval")


@pytest.mark.parametrize("kind", ["gbm", "ou", "regime"])
def test_synthetic_markets_are_seeded_and_valid(kind):
    a, b = synthetic_market(kind, 500, seed=4), synthetic_market(kind, 500, seed=4)
    c = synthetic_market(kind, 500, seed=5)
    assert isinstance(a, MarketData) and len(a) == 500 and a.source == f"synthetic:{kind}(seed=4)"
    for name in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.close, c.close)
    assert (a.high >= np.maximum(a.open, a.close)).all()
    assert (a.low <= np.minimum(a.open, a.close)).all()


def test_ou_market_mean_reverts():
    market = synthetic_market("ou", 5000, seed=0, mean_price=50.0, mean_reversion=0.1)
    assert abs(np.log(market.close).mean() - np.log(50.0)) < 0.02


def test_split_is_chronological_without_overlap():
    market = synthetic_market("gbm", 100, seed=0)
    train, test = market.split(0.8)
    assert (len(train), len(test)) == (80, 20)
    assert train.timestamps[-1] < test.timestamps[0]
    np.testing.assert_array_equal(np.concatenate([train.close, test.close]), market.close)
    with pytest.raises(ValueError):
        market.split(1.0)


GOOGL = pathlib.Path(SHARED_DATA) / "STOCKS_GOOGL.csv"


@pytest.mark.skipif(not GOOGL.exists(), reason="shared market data not present")
def test_googl_csv_loads_and_runs_an_eval_episode():
    market = load_csv(GOOGL)
    assert len(market) > 2000 and market.timestamps[0] == np.datetime64("2009-05-22")
    _, test = market.split(0.8)
    env = TradingEnv(test, mode="eval")
    env.reset()
    steps, done = 0, False
    while not done:
        _, reward, terminated, truncated, info = env.step(2)  # long throughout
        done, steps = terminated or truncated, steps + 1
    assert steps == len(test) - 33 and np.isfinite(info["portfolio_value"])
    # long from the first tradable close (bar 32); the entry cost (2 bps) is paid at bar 32
    first_growth = test.close[33] / test.close[32] - 2e-4
    expected = first_growth * test.close[-1] / test.close[33]
    assert info["portfolio_value"] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("separator", [";", "\t", "|"])
def test_semicolon_tab_and_pipe_separated_files_load(tmp_path, separator):
    text = (HEADER + "".join(GOOD_ROWS)).replace(",", separator)
    market = load_csv(write(tmp_path, text))
    np.testing.assert_array_equal(market.close, [10.5, 11.0, 11.2])


@pytest.mark.parametrize("data, message", [
    (b"\x1f\x8b\x08\x00\x00\x00", "is gzip-compressed, not a text CSV file"),
    (b"PK\x03\x04\x14\x00", "is a zip archive (e.g. .xlsx), not a text CSV file"),
    (b"\xf7\x00\x01\x02binary", "holds a NUL byte at byte 1: a binary file"),
    ((HEADER + GOOD_ROWS[0]).encode() + "2020-01-03,10.5,12,10,11,10.9,200 \u00e9\n".encode("latin-1"),
     "row 3: byte 0xe9 at byte 109 is not UTF-8 text"),
    # a bad byte past the first 64 KiB the sniffer reads is still named by its row
    ((HEADER + GOOD_ROWS[0] * 3000).encode() + b"2020-01-03,10.5,12,10,11,10.9,200\xe9\n",
     "row 3002: byte 0xe9 is not UTF-8 text"),
])
def test_binary_and_non_utf8_files_name_the_file_and_what_they_look_like(tmp_path, data, message):
    path = tmp_path / "bars.csv"
    path.write_bytes(data)
    with pytest.raises(MarketDataError) as error:
        load_csv(path)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value), error.value
