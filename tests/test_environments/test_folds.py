"""Walk-forward folds: boundaries by hand on a small market (no bar in two parts, embargo
respected, test parts contiguous and in time order), the rows each part's env walks, and
MarketSource's fold selection per file of a universe."""

import numpy as np
import pytest

from environments import (MarketDataError, MarketSource, TradingEnv, buy_and_hold,
                          synthetic_market)
from environments.data.folds import Fold, FoldSizes, fold_parts, walk_forward
from tests.test_environments.conftest import market_from_closes
from tests.test_environments.test_universe import write_bars


def test_expanding_folds_by_hand():
    # 21 bars: decision bars 0..19 (D = 20); K = 3, L_t = 3, L_v = 2, E = 1
    folds = walk_forward(21, FoldSizes(3, test_bars=3, validation_bars=2, embargo=1))
    assert folds == (
        Fold(0, train=(0, 7), validation=(8, 10), test=(11, 14)),
        Fold(1, train=(0, 10), validation=(11, 13), test=(14, 17)),
        Fold(2, train=(0, 13), validation=(14, 16), test=(17, 20)),
    )


def test_rolling_folds_by_hand():
    folds = walk_forward(21, FoldSizes(3, test_bars=3, validation_bars=2, train_bars=4,
                                       embargo=1))
    assert [fold.train for fold in folds] == [(3, 7), (6, 10), (9, 13)]
    assert [fold.test for fold in folds] == [(11, 14), (14, 17), (17, 20)]


def test_default_sizes_of_one_fold_are_a_60_20_20_split():
    # 101 bars, 100 decision bars: L = 100 // (1 + 4) = 20
    assert walk_forward(101, FoldSizes(1)) == (Fold(0, (0, 60), (60, 80), (80, 100)),)
    # K = 4, E = 2, 200 bars: D = 199, L = (199 - 4) // 8 = 24; tests tile [103, 199)
    folds = walk_forward(200, FoldSizes(4, embargo=2))
    assert [fold.test for fold in folds] == [(103, 127), (127, 151), (151, 175), (175, 199)]
    assert folds[0].validation == (77, 101) and folds[0].train == (0, 75)


@pytest.mark.parametrize("sizes", [
    FoldSizes(5), FoldSizes(5, embargo=3), FoldSizes(3, test_bars=40, validation_bars=25,
                                                     embargo=5),
    FoldSizes(4, test_bars=30, train_bars=100, embargo=2), FoldSizes(7, embargo=1)])
def test_no_bar_in_two_parts_embargo_between_and_tests_tile_in_time_order(sizes):
    num_bars = 503
    folds = walk_forward(num_bars, sizes)
    assert len(folds) == sizes.folds
    for fold in folds:
        bars = [set(range(*fold.part(name))) for name in ("train", "validation", "test")]
        assert all(bars), "every part has a bar"
        assert not (bars[0] & bars[1] or bars[1] & bars[2] or bars[0] & bars[2])
        assert fold.validation[0] - fold.train[1] == sizes.embargo
        assert fold.test[0] - fold.validation[1] == sizes.embargo
        assert fold.train[0] >= 0
        if sizes.train_bars:
            assert fold.train[1] - fold.train[0] == sizes.train_bars
        else:
            assert fold.train[0] == 0
    for earlier, later in zip(folds, folds[1:]):
        assert earlier.test[1] == later.test[0]  # contiguous, no overlap, in time order
    assert folds[-1].test[1] == num_bars - 1  # the last test part ends at the last return


def test_too_few_bars_says_how_many_are_needed():
    sizes = FoldSizes(3, test_bars=3, validation_bars=2, embargo=1)
    # 3 * 3 + 2 + 2 * 1 + 1 training bar + the closing bar = 15
    assert len(walk_forward(15, sizes)) == 3
    with pytest.raises(MarketDataError, match=r"prices\.csv: has 14 bars, too few for 3 "
                                              r"walk-forward folds.*needs at least 15 bars"):
        walk_forward(14, sizes, where="prices.csv")
    with pytest.raises(MarketDataError, match=r"rolling training window of 10 bars: needs at "
                                              r"least 24 bars"):
        walk_forward(23, FoldSizes(3, test_bars=3, validation_bars=2, embargo=1, train_bars=10))
    # default sizes: L = (D - 2E) // (K + 4) >= 1 needs D >= K + 4 + 2E
    with pytest.raises(MarketDataError, match="needs at least 10 bars"):
        walk_forward(9, FoldSizes(5))
    assert walk_forward(10, FoldSizes(5))[0] == Fold(0, (0, 3), (3, 4), (4, 5))


