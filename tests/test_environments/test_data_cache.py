"""The data cache: one validated, memory-mapped copy of a CSV market per machine; hits, misses,
invalidation, where it lives, the off switch, concurrent builds, and envs that read it in place."""

import os
import subprocess
import sys

import numpy as np
import pytest

from environments import (MarketDataError, MarketSource, TradingEnv, TradingVectorEnv,
                          compute_features, load_csv, synthetic_market)
from environments.data import csv_loader, data_cache, universe
from tests.conftest import REPO_ROOT
from tests.test_environments.test_universe import write_bars

is_memory_mapped = data_cache.is_memory_mapped
FIELDS = ("timestamps", "open", "high", "low", "close", "volume")


@pytest.fixture
def parses(monkeypatch):
    """Counts the CSV parses load_csv does (a cache hit does none)."""
    calls = []
    parse = csv_loader.parse_csv

    def counting(path, date_format):
        calls.append(path)
        return parse(path, date_format)

    monkeypatch.setattr(csv_loader, "parse_csv", counting)
    return calls


@pytest.fixture
def bars(tmp_path):
    path = tmp_path / "data" / "bars.csv"
    path.parent.mkdir()
    write_bars(path, synthetic_market("gbm", 700, seed=3))
    return path


def test_first_load_writes_the_cache_later_loads_map_it_read_only(bars, parses, monkeypatch,
                                                                  tmp_path):
    monkeypatch.delenv("APEX_DATA_CACHE")  # the default place: beside the data
    first = load_csv(bars)
    files = os.listdir(bars.parent / ".apex_cache")
    assert [name for name in files if name.endswith(".bars")] and len(parses) == 1
    second = load_csv(bars)
    assert len(parses) == 1  # a hit: nothing parsed
    plain = load_csv(bars, cache=False)
    assert len(parses) == 2 and not is_memory_mapped(plain.close)
    for market in (first, second):
        for name in FIELDS + ("features",):
            array = getattr(market, name)
            assert is_memory_mapped(array), name
            np.testing.assert_array_equal(array, getattr(plain, name))
            with pytest.raises(ValueError, match="read-only"):
                array[0] = array[1]
    np.testing.assert_array_equal(second.features, compute_features(plain))
    assert second.source == str(bars)
    # rows and splits of a mapped market are views of the same pages
    train, _, test = second.split(0.6, 0.2)
    assert is_memory_mapped(train.close) and is_memory_mapped(test.features)


