"""Datasets drawn from the hierarchical model itself: for recovery tests, simulation-based
calibration and worked examples, where the true parameters must be known."""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import Predictive

from ..data import Dataset
from .model import build_model


def simulate_dataset(spec, dataset: Dataset, values: Mapping[str, float], *, key, structural=None,
                     random_effects=None) -> tuple[Dataset, dict[str, np.ndarray]]:
    """``dataset`` with DV of every measurement row redrawn from the model at ``values``.

    Args:
        spec: model spec; dataset: the design (doses, sampling times, covariates; DV ignored
            on measurement rows, which must be EVID 0 / MDV 0).
        values: site values to fix (``pop_CL``, ``omega_CL``, ``sigma_CP``, ...); sites not
            given (the ``z_`` deviations, and any population value left out) are drawn from
            their priors.
        key: PRNG key.
        structural, random_effects: as ``build_model``.

    Returns:
        ``(dataset, draw)``: the new dataset and every site of the draw (``z_``, ``eta_``,
        ``prediction``, ...), each without the leading draw axis.
    """
    model, population, observed = build_model(spec, dataset, structural=structural, random_effects=random_effects)
    fixed = {name: jnp.asarray(value)[None] for name, value in values.items()}
    with jax.numpy_dtype_promotion("standard"):
        draw = Predictive(model, params=fixed, num_samples=1)(key)
    draw = {name: np.asarray(value[0]) for name, value in draw.items()}
    if int(draw["solver_failures"]) != 0:
        raise ValueError(f"{int(draw['solver_failures'])} simulated patients could not be solved; "
                         "use another key or parameter values")
    table = dataset.table.copy()
    keep = observed.is_data
    table.loc[population.obs_rows[keep], "DV"] = draw["obs"][keep]
    return Dataset.from_table(table), draw
