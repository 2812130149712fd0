"""Small hand-made markets for the environment tests."""

import numpy as np
import pytest

from environments import MarketData


def market_from_closes(closes, volume=None) -> MarketData:
    """Daily bars with open = close, high/low 1% around the close."""
    closes = np.asarray(closes, dtype=np.float64)
    timestamps = np.datetime64("2020-01-01", "ns") + np.arange(len(closes)) * np.timedelta64(1, "D")
    return MarketData(timestamps, closes, closes * 1.01, closes * 0.99, closes,
                      np.ones(len(closes)) if volume is None else volume, source="test")


@pytest.fixture
def make_market():
    return market_from_closes
