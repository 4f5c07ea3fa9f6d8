"""Process-wide JAX settings that entry points (CLI, examples, scripts) opt into.

The library never changes global JAX flags on import; an entry point calls these.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import jax

CACHE_ENV = "ITP_PD_COMPILATION_CACHE"


def enable_compilation_cache(directory: str | Path | None = None) -> Path:
    """Keep compiled XLA programs on disk, so a later process with the same shapes skips
    compilation (JAX's persistent compilation cache).

    The ITP model's programs take 10–20 s each to compile on a 2-core CPU; with the cache a
    second ``examples/forecast_patient.py`` run measured 18 s instead of 49 s (tracing remains).

    Args:
        directory: where to keep them; default ``$ITP_PD_COMPILATION_CACHE`` or
            ``~/.cache/itp-pd/jax``.

    Returns:
        the directory used.
    """
    directory = Path(directory or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "itp-pd" / "jax")
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
