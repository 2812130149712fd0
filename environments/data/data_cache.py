"""One validated copy of a CSV market per machine: a binary file holding the checked arrays and
the features, written once, then memory-mapped read-only by every process that loads the CSV,
so N processes on a machine share its pages instead of each parsing and holding a copy.

Where: `.apex_cache/` beside the CSV when that folder is writable, else
$XDG_CACHE_HOME/apex-trader (default ~/.cache/apex-trader); $APEX_DATA_CACHE (or the `cache`
argument of load_csv) names another folder, or "off" to read the CSV every time.

Validity: the cache file of a CSV records the CSV's size, its mtime (ns) and a blake2b hash of
sampled blocks (the first and last MiB and 64 KiB at 64 evenly spaced places; the whole file
below 8 MiB), plus the parsing and feature code's version. Any difference, a `touch` included,
rebuilds it. Hashing the whole file instead would cost ~0.15 s per 100 MB on every load, more
than the load itself; a change that keeps the size and the mtime and misses every sampled block
is not detected (touch the file, or delete its cache file).

Concurrency: a process builds under an exclusive lock on `<cache file>.lock` (others wait,
then map what it wrote), writes to a temporary file and renames it into place, so a reader
sees a whole old file or a whole new one, never a part.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import mmap
import os
import pathlib
import tempfile
from typing import Callable

import numpy as np

ENV_VAR = "APEX_DATA_CACHE"
OFF = ("off", "0", "false", "no")
FOLDER_NAME = ".apex_cache"
FORMAT_VERSION = 1  # bump when what load_csv returns for a file changes
_MAGIC = b"APEXBARS"
_ALIGN = 64  # bytes; every array starts at a multiple of this
_SAMPLES, _SAMPLE_BYTES, _END_BYTES = 64, 1 << 16, 1 << 20
# The reader's source files: their text is part of the key
_CODE = ("market.py", "features.py", "timestamps.py", "csv_rows.py", "csv_columnar.py",
         "csv_loader.py")


def cache_folder(csv_path: str, cache: bool | str | None = None) -> str | None:
    """The folder of `csv_path`'s cache file, or None when caching is off."""
    setting = os.environ.get(ENV_VAR, "") if cache is None else cache
    if setting is False or (isinstance(setting, str) and setting.strip().lower() in OFF):
        return None
    if isinstance(setting, (str, os.PathLike)) and str(setting).strip().lower() not in (
            "", "on", "1", "true", "yes"):
        return os.fspath(setting)
    beside = os.path.join(os.path.dirname(os.path.abspath(csv_path)), FOLDER_NAME)
    if _writable(os.path.dirname(beside)) or _writable(beside):
        return beside
    user_cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"),
                                                                  ".cache")
    return os.path.join(user_cache, "apex-trader")


def _writable(folder: str) -> bool:
    """Writable by mode bits, not only for root: a folder made read-only is left alone."""
    try:
        mode = os.stat(folder).st_mode
    except OSError:
        return False
    return bool(mode & 0o222) and os.access(folder, os.W_OK | os.X_OK)


def cache_file(csv_path: str, date_format: str | None,
               cache: bool | str | None = None) -> str | None:
    """The cache file of `csv_path` read with `date_format`, or None when caching is off.
    Named after the file and a hash of its absolute path, so one folder can hold the caches
    of many same-named files."""
    folder = cache_folder(csv_path, cache)
    if folder is None:
        return None
    name = os.path.abspath(csv_path) + "\0" + (date_format or "")
    digest = hashlib.blake2b(name.encode(), digest_size=8).hexdigest()
    return os.path.join(folder, f"{os.path.basename(csv_path)}.{digest}.bars")


def source_key(csv_path: str, date_format: str | None) -> dict:
    """What the cache of `csv_path` must match: the file's size, mtime, sampled-block hash, and
    the version of the code that turned it into arrays."""
    stat = os.stat(csv_path)
    sample = hashlib.blake2b(digest_size=16)
    with open(csv_path, "rb") as file:
        if stat.st_size <= _SAMPLES * _SAMPLE_BYTES + 2 * _END_BYTES:
            for block in iter(lambda: file.read(1 << 20), b""):
                sample.update(block)
        else:
            places = np.linspace(_END_BYTES, stat.st_size - _END_BYTES - _SAMPLE_BYTES, _SAMPLES)
            for offset, size in ([(0, _END_BYTES)] + [(int(p), _SAMPLE_BYTES) for p in places]
                                 + [(stat.st_size - _END_BYTES, _END_BYTES)]):
                file.seek(offset)
                sample.update(file.read(size))
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "sample_blake2b": sample.hexdigest(), "date_format": date_format,
            "format_version": FORMAT_VERSION, "code": _code_version()}


