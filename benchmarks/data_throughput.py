"""Market data at scale (issue #11): CSV load time and peak memory, the data cache, the memory
of a local_mp run's node processes, and a universe of many files under local_mt.

    python benchmarks/data_throughput.py [--rows 2000000] [--workdir DIR] [--repeats 3]
                                         [--skip_local_mp] [--skip_universe]

1. Writes a generated 1-minute OHLCV CSV (--rows rows) and measures, each in a fresh process
   (best time of --repeats, the largest peak RSS): pyarrow.csv.read_csv alone; load_csv with
   the cache off (full validation); a cache miss (validation + features + writing the cache);
   a cache hit, and a hit that then reads every page of every array.
2. local_mp with 4 actors on that file, with the cache and without it, and on a 20,000-row
   file with the same flags: while the nodes run, the PSS (proportional set size: a shared page
   counts 1/N in each of the N processes mapping it) of the driver and every Ray worker, from
   /proc/<pid>/smaps; the cache file's own mappings are summed separately. Market data's share
   = Σ PSS(big file) - Σ PSS(20,000-row file), against one copy = the cache file's size.
3. A universe of 100 instruments x 100,000 bars (a folder of 100 CSVs): load time with a cache
   miss and a hit (fresh processes), then a local_mt run on it and its env and learner steps.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

SAMPLE_AT_ENV_STEPS = 5_000
RUN_FLAGS = ["--num_actors=4", "--eval_every=1000000000", "--checkpoint_every=0",
             "--train_fraction=0.9", "--validation_fraction=0.05"]


def write_bars_csv(path: pathlib.Path, rows: int, seed: int = 0) -> None:
    """A random-walk 1-minute OHLCV CSV with ISO timestamps, oldest first."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(0.0005 * rng.standard_normal(rows)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    wick = np.abs(rng.standard_normal((2, rows))) * 0.0003
    high = np.maximum(open_, close) * np.exp(wick[0])
    low = np.minimum(open_, close) * np.exp(-wick[1])
    volume = np.round(1000 * np.exp(0.5 * rng.standard_normal(rows)))
    stamps = np.datetime64("2015-01-01T00:00", "s") + np.arange(rows) * np.timedelta64(60, "s")
    with open(path, "w") as file:
        file.write("timestamp,open,high,low,close,volume\n")
        for a in range(0, rows, 200_000):
            b = min(rows, a + 200_000)
            text = np.char.replace(np.datetime_as_string(stamps[a:b]), "T", " ")
            columns = zip(text, open_[a:b], high[a:b], low[a:b], close[a:b], volume[a:b])
            file.write("".join(f"{s},{o:.4f},{h:.4f},{lo:.4f},{c:.4f},{v:.0f}\n"
                               for s, o, h, lo, c, v in columns))


# ----------------------------------------------------------------------------- 1. loading


def child(mode: str, csv: str, cache: str) -> None:
    """One measurement in this (fresh) process; prints a JSON line."""
    if mode == "bare":
        import pyarrow.csv as pa_csv

        start = time.perf_counter()
        pa_csv.read_csv(csv)
    elif mode == "universe":
        from environments import MarketSource

        start = time.perf_counter()
        splits = MarketSource(csv, cache=cache).load()
        assert len(splits.train) == 100
    else:
        from environments import load_csv

        if mode in ("validated", "miss"):  # a parse imports pyarrow on first use; not timed
            from environments.data import csv_columnar  # noqa: F401

        start = time.perf_counter()
        market = load_csv(csv, cache=False if mode == "validated" else cache)
        if mode == "hit_touch":
            for name in ("timestamps", "open", "high", "low", "close", "volume", "features"):
                getattr(market, name).view(np.uint8).sum()  # reads every page
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "peak_rss": peak}))