@pytest.mark.parametrize("kwargs, message", [
    (dict(folds=0), "folds=0: expected an integer >= 1"),
    (dict(folds=2, embargo=-1), "embargo=-1: expected an integer >= 0"),
    (dict(folds=2, test_bars=2.5), "test_bars=2.5: expected an integer >= 0"),
])
def test_bad_sizes_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FoldSizes(**kwargs)


def test_part_rows_carry_the_lookback_and_the_closing_bar_and_the_env_decides_on_the_part():
    closes = 100.0 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, 60)))
    market = market_from_closes(closes)
    sizes = FoldSizes(3, test_bars=6, validation_bars=5, embargo=2)
    window = 4
    folds = walk_forward(len(market), sizes)
    for fold in folds:
        train, validation, test = fold_parts(market, sizes, fold.index, lookback=window)
        begin, end = fold.test
        assert test.source == f"test[{begin - window}:{end + 1}]"
        np.testing.assert_array_equal(test.close, closes[begin - window:end + 1])
        # the whole market's features, sliced (trailing windows reach into earlier bars)
        np.testing.assert_array_equal(test.features, market.features[begin - window:end + 1])
        assert train.source == f"test[0:{fold.train[1] + 1}]"
        result = buy_and_hold(TradingEnv(test, window=window, mode="eval",
                                         commission_bps=0, spread_bps=0), periods_per_year=252)
        # decisions at bars begin..end-1: the growth is close[end] / close[begin]
        assert result["num_steps"] == end - begin
        assert result["timestamps"][0] == market.timestamps[begin]
        assert result["timestamps"][-1] == market.timestamps[end]
        assert result["total_return"] == pytest.approx(closes[end] / closes[begin] - 1, rel=1e-9)
    with pytest.raises(ValueError, match=r"fold=3: expected an integer in \[0, 3\)"):
        fold_parts(market, sizes, 3)


def test_market_source_selects_a_fold_per_file_of_a_universe(tmp_path):
    lengths = {"aaa": 300, "bbb": 500}
    for seed, (name, n) in enumerate(lengths.items()):
        write_bars(tmp_path / f"{name}.csv", synthetic_market("gbm", n, seed=seed))
    source = MarketSource(str(tmp_path), folds=4, fold=2, embargo=3, lookback=8, cache="off")
    splits = source.load()
    assert [len(m) for m in source.whole_markets()] == [300, 500]
    for index, (name, n) in enumerate(lengths.items()):
        fold = walk_forward(n, source.fold_sizes)[2]
        assert source.walk_forward()[index][2] == fold
        for part in ("train", "validation", "test"):
            begin, end = fold.part(part)
            assert splits.part(part)[index].source == (
                f"{tmp_path / name}.csv[{max(begin - 8, 0)}:{end + 1}]")
    # the default (folds=0) is today's fraction split
    assert MarketSource(str(tmp_path), cache="off").load().test[0].source.endswith("[240:300]")


def test_market_source_fold_errors_name_the_file_and_the_value(tmp_path):
    write_bars(tmp_path / "short.csv", synthetic_market("gbm", 40, seed=0))
    with pytest.raises(MarketDataError, match=r"short\.csv: has 40 bars, too few for 3 "
                                              r"walk-forward folds.*needs at least 62 bars"):
        MarketSource(str(tmp_path / "short.csv"), folds=3, fold_test_bars=15, cache="off").load()
    with pytest.raises(ValueError, match=r"fold=5: expected an integer in \[0, 5\)"):
        MarketSource("synthetic", folds=5, fold=5).load()
    with pytest.raises(ValueError, match="folds=-1: expected an integer >= 0"):
        MarketSource("synthetic", folds=-1).load()


def test_a_synthetic_source_walks_forward_through_one_path():
    source = MarketSource("synthetic", synthetic_steps=900, seed=4, folds=3, fold=0,
                          lookback=16)
    (whole,) = source.whole_markets()
    np.testing.assert_array_equal(whole.close, synthetic_market("ou", 900, seed=4).close)
    splits = source.load()
    # D = 899, L = 899 // 7 = 128: 16 history bars, 128 decision bars, the closing bar
    assert [len(part) for part in splits.test] == [16 + 128 + 1]
    fold = source.walk_forward()[0][0]
    np.testing.assert_array_equal(splits.test[0].close,
                                  whole.close[fold.test[0] - 16:fold.test[1] + 1])
    with pytest.raises(ValueError, match="no whole market"):
        MarketSource("synthetic").whole_markets()
