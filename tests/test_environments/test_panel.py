"""Panels from CSV files (environments.data.panel_csv) and their parts (panel_source): a wide
close-price CSV and a folder of OHLCV files aligned on one calendar, missing bars explicit,
extra columns, every bad input named by file, row and column, splits and walk-forward folds."""

import logging
import pickle

import numpy as np
import pytest

from environments.data import data_cache
from environments.data.folds import FoldSizes, walk_forward
from environments.data.market import MarketDataError
from environments.data.panel_csv import load_panel, read_wide_csv
from environments.data.panel_source import (PanelSource, PanelSplits, is_panel_source,
                                            panel_path)
from tests.conftest import SHARED_DATA

SP500_PANEL = SHARED_DATA.parent / "panels" / "SP500_10_DAILY_CLOSE.csv"

# A listed on day 1, B listed on day 2, A's own holiday on day 3, C delisted after day 4; the
# last row has no bar at all and is not on the calendar.
WIDE = """Date,A,B,C
2020-01-01,10,,5
2020-01-02,11,20,5.5
2020-01-03,,21,6
2020-01-06,12,22,6.5
2020-01-07,13,23,
2020-01-08,,,
"""
EXPECTED_CLOSE = np.array([[10, np.nan, 5], [11, 20, 5.5], [np.nan, 21, 6], [12, 22, 6.5],
                           [13, 23, np.nan]])


def write(path, text):
    path.write_text(text)
    return path


def write_ohlcv(path, closes, extra=None, start="2020-01-01"):
    """An OHLCV file of `closes` {date: close}, with extra columns {name: [values]}."""
    extra = extra or {}
    lines = [",".join(["date", "open", "high", "low", "close", "volume", *extra])]
    for i, (date, close) in enumerate(closes.items()):
        cells = [date, close, close * 1.01, close * 0.99, close, 100]
        lines.append(",".join(str(c) for c in cells + [values[i] for values in extra.values()]))
    path.write_text("\n".join(lines) + "\n")
    return path


def folder_of(tmp_path, text=WIDE):
    """The wide panel `text` as a folder of one OHLCV file per instrument."""
    folder = tmp_path / "bars"
    folder.mkdir()
    rows = [line.split(",") for line in text.strip().splitlines()]
    for column, name in enumerate(rows[0][1:], start=1):
        closes = {row[0]: float(row[column]) for row in rows[1:] if row[column]}
        write_ohlcv(folder / f"{name}.csv", closes)
    return folder


def test_wide_csv_keeps_missing_bars_explicit(tmp_path):
    panel = load_panel(write(tmp_path / "wide.csv", WIDE), cache="off")
    assert panel.names == ("A", "B", "C")
    assert panel.timestamps.astype("datetime64[D]").astype(str).tolist() == [
        "2020-01-01", "2020-01-02", "2020-01-03", "2020-01-06", "2020-01-07"]
    np.testing.assert_array_equal(panel.close, EXPECTED_CLOSE)  # NaN where no bar
    np.testing.assert_array_equal(panel.can_hold, [[1, 0, 1], [0, 1, 1], [0, 1, 1], [1, 1, 0],
                                                   [0, 0, 0]])
    np.testing.assert_allclose(panel.step_returns[:, 0], [0.1, 0, 0, 13 / 12 - 1, 0])
    features = panel.features  # [T, N, 7]
    assert features.shape == (5, 3, 7)
    assert (features[~panel.has_bar] == 0).all()
    # A's log return at its next bar is from its own previous bar, across its holiday
    assert features[3, 0, 0] == pytest.approx(100 * np.log(12 / 11), rel=1e-6)


def test_folder_aligns_on_the_union_calendar_like_the_wide_csv(tmp_path):
    wide = load_panel(write(tmp_path / "wide.csv", WIDE), cache="off")
    panel = load_panel(folder_of(tmp_path), cache="off")
    assert panel.names == wide.names
    np.testing.assert_array_equal(panel.timestamps, wide.timestamps)
    np.testing.assert_array_equal(panel.close, wide.close)
    assert panel.extra is None and panel.extra_names == ()
    assert (panel.features[~panel.has_bar] == 0).all()
    # its features are each file's OHLCV features: a bar's range is high / low
    assert panel.features[0, 0, 1] == pytest.approx(100 * np.log(1.01 / 0.99), rel=1e-5)
    assert load_panel(str(tmp_path / "bars" / "[AB].csv"), cache="off").names == ("A", "B")


def test_wide_csv_cache_maps_the_same_arrays(tmp_path):
    path = write(tmp_path / "wide.csv", WIDE)
    built = read_wide_csv(path, cache=str(tmp_path / "cache"))
    mapped = read_wide_csv(path, cache=str(tmp_path / "cache"))
    assert data_cache.is_memory_mapped(mapped.close)
    assert data_cache.is_memory_mapped(mapped.features)
    np.testing.assert_array_equal(mapped.close, EXPECTED_CLOSE)
    np.testing.assert_array_equal(mapped.features, built.features)
    np.testing.assert_array_equal(mapped.features, load_panel(path, cache="off").features)


