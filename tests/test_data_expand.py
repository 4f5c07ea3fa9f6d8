"""expand_addl: ADDL/II doses become explicit records, equal to writing them out by hand."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from itp_pd.data import Dataset, expand_addl, read_nonmem

DATA = Path(__file__).parent / "data"


def test_expansion_equals_explicit_file():
    # II of 12 h and 24 h are exact in days, so generated times are bit-identical to the file's.
    expanded = expand_addl(read_nonmem(DATA / "compact_doses.csv"))
    explicit = read_nonmem(DATA / "explicit_doses.csv")
    pd.testing.assert_frame_equal(expanded.table, explicit.table, check_exact=True)
    assert expanded == explicit


def test_generated_records_cite_the_dose_that_made_them():
    expanded = expand_addl(read_nonmem(DATA / "compact_doses.csv"))
    # Rows 1 (ID 1, ADDL 3) and 6 (ID 2, ADDL 1) of the compact file generate the extra doses.
    assert expanded.source_rows == (1, 2, 3, 1, 1, 4, 1, 5, 6, 7, 8, 6, 9)


def test_reset_and_dose_repeats_as_plain_doses():
    expanded = expand_addl(read_nonmem(DATA / "compact_doses.csv"))
    patient_2 = expanded.doses()[expanded.doses()["ID"] == 2]
    assert patient_2["EVID"].tolist() == [4.0, 1.0, 1.0]
    assert patient_2["RATE"].tolist() == [9600.0, 0.0, 9600.0]  # 400 mg/h in mg/day


def test_dataset_without_addl_is_unchanged():
    explicit = read_nonmem(DATA / "explicit_doses.csv")
    assert expand_addl(explicit) == explicit


def test_inexact_interval_matches_explicit_times_to_rounding():
    table = pd.DataFrame(
        {"ID": [1, 1], "TIME": [0.0, 30.0], "EVID": [1, 0], "AMT": [10.0, 0.0], "II": [8.0, 0.0],
         "ADDL": [5, 0], "DV": [np.nan, 1.0]}
    )  # fmt: skip
    expanded = expand_addl(Dataset.from_table(table, units={"TIME": "h"}))
    doses = expanded.doses()["TIME"].to_numpy()
    # k * (8/24) against (8k)/24: one extra rounding of the product, so a few ulp of 2 days.
    np.testing.assert_allclose(doses, np.arange(6) * 8.0 / 24.0, rtol=0, atol=4 * np.spacing(2.0))
    assert expanded.table["EVID"].tolist() == [1, 1, 1, 1, 0, 1, 1]  # 30 h sample between 24 h and 32 h doses


@pytest.mark.parametrize("column", ["ADDL", "II"])
def test_expanded_records_carry_no_repeats(column):
    expanded = expand_addl(read_nonmem(DATA / "compact_doses.csv"))
    assert (expanded.table[column] == 0).all()
