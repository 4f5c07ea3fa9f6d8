"""Dataset: invariants, equality and the convenience accessors."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from itp_pd.data import Dataset
from itp_pd.errors import DatasetError


@pytest.fixture
def dataset():
    table = pd.DataFrame(
        {
            "ID": [3, 3, 3, 3, 1, 1, 1],
            "TIME": [0, 1, 2, 3, 0, 0.5, 4],
            "EVID": [1, 0, 0, 4, 1, 0, 0],
            "AMT": [10, 0, 0, 5, 20, 0, 0],
            "DV": [np.nan, 2.5, 0.1, np.nan, np.nan, 7.0, np.nan],
            "MDV": [1, 0, 0, 1, 1, 0, 1],
            "BLQ": [0, 0, 1, 0, 0, 0, 0],
            "LLOQ": [np.nan, 0.2, 0.2, np.nan, np.nan, 0.2, np.nan],
            "WT": [70, np.nan, 71, np.nan, 55, np.nan, np.nan],
            "SEX": [1, 1, 1, 1, 0, 0, 0],
        }
    )
    return Dataset.from_table(table)


def test_accessors(dataset):
    assert dataset.patients().tolist() == [3.0, 1.0]  # file order, not sorted
    assert dataset.observations().index.tolist() == [1, 2, 5]
    assert dataset.doses().index.tolist() == [0, 3, 4]
    covariates = dataset.patient_covariates()
    assert list(covariates.columns) == ["ID", "SEX"]  # WT varies within patient 3
    assert covariates.values.tolist() == [[3.0, 1.0], [1.0, 0.0]]
    assert dataset.is_blq().tolist() == [False, False, True, False, False, False, False]
    np.testing.assert_array_equal(dataset.lloq(), [np.nan, 0.2, 0.2, np.nan, np.nan, 0.2, np.nan])


def test_missing_dv_on_blq_row_is_allowed():
    table = pd.DataFrame(
        {"ID": [1, 1], "TIME": [0, 1], "AMT": [5, 0], "DV": [np.nan, np.nan], "BLQ": [0, 1], "LLOQ": [np.nan, 0.5]}
    )
    assert Dataset.from_table(table).is_blq().tolist() == [False, True]


def test_cens_limit_is_in_dv():
    table = pd.DataFrame(
        {"ID": [1, 1, 1], "TIME": [0, 1, 2], "AMT": [5, 0, 0], "DV": [np.nan, 3.0, 0.5], "CENS": [0, 0, 1],
         "LIMIT": [np.nan, np.nan, 0.0]}
    )  # fmt: skip
    dataset = Dataset.from_table(table, units={"DV": "ug/L"})
    np.testing.assert_array_equal(dataset.lloq(), [np.nan, np.nan, 0.0005])
    assert dataset.table["LIMIT"].tolist()[2] == 0.0


def test_frozen_and_equality(dataset):
    with pytest.raises(dataclasses.FrozenInstanceError):
        dataset.covariates = ()
    with pytest.raises(TypeError):
        dataset.units["TIME"] = "h"
    copy = Dataset(dataset.table.copy(), dict(dataset.units), dataset.covariates, dataset.source_rows)
    assert copy == dataset
    changed = dataset.table.copy()
    changed.loc[1, "DV"] = 2.6
    assert Dataset(changed, dataset.units, dataset.covariates, dataset.source_rows) != dataset


def test_constructor_checks_structure(dataset):
    with pytest.raises(DatasetError, match="3 row numbers for 7 records"):
        Dataset(dataset.table, dataset.units, dataset.covariates, (1, 2, 3))
    with pytest.raises(DatasetError, match="missing column"):
        Dataset(dataset.table.drop(columns="DVID"), dataset.units, dataset.covariates, dataset.source_rows)
    with pytest.raises(DatasetError, match="expected float64"):
        Dataset(dataset.table.astype({"ID": "int64"}), dataset.units, dataset.covariates, dataset.source_rows)


def test_input_table_is_not_modified():
    table = pd.DataFrame({"id": [1, 1], "time": [0, 1], "amt": [5, "."], "dv": [".", "2"]})
    before = table.copy()
    Dataset.from_table(table, units={"TIME": "h"})
    pd.testing.assert_frame_equal(table, before)
