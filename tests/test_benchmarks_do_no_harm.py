"""The do-no-harm benchmark's markets (benchmarks/do_no_harm.py): the walks move by the volatility
they are named for, without drift unless asked, and hourly bars are 24 a weekday."""

import numpy as np

from benchmarks import do_no_harm
from environments import infer_periods_per_year

BARS = 6000


def _returns(market) -> np.ndarray:
    return np.diff(market.close) / market.close[:-1]  # [T - 1]


def test_the_driftless_walks_move_by_their_volatility_and_drift_by_noise_only():
    for name in ("walk_daily", "walk_hourly"):
        spec = do_no_harm.MARKETS[name]
        returns = _returns(do_no_harm.make_market(spec, seed=1000, num_bars=BARS))
        assert abs(returns.std() / spec.volatility - 1.0) < 0.05  # sampling error ~1% at 6000 bars
        assert abs(returns.mean()) < 3 * spec.volatility / np.sqrt(BARS)  # no drift beyond noise


def test_the_drifting_walk_drifts_and_a_seed_gives_one_path():
    spec = do_no_harm.MARKETS["drift_daily"]
    market = do_no_harm.make_market(spec, seed=1000, num_bars=BARS)
    returns = _returns(market)
    assert abs(returns.mean() - spec.drift) < 3 * spec.volatility / np.sqrt(BARS)
    np.testing.assert_array_equal(market.close,
                                  do_no_harm.make_market(spec, seed=1000, num_bars=BARS).close)


def test_hourly_bars_are_24_a_weekday():
    market = do_no_harm.make_market(do_no_harm.MARKETS["ou_hourly"], seed=1000, num_bars=BARS)
    days = market.timestamps.astype("datetime64[D]")
    assert np.is_busday(days).all()  # no weekend bar
    assert set(np.unique(days, return_counts=True)[1][:-1]) == {24}
    assert infer_periods_per_year(market.timestamps)[0] == 24 * 260