def test_wide_csv_with_a_date_format_and_other_delimiter(tmp_path):
    text = "date;X;Y\n02/01/2020;1.5;2\n03/01/2020;1.6;\n06/01/2020;1.7;2.2\n"
    panel = load_panel(write(tmp_path / "w.csv", text), "%d/%m/%Y", cache="off")
    assert panel.timestamps[0] == np.datetime64("2020-01-02")
    np.testing.assert_array_equal(panel.close[:, 1], [2, np.nan, 2.2])


def test_extra_columns_are_the_intersection_and_a_partial_one_is_reported(tmp_path, caplog):
    folder = tmp_path / "bars"
    folder.mkdir()
    days = {"2020-01-01": 10.0, "2020-01-02": 11.0, "2020-01-03": 12.0}
    write_ohlcv(folder / "A.csv", days, {"sentiment": [0.1, 0.2, 0.3], "rsi": [50, 60, 70],
                                         "symbol": ["A", "A", "A"]})
    write_ohlcv(folder / "B.csv", dict(list(days.items())[1:]), {"sentiment": [-1.0, -2.0]})
    with caplog.at_level(logging.WARNING):
        panel = load_panel(folder, cache="off")
    assert panel.extra_names == ("sentiment",)
    assert "'rsi'" in caplog.text and "B.csv" in caplog.text
    np.testing.assert_array_equal(panel.extra[:, :, 0], [[0.1, np.nan], [0.2, -1], [0.3, -2]])
    assert panel.feature_names[-1] == "sentiment"
    np.testing.assert_allclose(panel.features[:, :, -1], [[0.1, 0], [0.2, -1], [0.3, -2]])
    with pytest.raises(MarketDataError, match=r"B\.csv: has no numeric column 'rsi'"):
        load_panel(folder, cache="off", extra_columns=("rsi",))
    assert load_panel(folder, cache="off", extra_columns=()).extra is None


def test_a_bad_extra_cell_names_file_row_and_column(tmp_path):
    folder = tmp_path / "bars"
    folder.mkdir()
    write_ohlcv(folder / "A.csv", {"2020-01-01": 1.0, "2020-01-02": 2.0}, {"f": [1.5, "x"]})
    with pytest.raises(MarketDataError, match=r"A\.csv: row 3: column 'f' is 'x', expected a "
                                              "finite number"):
        load_panel(folder, cache="off")


@pytest.mark.parametrize("text, message", [
    ("Date,A,B\n2020-01-02,1,2\n2020-01-01,1,2\n",
     r"wide\.csv: row 3: timestamp 2020-01-01T00:00:00\.000000000 is earlier than"),
    ("Date,A,B\n2020-01-01,1,2\n2020-01-02,1,2\n2020-01-02,1,2\n",
     r"wide\.csv: row 4: timestamp .* duplicates the previous row's"),
    ("Date,A,B\n2020-01-01,1,2\n2020-01-02,1,abc\n",
     r"wide\.csv: row 3: column 3 \('B'\) is 'abc', expected a price"),
    ("Date,A,B\n2020-01-01,1,2\n2020-01-02,-1,2\n",
     r"wide\.csv: row 3: column 2 \('A'\) is -1\.0, expected a price > 0"),
    ("Date,A,B,A\n2020-01-01,1,2,3\n",
     r"wide\.csv: row 1 \(header\): instrument 'A' appears twice \(columns 2 and 4\)"),
    ("Date,A,B\n2020-01-01,1,\n2020-01-02,2,\n",
     r"wide\.csv: column 3 \('B'\) has no price in any row"),
    ("Date,A,B\n2020-01-01,1,2\n2020-01-02,1\n",
     r"wide\.csv: row 3 has 2 fields, expected 3 as in the header"),
    ("Date,A,,B\n2020-01-01,1,2,3\n", r"wide\.csv: row 1 \(header\): column 3 has no name"),
    ("Ticker,A,B\n2020-01-01,1,2\n", r"wide\.csv: row 1 \(header\): column 1 is 'Ticker'"),
    ("date,open,high,low,close\n2020-01-01,1,2,1,2\n", r"wide\.csv: is an OHLCV file"),
    ("Date,A,B\n2020-01-01,1,2\n2020-13-02,1,2\n",
     r"wide\.csv: row 3: timestamp '2020-13-02' does not parse"),
    ("Date,D,W\n" + "".join(f"2020-01-{d:02d},1,{'' if d % 7 != 1 else 2}\n"
                            for d in range(1, 29)),
     r"wide\.csv: mixed bar frequencies: column 2 \('D'\) .* 1 day.*column 3 \('W'\) 7 days"),
])
def test_a_bad_wide_csv_names_file_row_and_column(tmp_path, text, message):
    with pytest.raises(MarketDataError, match=message):
        load_panel(write(tmp_path / "wide.csv", text), cache="off")


