"""Test configuration: float64 and strict dtype promotion, set here by the entry point.

The library itself never flips global JAX flags on import (design.md §3.5).
"""

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
