"""Let diffrax's reverse-mode loops run under ``shard_map`` and ``pmap`` (equinox 0.13.8).

Differentiating a ``diffeqsolve`` inside ``shard_map`` (or ``pmap``) fails with "Closure-converted
function called with different dynamic arguments": equinox's checkpointed while loop
closure-converts its body and later checks its arguments' shapes, dtypes *and shardings*
against the first call, and inside a mapped region the same array can carry different
sharding metadata (diffrax issue 765; the fix, equinox pull request 1261, is not released).
The values are unaffected, so comparing shape and dtype alone is safe; that is all this
changes. Applied only by the code paths that shard (``simulate_population(mesh=)`` and
chains on separate devices), never on import.
"""

from __future__ import annotations

import jax


def _shape_and_dtype(tree):
    return jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype), tree)


def allow_sharded_closures() -> None:
    """Make equinox's closure-conversion check ignore sharding metadata (idempotent)."""
    import equinox._ad as equinox_ad

    # The check compares ``_strip_weak_dtype(...)`` of both calls; a missing helper means a
    # different equinox, whose check may need no help (pyproject pins equinox < 0.14).
    if hasattr(equinox_ad, "_strip_weak_dtype"):
        equinox_ad._strip_weak_dtype = _shape_and_dtype
