"""Simulate one trial arm for a set of patients: records → dataset → engine → wide arrays."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..data import Dataset
from ..dosing import population_records
from ..engine import population_from_dataset, simulate_population


def _dvids(model, outputs):
    return tuple(model.outputs.index(name) + 1 for name in outputs)


def prepare_arm(model, params, arm, visits, *, outputs=("PLT",), bsa=None, sizes=None):
    """Everything ``simulate_population`` needs for one arm, built once.

    Same arguments as ``simulate_arm``, and ``sizes``: padded ``(n_events, n_segments,
    n_obs)`` to force (``population_from_dataset``). Split out so that callers that simulate the same
    arm repeatedly (benchmarks) build the records, dataset and event grids only once.

    Returns:
        ``(population, params_jax, dataset)``: the padded event grids, the parameters as
        JAX arrays, and the checked dataset the grids came from (its rows map observations
        back to patient, time and DVID).
    """
    n = len(next(iter(params.values())))
    patients = pd.DataFrame({"ID": np.arange(1, n + 1)})
    if bsa is not None:
        patients["BSA"] = bsa
    records = population_records(arm, patients, np.asarray(visits, dtype=float),
                                 compartments=model.compartment_map(), dvids=_dvids(model, outputs))
    dataset = Dataset.from_table(records)
    population = population_from_dataset(dataset, model, sizes=sizes)
    params_jax = {k: jnp.asarray(v) for k, v in params.items()}
    return population, params_jax, dataset


def simulate_arm(model, params, arm, visits, *, outputs=("PLT",), bsa=None):
    """Model outputs at the visits for every patient of an arm.

    Args:
        model: structural model; ``params``: name → ``(n_patients,)`` arrays (internal units).
        arm: ``itp_pd.dosing.Arm``. visits: visit days, sorted.
        outputs: output names of the model (``model.outputs``).
        bsa: body-surface area per patient (m²), needed by per-m² doses.

    Returns:
        ``(values, status)``: output name → ``(n_patients, n_visits)`` array, and the solver
        status per patient (0 = solved).
    """
    population, params_jax, dataset = prepare_arm(model, params, arm, visits, outputs=outputs, bsa=bsa)
    result = simulate_population(model, params_jax, population)
    rows = population.obs_rows
    keep = rows >= 0
    table = dataset.table.loc[rows[keep], ["ID", "TIME", "DVID"]].reset_index(drop=True)
    table["value"] = np.asarray(result.predictions)[keep]
    values = {}
    for name, dvid in zip(outputs, _dvids(model, outputs)):
        wide = table[table["DVID"] == dvid].pivot(index="ID", columns="TIME", values="value")
        values[name] = wide.to_numpy()
    return values, np.asarray(result.status)