_code_digest: str | None = None


def _code_version() -> str:
    global _code_digest
    if _code_digest is None:
        digest = hashlib.blake2b(digest_size=8)
        for name in _CODE:
            digest.update((pathlib.Path(__file__).parent / name).read_bytes())
        _code_digest = digest.hexdigest()
    return _code_digest


def _aligned(size: int) -> int:
    return -(-size // _ALIGN) * _ALIGN


def read(path: str, key: dict) -> dict[str, np.ndarray] | None:
    """The arrays of cache file `path` as read-only memory maps, or None when it is missing,
    stale (its key differs) or unreadable.

    Layout: magic, header size (8 bytes, little-endian), a JSON header {key, arrays: {name:
    dtype, shape, offset}}, then each array's bytes at `offset` past the first multiple of
    64 bytes after the header (and each at a multiple of 64 bytes itself).
    """
    try:
        with open(path, "rb") as file:
            if file.read(len(_MAGIC)) != _MAGIC:
                return None
            header_size = int.from_bytes(file.read(8), "little")
            header = json.loads(file.read(header_size))
            if header.get("key") != key:
                return None
            mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError, AttributeError):
        return None
    start = _aligned(len(_MAGIC) + 8 + header_size)
    arrays = {}
    try:
        for name, spec in header["arrays"].items():
            shape = tuple(spec["shape"])
            array = np.frombuffer(mapped, dtype=np.dtype(spec["dtype"]),
                                  count=int(np.prod(shape)), offset=start + spec["offset"])
            arrays[name] = array.reshape(shape)  # read-only, as the map is
    except (KeyError, TypeError, ValueError):  # a truncated or foreign file
        return None
    return arrays


def write(path: str, key: dict, arrays: dict[str, np.ndarray]) -> None:
    """Writes `arrays` and `key` to `path` atomically (a temporary file renamed into place)."""
    specs, offset = {}, 0
    for name, array in arrays.items():
        specs[name] = {"dtype": array.dtype.str, "shape": list(array.shape), "offset": offset}
        offset += _aligned(array.nbytes)
    header = json.dumps({"key": key, "arrays": specs}).encode()
    start = _aligned(len(_MAGIC) + 8 + len(header))
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp",
                                             dir=folder)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(_MAGIC + len(header).to_bytes(8, "little") + header)
            for spec, array in zip(specs.values(), arrays.values()):
                file.seek(start + spec["offset"])
                file.write(np.ascontiguousarray(array).view(np.uint8).data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def _build_lock(path: str):
    """Holds an exclusive lock on `path`.lock; without one (a folder we cannot write, a file
    system without locks) the build goes ahead unlocked: the rename keeps it safe."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        lock = open(path + ".lock", "a")
    except OSError:
        yield
        return
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
        except OSError:
            pass
        yield


def load_or_build(path: str, csv_path: str, date_format: str | None,
                  build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The cached arrays of `csv_path` (memory-mapped from `path`), built by `build()` and
    written first when the cache is missing or stale. When the cache cannot be written, the
    built arrays are returned with a warning."""
    key = source_key(csv_path, date_format)
    arrays = read(path, key)
    if arrays is not None:
        return arrays
    with _build_lock(path):
        arrays = read(path, key)  # built by another process while this one waited
        if arrays is not None:
            return arrays
        built = build()
        try:
            write(path, key, built)
        except OSError as error:
            logging.warning("%s: could not write the data cache %s (%s); loading without it "
                            "(set %s to a writable folder, or to 'off')", csv_path, path, error,
                            ENV_VAR)
            return built
        arrays = read(path, key)
    return arrays if arrays is not None else built


def is_memory_mapped(array: np.ndarray) -> bool:
    """Whether `array` is (a view of) a memory-mapped file, e.g. a cache file read here."""
    base = array
    while isinstance(base, np.ndarray):
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    return isinstance(base, (mmap.mmap, np.memmap))
