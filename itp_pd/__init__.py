"""itp-pd: mechanistic pharmacodynamic modelling of immune thrombocytopenia in JAX.

The library never changes global JAX settings on import; entry points (the CLI, examples,
tests) enable float64 with ``jax.config.update("jax_enable_x64", True)``.
"""

__version__ = "0.1.0"