def test_a_bad_folder_names_the_file(tmp_path):
    folder = tmp_path / "bars"
    folder.mkdir()
    write_ohlcv(folder / "A.csv", {f"2020-01-{d:02d}": 1.0 + d for d in range(1, 29)})
    write_ohlcv(folder / "W.csv", {f"2020-01-{d:02d}": 1.0 + d for d in range(1, 29, 7)})
    with pytest.raises(MarketDataError, match=r"mixed bar frequencies: .*A\.csv .*W\.csv"):
        load_panel(folder, cache="off")
    (folder / "W.csv").write_text("date,open,high,low,close\n2020-01-01,1,1,2,1\n")
    with pytest.raises(MarketDataError, match=r"W\.csv: row 2: high 1\.0 is below low 2\.0"):
        load_panel(folder, cache="off")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MarketDataError, match=r"no \*\.csv file in this folder"):
        load_panel(tmp_path / "empty")
    with pytest.raises(MarketDataError, match="no such file or folder"):
        load_panel(tmp_path / "nowhere")


def test_panel_data_values():
    assert is_panel_source("panel:bars/") and is_panel_source("synthetic:panel")
    assert not is_panel_source("bars/") and not is_panel_source("synthetic:ou")
    assert panel_path("panel:wide.csv") == "wide.csv"
    assert panel_path("synthetic:panel") == "synthetic:panel"
    with pytest.raises(ValueError, match="expected 'panel:<wide"):
        panel_path("panel:")


def long_wide_csv(tmp_path, bars=100, late=None):
    """A wide CSV of 3 instruments over `bars` weekdays; `late` = (instrument, first bar)."""
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(0.01 * rng.standard_normal((bars, 3)), axis=0))
    cells = np.char.mod("%.4f", close)
    if late is not None:
        cells[:late[1], late[0]] = ""
    days = np.busday_offset(np.datetime64("2020-01-01"), np.arange(bars), roll="forward")
    lines = ["Date,A,B,C"] + [f"{day}," + ",".join(row) for day, row in
                              zip(np.datetime_as_string(days), cells)]
    name = "long.csv" if late is None else "late.csv"  # load() is cached per source
    return write(tmp_path / name, "\n".join(lines) + "\n")


def test_split_on_the_common_calendar(tmp_path):
    path = str(long_wide_csv(tmp_path))
    source = PanelSource(path, train_fraction=0.6, validation_fraction=0.2, cache="off")
    splits = pickle.loads(pickle.dumps(source)).load()
    assert isinstance(splits, PanelSplits)
    assert [len(splits.part(name)) for name in ("train", "validation", "test")] == [60, 20, 20]
    stamps = np.concatenate([splits.train.timestamps, splits.validation.timestamps,
                             splits.test.timestamps])
    np.testing.assert_array_equal(stamps, source.whole_panel().timestamps)  # no bar twice
    np.testing.assert_array_equal(splits.test.features, source.whole_panel().features[80:])
    late = long_wide_csv(tmp_path, late=(1, 85))  # B lists inside the test part
    with pytest.raises(MarketDataError, match=r"late\.csv\[0:60\]: instrument 'B' has 0 bars "
                                              "in the train part"):
        PanelSource(str(late), cache="off").load()
    allowed = PanelSource(str(late), min_instrument_bars=0, cache="off").load()
    assert allowed.test.has_bar[:, 1].sum() == 15 and not allowed.train.has_bar[:, 1].any()


def test_walk_forward_folds_on_the_common_calendar(tmp_path):
    path = str(long_wide_csv(tmp_path))
    sizes = dict(folds=3, embargo=2, lookback=5, cache="off")
    folds = walk_forward(100, FoldSizes(3, embargo=2))
    assert PanelSource(path, **sizes).walk_forward() == folds
    whole = PanelSource(path, **sizes).whole_panel()
    for fold in folds:
        splits = PanelSource(path, fold=fold.index, **sizes).load()
        for name in ("train", "validation", "test"):
            begin, end = fold.part(name)
            part = splits.part(name)  # lookback rows, the part's bars and the bar closing it
            np.testing.assert_array_equal(part.timestamps,
                                          whole.timestamps[max(begin - 5, 0):end + 1])
    test_parts = [fold.test for fold in folds]
    assert all(a[1] == b[0] for a, b in zip(test_parts, test_parts[1:]))  # tiled, no overlap
    late = str(long_wide_csv(tmp_path, late=(2, 60)))
    with pytest.raises(MarketDataError, match="instrument 'C' has 0 bars in the train part"):
        PanelSource(late, fold=0, **sizes).load()  # its train part is bars [0, 43)


def test_synthetic_panel_source():
    splits = PanelSource("synthetic:panel", synthetic_instruments=3, synthetic_steps=200,
                         seed=1).load()
    assert splits.train.num_instruments == 3 and len(splits.test) == 40


@pytest.mark.skipif(not SP500_PANEL.exists(), reason="../shared/panels is absent")
def test_the_ten_stock_panel_loads(tmp_path):
    panel = load_panel(SP500_PANEL, cache=str(tmp_path))
    assert panel.names[:3] == ("AAPL", "AMD", "BAC") and panel.close.shape == (8313, 10)
    assert panel.has_bar.all() and panel.features.shape == (8313, 10, 7)
    assert str(panel.timestamps[-1])[:10] == "2022-12-28"
