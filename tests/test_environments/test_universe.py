"""Universes of markets: episode sampling over several markets, the three-way split,
features computed once on the whole market, and annualization inferred from the bars."""

import numpy as np
import pytest

from environments import (MarketDataError, MarketSource, TradingEnv, TradingVectorEnv,
                          compute_features, infer_periods_per_year, synthetic_market)
from tests.test_environments.conftest import market_from_closes

WINDOW, EPISODE = 4, 10


def three_markets():
    """Markets of 40, 60 and 80 bars with distinct price levels (so a frame names its market)."""
    rng = np.random.default_rng(0)
    return [market_from_closes(level * np.exp(np.cumsum(0.01 * rng.standard_normal(n))))
            for level, n in ((10.0, 40), (100.0, 60), (1000.0, 80))]


def test_every_market_is_drawn_and_starts_stay_inside_it():
    markets = three_markets()
    env = TradingVectorEnv(markets, num_envs=16, window=WINDOW, episode_length=EPISODE)
    _, info = env.reset(seed=3)
    seen = set()
    for _ in range(40 * (EPISODE + 1)):
        _, _, terminated, truncated, info = env.step(np.ones(16, dtype=np.int64))
        market_index, bar = info["market_index"], info["step_index"]
        offsets = env.setup.offsets
        # Every bar of an episode lies in its market, past the first window, at most its last bar.
        assert np.all(bar >= offsets[market_index] + WINDOW)
        assert np.all(bar <= offsets[market_index + 1] - 1)
        seen.update(market_index.tolist())
    assert seen == {0, 1, 2}


def test_start_draws_weigh_markets_by_their_start_bars_and_are_reproducible():
    markets = three_markets()
    setup = TradingEnv(markets, window=WINDOW, episode_length=EPISODE).setup
    # start bars per market: length - window - episode_length: 26, 46, 66 (138 in all)
    assert setup.start_counts.tolist() == [0, 26, 72, 138]
    market, start = setup.starts(np.array([0.0, 25.9 / 138, 26 / 138, 137.9 / 138]))
    assert market.tolist() == [0, 0, 1, 2]
    assert start.tolist() == [4, 29, 40 + 4, 100 + 4 + 65]

    def starts(seed):
        env = TradingEnv(markets, window=WINDOW, episode_length=EPISODE)
        return [(info["market_index"], info["step_index"]) for info in (
            env.reset(seed=seed)[1] if i == 0 else env.reset()[1] for i in range(50))]

    assert starts(7) == starts(7)
    assert starts(7) != starts(8)
    counts = np.bincount([m for m, _ in starts(7)], minlength=3)
    assert counts.min() > 0


def test_a_universe_observation_is_that_markets_frames():
    markets = three_markets()
    env = TradingEnv(markets, window=WINDOW, episode_length=EPISODE)
    for seed in range(10):
        obs, info = env.reset(seed=seed)
        market = markets[info["market_index"]]
        local = info["step_index"] - env.setup.offsets[info["market_index"]]
        np.testing.assert_array_equal(obs[:, :-1], market.features[local - WINDOW + 1:local + 1])


def test_eval_mode_takes_one_market():
    with pytest.raises(ValueError, match="one eval env per market"):
        TradingEnv(three_markets(), window=WINDOW, mode="eval")


def test_csv_split_is_three_chronological_parts_without_shared_bars(tmp_path):
    market = synthetic_market("gbm", 1000, seed=1)
    path = tmp_path / "bars.csv"
    write_bars(path, market)
    splits = MarketSource(str(path), train_fraction=0.6, validation_fraction=0.2).load()
    (train,), (validation,), (test,) = splits.train, splits.validation, splits.test
    assert (len(train), len(validation), len(test)) == (600, 200, 200)
    assert train.timestamps[-1] < validation.timestamps[0]
    assert validation.timestamps[-1] < test.timestamps[0]
    np.testing.assert_array_equal(
        np.concatenate([train.close, validation.close, test.close]), market.close)


def test_synthetic_process_paths_are_distinct_across_parts_and_reproducible():
    source = MarketSource("synthetic:ou", synthetic_steps=300, synthetic_paths=5,
                          validation_paths=2, test_paths=3, seed=4)
    splits = source.load()
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (5, 2, 3)
    paths = [m.close.tobytes() for part in ("train", "validation", "test")
             for m in splits.part(part)]
    assert len(set(paths)) == 10  # no path is in two parts (or twice in one)
    again = MarketSource("synthetic:ou", synthetic_steps=300, synthetic_paths=5,
                         validation_paths=2, test_paths=3, seed=4)
    assert [m.close.tobytes() for m in again.load().test] == [m.close.tobytes() for m in splits.test]
    other_seed = MarketSource("synthetic:ou", synthetic_steps=300, synthetic_paths=5,
                              validation_paths=2, test_paths=3, seed=5).load()
    assert other_seed.test[0].close.tobytes() not in paths


