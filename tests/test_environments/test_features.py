"""Features and observations use only bars at or before t (no look-ahead)."""

import dataclasses

import numpy as np

from environments import (FEATURE_NAMES, NUM_FEATURES, TradingEnv, compute_features,
                          synthetic_market)


def with_future_changed(market, t, seed=0):
    """The same market up to bar t; every later bar scaled by random factors."""
    rng = np.random.default_rng(seed)
    scale = np.ones(len(market))
    scale[t + 1:] = np.exp(rng.normal(0.0, 0.2, len(market) - t - 1))
    later = np.arange(len(market)) > t
    wider = np.where(later, 1.05, 1.0)
    volume = np.where(later, market.volume * 10.0, market.volume)
    return dataclasses.replace(market, open=market.open * scale, high=market.high * scale * wider,
                               low=market.low * scale, close=market.close * scale, volume=volume)


def test_features_at_t_ignore_later_bars():
    market = synthetic_market("regime", 300, seed=2)
    features = compute_features(market)
    assert features.shape == (300, NUM_FEATURES) == (300, len(FEATURE_NAMES))
    assert features.dtype == np.float32 and np.isfinite(features).all()
    for t in (0, 1, 5, 19, 20, 150, 298):
        changed = compute_features(with_future_changed(market, t))
        np.testing.assert_array_equal(changed[:t + 1], features[:t + 1])
        assert not np.array_equal(changed[t + 1:], features[t + 1:])


def test_hand_computed_features():
    market = synthetic_market("gbm", 30, seed=0)
    features = compute_features(market).astype(np.float64)
    close, high, low = market.close, market.high, market.low
    np.testing.assert_allclose(features[1:, 0], 100 * np.log(close[1:] / close[:-1]), rtol=1e-5)
    assert features[0, 0] == 0.0
    np.testing.assert_allclose(features[:, 1], 100 * np.log(high / low), rtol=1e-5)
    np.testing.assert_allclose(features[:, 2], 2 * (close - low) / (high - low) - 1, atol=1e-6)
    log_volume = np.log1p(market.volume)
    np.testing.assert_allclose(features[25, 3], log_volume[25] - log_volume[6:26].mean(), atol=1e-5)
    np.testing.assert_allclose(features[25, 4], np.std(features[6:26, 0]), rtol=1e-4)
    log_close = np.log(close)
    np.testing.assert_allclose(features[25, 5], 100 * (log_close[25] - log_close[:26].mean()),
                               atol=1e-4)


def test_observations_up_to_t_ignore_later_prices():
    market = synthetic_market("ou", 200, seed=1)
    t_change = 120
    markets = (market, with_future_changed(market, t_change))
    envs = [TradingEnv(m, window=16, mode="eval") for m in markets]
    observations = [[env.reset()[0]] for env in envs]
    actions = np.random.default_rng(0).integers(0, 3, t_change - 16)
    for env, obs in zip(envs, observations):
        obs += [env.step(a)[0] for a in actions]  # the last observation is at bar t_change
    for a, b in zip(*observations):
        np.testing.assert_array_equal(a, b)


def test_price_level_feature_uses_trailing_window():
    market = synthetic_market("ou", 300, seed=3)
    features = compute_features(market).astype(np.float64)
    log_close = np.log(market.close)
    # t = 200: the trailing mean covers bars 73..200 (LEVEL_STEPS = 128 of them).
    np.testing.assert_allclose(features[200, 5], 100 * (log_close[200] - log_close[73:201].mean()),
                               atol=1e-4)
    # The long level: bars 0..200 until LONG_LEVEL_STEPS = 512 bars exist.
    np.testing.assert_allclose(features[200, 6], 100 * (log_close[200] - log_close[:201].mean()),
                               atol=1e-4)
