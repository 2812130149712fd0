"""Per-step market features, computed once per market with vectorized numpy.

Feature row t uses only bars 0..t (trailing windows, no centring or whole-series statistics),
so an observation built from rows <= t cannot see the future.
"""

import numpy as np

FEATURE_NAMES = (
    "log_return_pct",  # 100 * log(close_t / close_{t-1}); 0 at t = 0
    "log_range_pct",  # 100 * log(high_t / low_t)
    "close_location",  # where the close sits in the bar: -1 at the low, +1 at the high
    "log_volume_vs_trailing",  # log1p(volume_t) minus its trailing mean (0 without volume)
    "volatility_pct",  # trailing standard deviation of log_return_pct
    "log_close_vs_trailing_mean_pct",  # 100 * (log close_t minus its LEVEL_STEPS trailing mean)
    "log_close_vs_long_mean_pct",  # 100 * (log close_t minus its LONG_LEVEL_STEPS trailing mean)
)
NUM_FEATURES = len(FEATURE_NAMES)
TRAILING_STEPS = 20  # window of the trailing mean/volatility (about a trading month of days)
LEVEL_STEPS = 128  # window of the trailing mean the price level is compared with (half a year)
LONG_LEVEL_STEPS = 512  # the same against a longer trailing mean (two years of daily bars)


def _trailing_mean(values: np.ndarray, steps: int) -> np.ndarray:
    """mean(values[max(0, t - steps + 1) : t + 1]) for every t."""  # [T]
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    index = np.arange(1, len(values) + 1)
    start = np.maximum(index - steps, 0)
    return (cumulative[index] - cumulative[start]) / (index - start)


def compute_features(market) -> np.ndarray:
    """Returns float32 [T, NUM_FEATURES] in the order of FEATURE_NAMES, from a MarketData (or
    anything with float64 [T] arrays close, high, low and volume)."""
    close, high, low = market.close, market.high, market.low
    log_return = np.zeros(len(market))
    log_return[1:] = 100.0 * np.diff(np.log(close))
    log_range = 100.0 * np.log(high / low)
    span = high - low
    location = np.where(span > 0, 2.0 * (close - low) / np.where(span > 0, span, 1.0) - 1.0, 0.0)
    location = np.clip(location, -1.0, 1.0)
    log_volume = np.log1p(market.volume)
    volume_vs_trailing = log_volume - _trailing_mean(log_volume, TRAILING_STEPS)
    mean = _trailing_mean(log_return, TRAILING_STEPS)
    variance = _trailing_mean(log_return**2, TRAILING_STEPS) - mean**2
    volatility = np.sqrt(np.maximum(variance, 0.0))
    log_close = np.log(close)
    level = 100.0 * (log_close - _trailing_mean(log_close, LEVEL_STEPS))
    long_level = 100.0 * (log_close - _trailing_mean(log_close, LONG_LEVEL_STEPS))
    features = np.stack([log_return, log_range, location, volume_vs_trailing, volatility, level,
                         long_level], axis=1)
    return features.astype(np.float32)  # [T, F]