def test_test_split_features_equal_the_whole_markets_features():
    market = synthetic_market("ou", 2000, seed=2)
    train, validation, test = market.split(0.6, 0.2)
    whole = compute_features(market)
    np.testing.assert_array_equal(test.features, whole[1600:])
    np.testing.assert_array_equal(validation.features, whole[1200:1600])
    # The env's frames on the test split are those rows too (the 128-bar level does not restart).
    env = TradingEnv(test, window=WINDOW, mode="eval")
    np.testing.assert_array_equal(env.setup.features, whole[1600:])
    assert not np.array_equal(compute_features(test), whole[1600:])  # what a fresh start would give


@pytest.mark.parametrize("step, days, expected, kind", [
    (np.timedelta64(1, "D"), "weekdays", 252, "trading days"),
    (np.timedelta64(1, "D"), "all", 365, "24x7"),
    (np.timedelta64(1, "h"), "all", 365 * 24, "24x7"),
    (np.timedelta64(1, "h"), "weekdays", 260 * 24, "24x5"),
    (np.timedelta64(1, "m"), "session", 252 * 390, "390 bars per session"),
    (np.timedelta64(7, "D"), "all", 52.18, "days"),
])
def test_periods_per_year_from_the_bar_spacing_and_calendar(step, days, expected, kind):
    if days == "session":  # 09:30-16:00 exchange minutes on weekdays
        dates = np.arange("2024-01-01", "2024-03-01", dtype="datetime64[D]")
        dates = dates[((dates.astype(np.int64) + 3) % 7) < 5]
        minutes = np.arange(390) * np.timedelta64(1, "m") + np.timedelta64(570, "m")
        stamps = (dates[:, None] + minutes[None, :]).ravel()
    else:
        stamps = np.datetime64("2024-01-01") + np.arange(3000) * step
        if days == "weekdays":
            stamps = stamps[((stamps.astype("datetime64[D]").astype(np.int64) + 3) % 7) < 5]
    periods, reason = infer_periods_per_year(stamps)
    assert periods == pytest.approx(expected, rel=1e-3)
    assert kind in reason


def write_bars(path, market):
    with open(path, "w") as file:
        file.write("date,open,high,low,close,volume\n")
        for i in range(len(market)):
            # float(): numpy 2's repr of a scalar is "np.float64(1.5)", not a CSV number.
            values = (market.open[i], market.high[i], market.low[i], market.close[i], market.volume[i])
            file.write(",".join([str(market.timestamps[i])[:10], *(repr(float(v)) for v in values)]) + "\n")


def test_a_folder_of_csv_files_is_a_universe_split_per_file(tmp_path):
    markets = {name: synthetic_market("gbm", n, seed=seed)
               for name, n, seed in (("aaa", 500, 1), ("bbb", 1000, 2), ("ccc", 750, 3))}
    for name, market in markets.items():
        write_bars(tmp_path / f"{name}.csv", market)
    (tmp_path / "notes.txt").write_text("not a market")
    splits = MarketSource(str(tmp_path)).load()
    assert [len(part) for part in (splits.train, splits.validation, splits.test)] == [3, 3, 3]
    for i, (name, market) in enumerate(sorted(markets.items())):
        train, validation, test = splits.train[i], splits.validation[i], splits.test[i]
        assert train.source.startswith(str(tmp_path / f"{name}.csv"))
        # each file split on its own, chronologically: 60 / 20 / 20 of its bars, none shared
        assert len(train) == round(0.6 * len(market))
        assert train.timestamps[-1] < validation.timestamps[0]
        assert validation.timestamps[-1] < test.timestamps[0]
        np.testing.assert_array_equal(
            np.concatenate([train.close, validation.close, test.close]), market.close)
    env = TradingVectorEnv(list(splits.train), num_envs=8, window=WINDOW, episode_length=EPISODE)
    assert len(env.markets) == 3

    picked = MarketSource(str(tmp_path / "[ab]*.csv")).load()
    assert [m.source.split("[")[0] for m in picked.test] == [str(tmp_path / "aaa.csv"),
                                                               str(tmp_path / "bbb.csv")]


def test_a_folder_with_one_bad_file_fails_naming_that_file_and_row(tmp_path):
    write_bars(tmp_path / "good.csv", synthetic_market("gbm", 300, seed=1))
    (tmp_path / "zbad.csv").write_text("date,open,high,low,close\n2020-01-01,1,2,0.5,1.5\n"
                                       "2020-01-02,1,2,0.5,-3\n")
    with pytest.raises(MarketDataError, match=r"zbad\.csv: row 3: column 'close' is -3\.0"):
        MarketSource(str(tmp_path)).load()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no \\*.csv file in this folder"):
        MarketSource(str(empty)).load()
    with pytest.raises(FileNotFoundError, match="no file matches this pattern"):
        MarketSource(str(tmp_path / "*.parquet")).load()