def measure(modes: list[str], csv: pathlib.Path, cache: pathlib.Path, repeats: int,
            clear_cache: bool = False) -> dict[str, dict]:
    """{mode: best seconds, largest peak RSS} over `repeats` fresh processes per mode, the
    modes taking turns (so that a busy moment of the machine hits all of them alike)."""
    results = {mode: [] for mode in modes}
    for _ in range(repeats):
        for mode in modes:
            if clear_cache:
                shutil.rmtree(cache, ignore_errors=True)
            out = subprocess.run([sys.executable, __file__, "--child", mode, str(csv),
                                  str(cache)], check=True, capture_output=True, text=True)
            results[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {mode: {"seconds": min(r["seconds"] for r in runs),
                   "peak_rss": max(r["peak_rss"] for r in runs)} for mode, runs in results.items()}


# ----------------------------------------------------------------------------- 2. local_mp


def pss(pid: int, cache_suffix: str = ".bars") -> tuple[int, int]:
    """(PSS of the whole process, PSS of its mappings of cache files), in bytes."""
    total = cached = 0
    in_cache = False
    try:
        with open(f"/proc/{pid}/smaps") as file:
            for line in file:
                if line[0] in "0123456789abcdef" and "-" in line.split(" ", 1)[0]:
                    in_cache = line.rstrip().endswith(cache_suffix)
                elif line.startswith("Pss:"):
                    kilobytes = int(line.split()[1]) * 1024
                    total += kilobytes
                    cached += kilobytes if in_cache else 0
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return total, cached


def node_processes(root: int) -> dict[int, str]:
    """The driver and the Ray worker processes under it: pid -> process title."""
    import psutil

    found = {}
    try:
        processes = [psutil.Process(root)] + psutil.Process(root).children(recursive=True)
    except psutil.NoSuchProcess:
        return found
    for process in processes:
        try:
            title = " ".join(process.cmdline())
        except psutil.Error:
            continue
        if process.pid == root or title.startswith("ray::"):
            found[process.pid] = title
    return found


def run_local_mp(csv: pathlib.Path, workdir: pathlib.Path, cache: str, seconds: float) -> dict:
    """Runs apex.py under local_mp and samples node PSS every 2 s while the nodes run."""
    command = [sys.executable, str(REPO_ROOT / "launch" / "apex.py"), "--lp_launch_type=local_mp",
               f"--data={csv}", f"--data_cache={cache}", f"--workdir={workdir}",
               f"--max_seconds={seconds}", *RUN_FLAGS]
    started = time.monotonic()
    log = open(f"{workdir}.log", "w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                               env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    samples, seen = [], set()
    stop = threading.Event()

    def sample():  # between the launcher's "node processes up" and "stopping:" lines
        up = None
        while not stop.wait(2.0):
            nodes = node_processes(process.pid)
            seen.update(nodes)
            text = pathlib.Path(f"{workdir}.log").read_text()
            if up is None and "node processes up" in text:
                up = time.monotonic()
            if up is not None and "stopping:" not in text:
                steps = re.findall(r"env steps ([\d,]+) \(", text)
                steps = int(steps[-1].replace(",", "")) if steps else 0
                values = {pid: pss(pid) for pid in nodes}
                if "stopping:" not in pathlib.Path(f"{workdir}.log").read_text():
                    samples.append((steps, values, nodes))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    process.wait(timeout=seconds + 900)
    stop.set()
    thread.join()
    log.close()
    import psutil

    for pid in seen:  # the run closes its Ray; anything left is ours to end
        if psutil.pid_exists(pid):
            os.kill(pid, 9)
    if process.returncode != 0 or not (workdir / "summary.json").exists():
        raise RuntimeError(f"{' '.join(command)} failed (exit {process.returncode}); see "
                           f"{workdir}.log")
    summary = json.loads((workdir / "summary.json").read_text())
    if not samples:
        raise RuntimeError(f"no sample with all nodes up: {command}")
    # The first samples once the actors have made SAMPLE_AT_ENV_STEPS steps, so that runs are
    # compared with about the same replay contents; the last ones if a run never got there.
    steady = [s for s in samples if s[0] >= SAMPLE_AT_ENV_STEPS][:3] or samples[-3:]
    totals = [sum(v[0] for v in values.values()) for _, values, _ in steady]
    cached = [sum(v[1] for v in values.values()) for _, values, _ in steady]
    middle = int(np.argsort(totals)[len(totals) // 2])
    _, values, titles = steady[middle]
    return {"pss_total": totals[middle], "pss_cache": cached[middle], "at_steps": steady[middle][0],
            "processes": len(values), "env_steps": summary["env_steps"],
            "learner_steps": summary["learner_steps"], "wall_s": time.monotonic() - started,
            "by_process": sorted((("driver" if pid == process.pid else
                                   titles[pid].split()[0].split(":")[-1][:24], v[0], v[1])
                                  for pid, v in values.items()), key=lambda r: -r[1])}


# ----------------------------------------------------------------------------- 3. universe


def run_universe(workdir: pathlib.Path, repeats: int) -> dict:
    folder = workdir / "universe"
    folder.mkdir(exist_ok=True)
    for index in range(100):
        path = folder / f"inst{index:03d}.csv"
        if not path.exists():
            write_bars_csv(path, 100_000, seed=1000 + index)
    cache = workdir / "universe_cache"
    miss = measure(["universe"], folder, cache, 1, clear_cache=True)["universe"]
    hit = measure(["universe"], folder, cache, repeats)["universe"]
    run_dir = workdir / "universe_run"
    shutil.rmtree(run_dir, ignore_errors=True)
    start = time.monotonic()
    subprocess.run([sys.executable, str(REPO_ROOT / "launch" / "apex.py"),
                    "--lp_launch_type=local_mt", f"--data={folder}", f"--data_cache={cache}",
                    f"--workdir={run_dir}", "--num_actors=2", "--max_seconds=30",
                    "--eval_every=1000000000", "--checkpoint_every=0"],
                   check=True, capture_output=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"miss": miss, "hit": hit, "run_s": time.monotonic() - start,
            "env_steps": summary["env_steps"], "learner_steps": summary["learner_steps"]}


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--workdir", default=None, help="default: a temporary folder, removed")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--run_seconds", type=float, default=60.0)
    parser.add_argument("--skip_local_mp", action="store_true")
    parser.add_argument("--skip_universe", action="store_true")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    temporary = None if args.workdir else tempfile.mkdtemp(prefix="data_throughput_")
    workdir = pathlib.Path(args.workdir or temporary)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        report(args, workdir)
    finally:
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)


def report(args, workdir: pathlib.Path) -> None:
    MB = 1e6
    csv = workdir / f"bars_{args.rows}.csv"
    if not csv.exists():
        write_bars_csv(csv, args.rows)
    cache = workdir / "cache"
    print(f"{csv}: {args.rows:,} rows, {csv.stat().st_size / MB:.0f} MB; best time of "
          f"{args.repeats} fresh processes, largest peak RSS", flush=True)
    parsed = measure(["bare", "validated"], csv, cache, args.repeats)
    cached = measure(["miss"], csv, cache, args.repeats, clear_cache=True)
    cached.update(measure(["hit", "hit_touch"], csv, cache, args.repeats))
    bare = parsed["bare"]
    rows = [("pyarrow.csv.read_csv (no validation)", bare),
            ("load_csv, cache off (full validation)", parsed["validated"]),
            ("load_csv, cache miss (+ features, write)", cached["miss"]),
            ("load_csv, cache hit", cached["hit"]),
            ("load_csv, cache hit + read every page", cached["hit_touch"])]
    print(f"{'load':<44}{'seconds':>9}{'x bare':>8}{'peak RSS MB':>13}{'x bare':>8}")
    for name, result in rows:
        print(f"{name:<44}{result['seconds']:>9.3f}{result['seconds'] / bare['seconds']:>8.2f}"
              f"{result['peak_rss'] / MB:>13.0f}{result['peak_rss'] / bare['peak_rss']:>8.2f}")
    (cache_file,) = [p for p in cache.iterdir() if p.suffix == ".bars"]
    one_copy = cache_file.stat().st_size
    print(f"one copy (the cache file: timestamps, OHLCV, features): {one_copy / MB:.0f} MB\n",
          flush=True)

    if not args.skip_local_mp:
        small = workdir / "bars_20000.csv"
        if not small.exists():
            write_bars_csv(small, 20_000)
        measure(["hit"], small, cache, 1)  # builds its cache: no run's driver parses a file
        runs = {}
        for label, path, cache_setting in (("cache on", csv, str(cache)),
                                           ("cache off", csv, "off"),
                                           ("20,000 rows", small, str(cache))):
            run_dir = workdir / f"mp_{label.replace(' ', '_').replace(',', '')}"
            shutil.rmtree(run_dir, ignore_errors=True)
            try:
                runs[label] = run_local_mp(path, run_dir, cache_setting, args.run_seconds)
            except RuntimeError as error:  # e.g. nodes that did not start on a busy machine
                print(f"local_mp run '{label}' failed, left out: {error}", flush=True)
        base = runs["20,000 rows"]["pss_total"] if "20,000 rows" in runs else float("nan")
        print(f"local_mp, 4 actors, {' '.join(RUN_FLAGS)}: Σ PSS over the driver and "
              f"{runs['cache on']['processes'] - 1} Ray workers once the actors have made "
              f"{SAMPLE_AT_ENV_STEPS:,} env steps (median of 3 samples, 2 s apart)")
        print(f"{'run':<14}{'Σ PSS MB':>10}{'- 20k run MB':>14}{'x one copy':>12}"
              f"{'cache maps MB':>15}{'at env steps':>14}{'run env steps':>15}{'learner':>9}")
        for label, run in runs.items():
            extra = run["pss_total"] - base
            print(f"{label:<14}{run['pss_total'] / MB:>10.0f}{extra / MB:>14.0f}"
                  f"{extra / one_copy:>12.2f}{run['pss_cache'] / MB:>15.0f}"
                  f"{run['at_steps']:>14,}{run['env_steps']:>15,}{run['learner_steps']:>9,}")
        for label in runs:
            print(f"  {label}, by process (PSS MB, of which cache maps): " + ", ".join(
                f"{title} {total / MB:.0f} ({cached / MB:.0f})"
                for title, total, cached in runs[label]["by_process"]))
        print(flush=True)

    if not args.skip_universe:
        result = run_universe(workdir, args.repeats)
        print("universe: 100 CSV files x 100,000 one-minute bars (MarketSource(folder).load(), "
              "fresh process)")
        print(f"  cache miss {result['miss']['seconds']:.1f} s (peak RSS "
              f"{result['miss']['peak_rss'] / MB:.0f} MB), cache hit "
              f"{result['hit']['seconds']:.2f} s (peak RSS "
              f"{result['hit']['peak_rss'] / MB:.0f} MB)")
        print(f"  local_mt, 2 actors, --max_seconds=30: {result['env_steps']:,} env steps, "
              f"{result['learner_steps']:,} learner steps, {result['run_s']:.0f} s from launch to "
              "summary")


if __name__ == "__main__":
    main()