@pytest.mark.parametrize("change", ["touch", "same size and mtime, new content"])
def test_a_changed_file_invalidates_its_cache(bars, parses, change):
    old = load_csv(bars)
    stat = os.stat(bars)
    if change == "touch":
        os.utime(bars, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    else:
        text = bars.read_text()
        last_close = repr(float(old.close[-1]))  # numpy 2: repr(np.float64) is not the CSV's text
        head, tail = text.rsplit(last_close, 1)
        # A new first decimal digit: far above float resolution, at the same size (a new 17th
        # significant digit can parse to the same float).
        point = last_close.index(".") + 1
        changed = last_close[:point] + str((int(last_close[point]) + 1) % 10) + last_close[point + 1:]
        bars.write_text(head + changed + tail)
        os.utime(bars, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert os.stat(bars).st_size == stat.st_size
    new = load_csv(bars)
    assert len(parses) == 2
    if change != "touch":
        assert new.close[-1] == float(changed) != old.close[-1]
    np.testing.assert_array_equal(new.close[:-1], old.close[:-1])  # the old map stays readable
    load_csv(bars)
    assert len(parses) == 2


def test_the_off_switch_and_a_named_folder(bars, parses, monkeypatch, tmp_path):
    monkeypatch.setenv("APEX_DATA_CACHE", "off")
    assert not is_memory_mapped(load_csv(bars).close)
    assert not is_memory_mapped(load_csv(bars).close) and len(parses) == 2
    assert not (bars.parent / ".apex_cache").exists()
    folder = tmp_path / "named"
    assert is_memory_mapped(load_csv(bars, cache=str(folder)).close)
    assert [name for name in os.listdir(folder) if name.endswith(".bars")]
    monkeypatch.setenv("APEX_DATA_CACHE", str(folder))
    assert is_memory_mapped(load_csv(bars).close) and len(parses) == 3
    assert not is_memory_mapped(load_csv(bars, cache=False).close)


def test_a_read_only_data_folder_caches_in_the_user_cache_folder(bars, monkeypatch, tmp_path):
    monkeypatch.delenv("APEX_DATA_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    os.chmod(bars.parent, 0o555)
    try:
        assert is_memory_mapped(load_csv(bars).close)
    finally:
        os.chmod(bars.parent, 0o755)
    assert not (bars.parent / ".apex_cache").exists()
    assert [name for name in os.listdir(tmp_path / "xdg" / "apex-trader")
            if name.startswith("bars.csv.") and name.endswith(".bars")]


def test_a_corrupt_cache_file_is_rebuilt(bars, parses):
    load_csv(bars)
    path = data_cache.cache_file(str(bars), None)
    with open(path, "r+b") as file:
        file.truncate(100)
    assert is_memory_mapped(load_csv(bars).close) and len(parses) == 2


def test_a_bad_file_writes_no_cache_and_fails_every_time(tmp_path, parses):
    path = tmp_path / "bad.csv"
    path.write_text("date,open,high,low,close\n2020-01-01,1,2,0.5,1.5\n2020-01-02,1,2,0.5,-3\n")
    for _ in range(2):
        with pytest.raises(MarketDataError, match=r"bad\.csv: row 3: column 'close' is -3\.0"):
            load_csv(path)
    assert len(parses) == 2
    assert not os.path.exists(data_cache.cache_file(str(path), None))


def test_processes_racing_to_build_the_cache_parse_the_file_once(bars, tmp_path):
    script = (
        "import sys; from environments import load_csv; from environments.data import csv_loader\n"
        "parse = csv_loader.parse_csv; calls = []\n"
        "csv_loader.parse_csv = lambda *a: calls.append(1) or parse(*a)\n"
        "market = load_csv(sys.argv[1])\n"
        "print(len(calls), float(market.close.sum()))\n"
    )
    env = dict(os.environ, APEX_DATA_CACHE=str(tmp_path / "race"), PYTHONPATH=str(REPO_ROOT))
    processes = [subprocess.Popen([sys.executable, "-c", script, str(bars)], env=env,
                                  stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [process.communicate(timeout=120)[0].split() for process in processes]
    assert all(process.returncode == 0 for process in processes)
    assert sum(int(parsed) for parsed, _ in outputs) == 1  # one built, two mapped its file
    assert len({total for _, total in outputs}) == 1
    assert sorted(os.listdir(tmp_path / "race"))[0].endswith(".bars")  # no temporary left
    assert not [name for name in os.listdir(tmp_path / "race") if name.endswith(".tmp")]


def test_a_universe_folder_loads_through_the_cache(tmp_path, parses):
    for name, seed in (("aaa", 1), ("bbb", 2)):
        write_bars(tmp_path / f"{name}.csv", synthetic_market("gbm", 400, seed=seed))
    source = MarketSource(str(tmp_path))
    first = source.load()
    universe._load.cache_clear()  # as in a fresh process
    again = source.load()
    assert len(parses) == 2  # each file parsed once, mapped the second time
    for a, b in zip(first.train + first.test, again.train + again.test):
        assert is_memory_mapped(b.close) and is_memory_mapped(b.features)
        np.testing.assert_array_equal(a.features, b.features)
    no_cache = MarketSource(str(tmp_path), cache="off").load()
    assert not is_memory_mapped(no_cache.train[0].close) and len(parses) == 4


def test_envs_read_the_markets_features_in_place(bars):
    market = load_csv(bars)
    train = market.split(0.6)[0]
    env = TradingEnv(train, window=8, episode_length=300)
    vector = TradingVectorEnv(train, num_envs=4, window=8, episode_length=300)
    for setup in (env.setup, vector.setup):
        assert np.shares_memory(setup.features, market.features)
        assert is_memory_mapped(setup.features)
    # observations over more steps than the ring holds (128): the features of the last 8 bars
    # and the position held at each
    obs, info = env.reset(seed=1)
    positions = [0.0] * 8
    for step in range(300):
        action = step % 3
        obs, _, _, truncated, info = env.step(action)
        positions = positions[1:] + [env.positions[action]]
        t = info["step_index"]
        np.testing.assert_array_equal(obs[:, :-1], train.features[t - 7:t + 1])
        np.testing.assert_array_equal(obs[:, -1], positions)
    assert truncated
