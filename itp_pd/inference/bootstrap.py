"""Case bootstrap of a hierarchical fit: MAP refits of patient-resampled datasets, packed.

A bootstrap replicate draws ``n_patients`` patients with replacement and refits. Every
replicate has the same padded shape as the original, so resampling is an index into the
leading patient axis of the model's data arrays (event grids, observation masks,
covariates) and of the observations: exact, and no dataset is rebuilt.

Replicates can then run *packed*: one compiled program steps all of them at once (``vmap``
of the MAP optimiser over a replicate axis), instead of one after the other. Both drivers
start every replicate from the same point (the prior medians drawn with ``key``, as
``run_optimiser`` does) and take the same Adam steps, so they give the same estimates to
rounding; which is faster depends on the device (``benchmarks/scale.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from .recipe import MapSettings
from .samplers import _compiled_chunk, _optimiser_program, initial_state


@dataclass
class BootstrapFits:
    """MAP estimates of each bootstrap replicate.

    Attributes:
        estimates: site name → ``(n_replicates, ...)`` (population sites, omegas, sigmas, z).
        final_loss: ``(n_replicates,)`` negative log density at the last step.
        compile_s: seconds compiling the optimiser program (s).
        run_s: seconds of optimisation after compiling (s).
    """

    estimates: dict[str, np.ndarray]
    final_loss: np.ndarray
    compile_s: float
    run_s: float


def bootstrap_indices(n_patients: int, n_replicates: int, *, key) -> jnp.ndarray:
    """``(n_replicates, n_patients)`` patient positions drawn with replacement."""
    return jax.random.randint(key, (n_replicates, n_patients), 0, n_patients)


def resample_patients(data, obs, indices):
    """Model data and observations of each replicate: leading axes ``(n_replicates, n_patients)``.

    Args:
        data: the model's data pytree (``model.data``; every leaf has a leading patient axis).
        obs: observations ``(n_patients, n_obs)``.
        indices: ``(n_replicates, n_patients)`` from ``bootstrap_indices``.
    """
    return jax.tree.map(lambda leaf: jnp.asarray(leaf)[indices], data), jnp.asarray(obs)[indices]


def _start(model, settings, data, obs, key):
    svi, run_chunk = _optimiser_program(model, "map", settings, settings.steps)
    with jax.numpy_dtype_promotion("standard"):
        first = jax.tree.map(lambda leaf: leaf[0], (data, obs))
        state = initial_state(svi, key, first[1], first[0])
    return svi, run_chunk, state


def _estimates(svi, states) -> dict[str, np.ndarray]:
    with jax.numpy_dtype_promotion("standard"):
        params = jax.vmap(svi.get_params)(states)
    suffix = "_auto_loc"
    return {name[: -len(suffix)]: np.asarray(value) for name, value in params.items() if name.endswith(suffix)}


def fit_map_packed(model, data, obs, settings: MapSettings, *, key) -> BootstrapFits:
    """MAP of every replicate in one compiled program (``vmap`` over the replicate axis).

    Args:
        model: the ``HierarchicalModel`` of the original dataset.
        data, obs: from ``resample_patients`` (leading replicate axis).
        settings: MAP steps and learning rate.
        key: PRNG key of the starting point (shared by every replicate).
    """
    svi, run_chunk, state = _start(model, settings, data, obs, key)
    n = obs.shape[0]
    states = jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (n, *jnp.shape(leaf))), state)
    started = time.perf_counter()
    with jax.numpy_dtype_promotion("standard"):
        packed = jax.jit(jax.vmap(run_chunk)).lower(states, data, obs).compile()
        compile_s = time.perf_counter() - started
        started = time.perf_counter()
        states, losses = jax.block_until_ready(packed(states, data, obs))
    run_s = time.perf_counter() - started
    return BootstrapFits(_estimates(svi, states), np.asarray(losses[:, -1]), compile_s, run_s)


def fit_map_one_by_one(model, data, obs, settings: MapSettings, *, key) -> BootstrapFits:
    """The same MAP refits as ``fit_map_packed``, one replicate after another through one
    compiled program (the baseline it is measured against)."""
    svi, run_chunk, state = _start(model, settings, data, obs, key)
    with jax.numpy_dtype_promotion("standard"):
        first = jax.tree.map(lambda leaf: leaf[0], (data, obs))
        # The same compiled step (and cache) as run_optimiser's for this model and settings.
        compiled, compile_s = _compiled_chunk((model, "map", settings, settings.steps), run_chunk, state, *first)
        started = time.perf_counter()
        finals, last_losses = [], []
        for replicate in range(obs.shape[0]):
            one_data, one_obs = jax.tree.map(lambda leaf: leaf[replicate], (data, obs))
            final, losses = compiled(state, one_data, one_obs)
            finals.append(final)
            last_losses.append(losses[-1])
        states = jax.block_until_ready(jax.tree.map(lambda *leaves: jnp.stack(leaves), *finals))
    run_s = time.perf_counter() - started
    return BootstrapFits(_estimates(svi, states), np.asarray(jnp.stack(last_losses)), compile_s, run_s)
