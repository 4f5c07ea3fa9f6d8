"""Simulated trial datasets: virtual patients, dosed as a trial design, measured at its visits.

The result is an ordinary NONMEM-format ``Dataset`` (doses, observation rows with DV, BSA and
ARM covariates) — what a site would send — so fits, recovery tests and benchmarks start from
the same kind of data as a real analysis, and the known true parameters come back alongside.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..data import Dataset
from ..dosing import population_records
from ..engine import population_from_dataset, simulate_population
from ..errors import SolverError
from .measurement import simulate_measurements
from .virtual_population import ENTRY_PLATELETS, sample_patients


def simulate_trial_dataset(
    spec,
    model,
    arms: Mapping[str, object],
    n_per_arm: int,
    visits,
    *,
    seed: int,
    outputs: Sequence[str] = ("PLT",),
    typical: Mapping[str, float] | None = None,
    omega: Mapping[str, float] | None = None,
    expand_doses: bool = True,
    entry_platelets: float | None = ENTRY_PLATELETS,
) -> tuple[Dataset, dict[str, np.ndarray]]:
    """A measured trial: ``n_per_arm`` patients on each arm, sampled at ``visits``.

    Patients are drawn with ``sample_patients`` (the spec's IIV and covariates, trial
    eligibility), numbered 1..n arm after arm; ARM is the arm's position in ``arms`` (0, 1, ...).
    Measurements are the model's predictions with the spec's residual error for each output.

    Args:
        spec: the model spec (population values, IIV, residual error per output).
        model: the structural model (``model_from_spec(spec)``).
        arms: arm name → ``itp_pd.dosing.Arm`` (e.g. ``nct07057778_arms()``, subset as needed).
        n_per_arm: patients per arm.
        visits: visit days, sorted; every output in ``outputs`` is measured at each visit.
        seed: seed of the patients and of the measurement error.
        outputs: model outputs that are measured (names in ``model.outputs``).
        typical, omega: overrides of population values and IIV sds (as ``sample_patients``).
        expand_doses: one row per dose (True), or each repeated dose as one row with ADDL/II
            (False: 26 weeks of twice-daily iguratimod is 1 row, not 364).
        entry_platelets: eligibility limit of the baseline count (10⁹/L, NCT07057778: 30);
            None: no limit, so PLT0 is exactly the spec's log-normal (a limit truncates it,
            which a model with log-normal IIV does not describe).

    Returns:
        ``(dataset, truth)``: the checked dataset (internal units) and each patient's true
        parameters, name → ``(n_patients,)`` in ID order.

    Raises:
        SolverError: a simulated patient could not be solved (the data would be incomplete).
    """
    n_patients = n_per_arm * len(arms)
    params, bsa = sample_patients(spec, n_patients, seed=seed, typical=typical, omega=omega,
                                  entry_platelets=entry_platelets)
    dvids = tuple(model.outputs.index(name) + 1 for name in outputs)
    tables = []
    for index, arm in enumerate(arms.values()):
        ids = np.arange(index * n_per_arm, (index + 1) * n_per_arm) + 1
        patients = pd.DataFrame({"ID": ids, "BSA": bsa[ids - 1], "ARM": float(index)})
        tables.append(population_records(arm, patients, np.asarray(visits, dtype=float),
                                         compartments=model.compartment_map(), dvids=dvids,
                                         expand=expand_doses))
    records = pd.concat(tables, ignore_index=True)
    dataset = Dataset.from_table(records)
    population = population_from_dataset(dataset, model)
    result = simulate_population(model, {k: jnp.asarray(v) for k, v in params.items()}, population)
    status = np.asarray(result.status)
    if (status != 0).any():
        failed = population.ids[status != 0]
        raise SolverError(f"simulated patients {failed.tolist()} could not be solved; try another seed "
                          "or a larger max_steps")

    rows = population.obs_rows
    keep = rows >= 0
    predictions = np.asarray(result.predictions)[keep]
    table = dataset.table.copy()
    rng = np.random.default_rng([seed, 1])
    measured = np.empty_like(predictions)
    dvid_of_row = table["DVID"].to_numpy()[rows[keep]]
    for dvid in dvids:
        at = dvid_of_row == dvid
        measured[at] = simulate_measurements(predictions[at], spec.observation(dvid), rng)
    table.loc[rows[keep], "DV"] = measured
    table.loc[rows[keep], "MDV"] = 0.0
    return Dataset.from_table(table), params
