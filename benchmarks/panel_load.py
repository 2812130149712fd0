"""Panel load time and peak memory (issue #27): a wide close-price CSV of --instruments columns x
--bars rows (instruments listed and delisted inside the range, so cells are missing), loaded by
load_panel in fresh processes: the cache off (parse + checks + features), a cache miss (the
same + writing the cache file) and a cache hit (the arrays memory-mapped, then every page of
close and features read, as an env would). Best time of --repeats and the largest peak RSS.

    python benchmarks/panel_load.py [--instruments 500] [--bars 8000] [--repeats 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def write_wide_csv(path: pathlib.Path, instruments: int, bars: int, seed: int = 0) -> float:
    """A daily wide CSV (`Date,I000,I001,...`, prices with 4 decimals); a third of the
    instruments list late or delist early (empty cells there). Returns the missing fraction."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(0.01 * rng.standard_normal((bars, instruments)), axis=0))
    late = rng.random(instruments) < 1 / 3
    first = np.where(late, rng.integers(0, bars // 2, instruments), 0)
    last = np.where(~late, bars, rng.integers(bars // 2, bars, instruments))
    index = np.arange(bars)[:, None]
    missing = (index < first) | (index >= last)  # [T, N]
    cells = np.char.mod("%.4f", close)
    cells[missing] = ""
    stamps = np.busday_offset(np.datetime64("1990-01-01", "D"), np.arange(bars), roll="forward")
    with open(path, "w") as file:
        file.write("Date," + ",".join(f"I{i:03d}" for i in range(instruments)) + "\n")
        for stamp, row in zip(np.datetime_as_string(stamps), cells):
            file.write(stamp + "," + ",".join(row) + "\n")
    return float(missing.mean())


def child(mode: str, csv: str, cache: str) -> None:
    """Loads the panel once in this process and prints {seconds, peak_rss_bytes, shape}."""
    from environments.data.panel_csv import load_panel

    start = time.perf_counter()
    panel = load_panel(csv, cache="off" if mode == "cache_off" else cache)
    features = panel.features  # [T, N, 7]
    if mode == "cache_hit_touched":
        float(np.nansum(panel.close)), float(features.sum(dtype=np.float64))
    seconds = time.perf_counter() - start
    # VmHWM: this process's own peak (ru_maxrss would carry the parent's over the exec)
    status = pathlib.Path("/proc/self/status").read_text()
    peak = int(status.split("VmHWM:")[1].split()[0]) * 1024
    print(json.dumps({"seconds": seconds, "peak_rss_bytes": peak,
                      "shape": list(features.shape)}))


def measure(mode: str, csv: pathlib.Path, cache: pathlib.Path, repeats: int) -> dict:
    results = []
    for _ in range(repeats):
        if mode in ("cache_miss",):
            shutil.rmtree(cache, ignore_errors=True)
        out = subprocess.run([sys.executable, __file__, "--child", mode, str(csv), str(cache)],
                             check=True, capture_output=True, text=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {"seconds": min(r["seconds"] for r in results),
            "peak_rss_mb": max(r["peak_rss_bytes"] for r in results) / 1e6,
            "shape": results[0]["shape"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instruments", type=int, default=500)
    parser.add_argument("--bars", type=int, default=8000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--child", nargs=3, metavar=("MODE", "CSV", "CACHE"), default=None)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    workdir = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="panel-load-"))
    workdir.mkdir(parents=True, exist_ok=True)
    csv, cache = workdir / "wide.csv", workdir / "cache"
    missing = write_wide_csv(csv, args.instruments, args.bars)
    print(f"{csv}: {args.instruments} instruments x {args.bars} bars, "
          f"{csv.stat().st_size / 1e6:.1f} MB, {100 * missing:.1f}% of cells without a bar")
    print(f"{'load_panel':<34} {'seconds':>8} {'peak RSS MB':>12}")
    for mode in ("cache_off", "cache_miss", "cache_hit", "cache_hit_touched"):
        result = measure(mode, csv, cache, args.repeats)
        print(f"{mode:<34} {result['seconds']:>8.3f} {result['peak_rss_mb']:>12.0f}")
    cache_bytes = sum(path.stat().st_size for path in cache.rglob("*.bars"))
    print(f"cache file: {cache_bytes / 1e6:.0f} MB (timestamps + close + features [T, N, 7])")
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
