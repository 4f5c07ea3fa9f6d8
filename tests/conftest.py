"""Test configuration: float64 and strict dtype promotion, set here by the entry point.

The library itself never flips global JAX flags on import (design.md §3.5).
"""

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")

# Compiled programs shared between tests through JAX's persistent cache, in a folder of this
# session's own (so no run depends on an earlier one): many tests build the same model and
# data shapes, and the ITP model's programs take 10-20 s each to compile. Each pytest-xdist
# worker imports this file and so has a folder of its own: two processes never write the
# same cache entry while the other reads it.
import atexit  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

_CACHE = tempfile.mkdtemp(prefix="itp-pd-test-cache-")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
jax.config.update("jax_compilation_cache_dir", _CACHE)
os.environ["ITP_PD_COMPILATION_CACHE"] = _CACHE  # the CLI's and subprocesses' cache too
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)

import gc  # noqa: E402

import pytest  # noqa: E402


def _memory_maps() -> int:
    """This process's memory maps (Linux); a large number elsewhere, so that caches are dropped."""
    try:
        with open("/proc/self/maps", "rb") as maps:
            return sum(1 for _ in maps)
    except OSError:
        return 1 << 30


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop the in-memory compiled programs after a test module once they hold many memory maps.

    Each XLA:CPU executable holds several memory maps, and the fast suite compiles thousands
    of them (new shapes, new static arguments per model and dataset). Kept for the whole
    session they passed Linux's default limit of 65,530 maps per process near the end of
    the suite, and the compiler then crashed with a segmentation fault (measured: 48,000
    maps at three quarters of the suite). Programs a later module needs again come back from
    the persistent cache above; dropping them only past 20,000 maps keeps those reloads few.
    """
    yield
    if _memory_maps() > 20_000:
        jax.clear_caches()
        gc.collect()
