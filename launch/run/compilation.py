"""JAX's persistent compilation cache for a run (--compilation_cache): on by default where it is
safe (jax >= 0.5, requirements-today.txt), off on the pinned jax 0.4.34, whose CPU executables
loaded from the cache can crash (BUILD.md)."""

from __future__ import annotations

import importlib.metadata
import os

from launch.run.setup import UsageError

# The first jax line whose cached CPU executables ran without a crash in our checks (BUILD.md).
SAFE_FROM = (0, 5)
DEFAULT_FOLDER = os.path.join("~", ".cache", "apex-trader", "jax-compilation")


def jax_version() -> tuple[int, ...]:
    """The installed jax's version as numbers, read without importing jax."""
    text = importlib.metadata.version("jax")
    return tuple(int(part) for part in text.split(".")[:2] if part.isdigit())


def cache_folder(flag: str | None) -> str | None:
    """The folder the run caches compiled programs in, or None when the cache is off.

    flag: --compilation_cache's value ('off', a folder, or None for the default: on jax >= 0.5
    $APEX_COMPILATION_CACHE, else DEFAULT_FOLDER). UsageError when a folder is asked of a jax
    that cannot use one safely.
    """
    if flag == "off":
        return None
    safe = jax_version() >= SAFE_FROM
    if flag is None:
        return os.path.expanduser(os.environ.get("APEX_COMPILATION_CACHE") or DEFAULT_FOLDER) if safe else None
    if not safe:
        raise UsageError(f"--compilation_cache={flag}: jax {importlib.metadata.version('jax')}'s cached "
                         "CPU executables can crash when loaded (BUILD.md); expected 'off', or "
                         "jax >= 0.5 (pip install -r requirements-today.txt)")
    return os.path.abspath(os.path.expanduser(flag))


def enable(flag: str | None) -> str | None:
    """Points JAX's persistent cache at cache_folder(flag) (before anything compiles); returns
    the folder, or None when off. Programs that compile in under a second are not kept."""
    folder = cache_folder(flag)
    if folder is None:
        return None
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise UsageError(f"--compilation_cache={flag or folder}: cannot create {folder} "
                         f"({error.strerror}); pass another folder or 'off'") from None
    import jax

    jax.config.update("jax_compilation_cache_dir", folder)
    return folder
