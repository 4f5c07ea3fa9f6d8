"""Process-wide JAX settings that entry points (CLI, examples, scripts) opt into.

The library never changes global JAX flags on import; an entry point calls these.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import jax

CACHE_ENV = "ITP_PD_COMPILATION_CACHE"
HOST_DEVICES_ENV = "ITP_PD_HOST_DEVICES"
_HOST_DEVICE_FLAG = "--xla_force_host_platform_device_count"
_FLAGS_BEFORE: str | None = None  # $XLA_FLAGS before use_every_core added its device count
_ADDED = False


def host_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def use_every_core(count: int | None = None) -> int:
    """Give XLA one CPU device per core, so that the engine can split patients across them.

    XLA's CPU backend is one device whose adaptive ODE loops run on one core; with one device
    per core the engine solves each core's share of the patients side by side (``shard_map``,
    ``itp_pd.engine.simulate_population``). Measured on the 2-core CPU (issue 16): 1.84× on
    the 120-patient ITP gradient, results equal to the solver's tolerance.

    Must run before JAX's backend starts (before the first array or ``jax.devices()``); later
    it changes nothing. ``$XLA_FLAGS`` naming a device count wins, then ``count``, then
    ``$ITP_PD_HOST_DEVICES`` (``1``: one device, as before), then ``host_cores()``.

    Returns:
        the number of CPU devices JAX will have (or has, when it had started already).
    """
    global _FLAGS_BEFORE, _ADDED
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        return len(jax.devices("cpu"))
    flags = os.environ.get("XLA_FLAGS", "")
    if _HOST_DEVICE_FLAG in flags:
        return int(flags.split(_HOST_DEVICE_FLAG + "=")[1].split()[0])
    if count is None:
        requested = os.environ.get(HOST_DEVICES_ENV, "").strip()
        if requested and not (requested.isdigit() and int(requested) >= 1):
            from .errors import ItpPdError

            raise ItpPdError(f"${HOST_DEVICES_ENV} is {requested!r}; expected a whole number of CPU devices "
                             "of at least 1 (1: one device, every patient on one core)")
        count = int(requested) if requested else host_cores()
    if count > 1:
        _FLAGS_BEFORE, _ADDED = os.environ.get("XLA_FLAGS"), True
        os.environ["XLA_FLAGS"] = f"{flags} {_HOST_DEVICE_FLAG}={count}".strip()
    return count


def one_device_for_child_processes() -> None:
    """Undo ``use_every_core``'s ``$XLA_FLAGS`` for processes started from now on (this one
    keeps its devices): Ray's workers each run one fit on one core, and a device per core in
    each of them would put several solver loops on every core."""
    if not _ADDED:
        return  # no device count of ours: one the user set is theirs to keep
    if _FLAGS_BEFORE is None:
        os.environ.pop("XLA_FLAGS", None)
    else:
        os.environ["XLA_FLAGS"] = _FLAGS_BEFORE


def configure_entry_point(*, cache: bool = True) -> None:
    """What every entry point (the CLI, examples, benchmarks) sets before its first JAX work:
    one XLA CPU device per core (``use_every_core``), float64, and the persistent compilation
    cache (``enable_compilation_cache``; off with ``cache=False`` or
    ``$ITP_PD_COMPILATION_CACHE=off``). The library itself never changes these on import."""
    use_every_core()
    jax.config.update("jax_enable_x64", True)
    if cache and os.environ.get(CACHE_ENV, "").strip().lower() != "off":
        enable_compilation_cache()


def enable_compilation_cache(directory: str | Path | None = None) -> Path:
    """Keep compiled XLA programs on disk, so a later process with the same shapes skips
    compilation (JAX's persistent compilation cache).

    The ITP model's programs take 10–20 s each to compile on a 2-core CPU; with the cache a
    second ``examples/forecast_patient.py`` run measured 18 s instead of 49 s (tracing remains).

    Args:
        directory: where to keep them; default ``$ITP_PD_COMPILATION_CACHE`` (unless ``off``)
            or ``~/.cache/itp-pd/jax``.

    Returns:
        the directory used.
    """
    configured = os.environ.get(CACHE_ENV, "").strip()
    configured = None if configured.lower() in ("", "off") else configured
    directory = Path(directory or configured or Path.home() / ".cache" / "itp-pd" / "jax")
    directory.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(directory))
    # Only programs worth keeping: the small host-side helpers compile in milliseconds.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    return directory


def progress_bar(total: int, description: str, *, enabled: bool = True):
    """A tqdm progress bar on stderr (tqdm comes with NumPyro); inert when ``enabled`` is false.

    Use as a context manager or call ``close()``; ``bar.update(done - bar.n)`` follows a
    callback that reports a running total.
    """
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, file=sys.stderr, disable=not enabled, leave=True,
                dynamic_ncols=True)
