"""The observations of a dataset as padded arrays aligned with the engine's predictions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data import Dataset
from ..engine import Population


@dataclass(frozen=True)
class ObservedData:
    """Measured values on the population's padded observation grid.

    Every array has shape ``(n_patients, n_obs)``, aligned with ``Simulation.predictions``.

    Attributes:
        value: DV in the output's internal unit (0 where not data).
        is_data: the row enters the likelihood (EVID 0, MDV 0); False for prediction
            requests and padding.
        censored: the row is below the limit of quantification (CENS/BLQ = 1): M3.
        lloq: limit of quantification of censored rows (DV unit), 0 elsewhere.
        output: index of the row's output in ``model.outputs`` (DVID − 1).
    """

    value: np.ndarray
    is_data: np.ndarray
    censored: np.ndarray
    lloq: np.ndarray
    output: np.ndarray


def observed_data(dataset: Dataset, population: Population) -> ObservedData:
    """Observed values, BLQ flags and limits for ``population`` built from ``dataset``.

    ``Dataset`` validation has already refused BLQ records without a limit (it names the row
    and asks for an LLOQ column), so every censored row here has a finite ``lloq``.
    """
    rows = population.obs_rows
    take = np.where(rows >= 0, rows, 0)
    table = dataset.table
    value = np.where(population.obs_is_data, table["DV"].to_numpy(dtype=float)[take], 0.0)
    censored = population.obs_is_data & dataset.is_blq()[take]
    limits = dataset.lloq()[take]
    lloq = np.where(censored, limits, 0.0)
    output = np.asarray(population.grid.obs_output)
    return ObservedData(value=value, is_data=population.obs_is_data.copy(), censored=censored,
                        lloq=lloq, output=output)
