"""Observed data aligned with the engine's padded predictions."""

import numpy as np
import pandas as pd

from itp_pd.data import Dataset
from itp_pd.engine import population_from_dataset
from itp_pd.stats.observed import observed_data
from itp_pd.structural import one_compartment_model

MODEL = one_compartment_model()


def test_values_blq_flags_and_limits_line_up_with_the_prediction_grid():
    records = pd.DataFrame({
        "ID":   [1, 1, 1, 1, 2, 2, 2],
        "TIME": [0, 1, 2, 3, 0, 1, 5],
        "EVID": [1, 0, 0, 2, 1, 0, 0],
        "AMT":  [100, 0, 0, 0, 50, 0, 0],
        "CMT":  [1, 1, 1, 1, 1, 1, 1],
        "MDV":  [1, 0, 0, 1, 1, 0, 1],
        "DV":   [np.nan, 8.0, 0.0, np.nan, np.nan, 3.0, 9.0],
        "DVID": [1, 1, 1, 1, 1, 1, 1],
        "BLQ":  [0, 0, 1, 0, 0, 0, 0],
        "LLOQ": [np.nan, np.nan, 0.5, np.nan, np.nan, np.nan, np.nan],
    })
    dataset = Dataset.from_table(records)
    population = population_from_dataset(dataset, MODEL)
    data = observed_data(dataset, population)
    assert data.value.shape == population.obs_rows.shape
    # Patient 1: a measurement, a BLQ row (limit 0.5), then an EVID 2 prediction request.
    n1 = 3
    np.testing.assert_array_equal(data.is_data[0, :n1], [True, True, False])
    np.testing.assert_array_equal(data.censored[0, :n1], [False, True, False])
    np.testing.assert_array_equal(data.lloq[0, :n1], [0.0, 0.5, 0.0])
    assert data.value[0, 0] == 8.0
    # Patient 2: one measurement, and an MDV 1 observation that is only a prediction request.
    np.testing.assert_array_equal(data.is_data[1, :2], [True, False])
    assert data.value[1, 0] == 3.0 and data.value[1, 1] == 0.0
    # Padding never counts.
    assert not data.is_data[population.obs_rows < 0].any()
    assert not data.censored[population.obs_rows < 0].any()
    np.testing.assert_array_equal(data.output[population.obs_rows >= 0], 0)
