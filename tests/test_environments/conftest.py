"""Small hand-made markets for the environment tests."""

import os

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


@pytest.fixture(autouse=True, scope="session")
def data_cache_in_a_temporary_folder(tmp_path_factory):
    """load_csv caches go to a temporary folder, never beside the repository's or the shared
    data (tests that check where the cache goes set APEX_DATA_CACHE themselves)."""
    previous = os.environ.get("APEX_DATA_CACHE")
    os.environ["APEX_DATA_CACHE"] = str(tmp_path_factory.mktemp("data_cache"))
    yield
    if previous is None:
        os.environ.pop("APEX_DATA_CACHE", None)
    else:
        os.environ["APEX_DATA_CACHE"] = previous
