"""Dataset checks: each broken file gives exactly its violation, with row, column and fix."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from itp_pd.data import Dataset, read_nonmem, validate_table
from itp_pd.errors import DatasetError

BROKEN = Path(__file__).parent / "data" / "broken"

# file -> (read_nonmem keyword arguments, fragments of its one message, in any order).
# Row n is the n-th line below the header; fragments include the fix each message suggests.
CASES = {
    "empty.csv": ({}, ["file is empty", "header line"]),
    "header_only.csv": ({}, ["no data rows", "add at least one record"]),
    "missing_time.csv": ({}, ["missing required column TIME", "add column TIME", "columns found: ID, EVID"]),
    "missing_evid_and_amt.csv": ({}, ["missing column EVID and AMT", "add EVID"]),
    "non_numeric.csv": ({}, ["row 2 (ID 1)", "column DV", "'5.2 mg/L'", "plain number", "drop="]),
    "ragged_row.csv": ({}, ["row 2", "6 fields", "header names 5 columns", "comma"]),
    "duplicate_columns.csv": ({}, ["column DV", "more than once", "columns 5 and 6", "rename one"]),
    "negative_time.csv": ({}, ["row 3 (ID 2)", "column TIME", "found -1", "expected >= 0", "shift"]),
    "decreasing_time.csv": ({}, ["row 3 (ID 1)", "column TIME", "0.5 is earlier than 1 on row 2", "sort"]),
    "dose_without_amt.csv": ({}, ["row 1 (ID 1)", "column AMT", "has no amount", "give the dose in AMT"]),
    "dose_nonpositive_amt.csv": ({}, ["row 1 (ID 1)", "column AMT", "AMT 0, expected > 0"]),
    "observation_with_amt.csv": ({}, ["row 2 (ID 1)", "column AMT", "EVID 0 record has AMT 50", "set EVID to 1"]),
    "unknown_evid.csv": ({}, ["row 2 (ID 1)", "column EVID", "unknown event type 5", "4 (reset and dose)"]),
    "mdv_on_dose.csv": ({}, ["row 1 (ID 1)", "column MDV", "MDV 0 on an EVID 1 record", "set MDV to 1"]),
    "unknown_cmt.csv": (
        {"compartments": {1, 2}},
        ["row 3 (ID 2)", "column CMT", "compartment 3 is not one of the model's compartments (1, 2)", "fix CMT"],
    ),
    "cmt_not_integer.csv": ({}, ["row 1 (ID 1)", "column CMT", "found 1.5", "positive integer"]),
    "unknown_dvid.csv": ({"dvids": {1, 2}}, ["row 3 (ID 1)", "column DVID", "output 3", "(1, 2)", "fix DVID"]),
    "rate_and_dur.csv": ({}, ["row 1 (ID 1)", "columns RATE and DUR", "RATE 50, DUR 2", "set the other to 0"]),
    "modelled_rate.csv": ({}, ["row 1 (ID 1)", "column RATE", "found -2", "not supported yet", "DUR"]),
    "negative_rate.csv": ({}, ["row 1 (ID 1)", "column RATE", "found -5", "expected >= 0"]),
    "ii_without_addl.csv": ({}, ["row 1 (ID 1)", "column II", "II 24 without ADDL > 0", "give ADDL"]),
    "addl_without_ii.csv": ({}, ["row 1 (ID 1)", "column ADDL", "ADDL 2 without II > 0", "interval"]),
    "addl_not_integer.csv": ({}, ["row 1 (ID 1)", "column ADDL", "found 1.5", "non-negative integer"]),
    "steady_state.csv": (
        {},
        ["row 1 (ID 1)", "column SS", "steady-state doses are not supported yet", "explicitly or with ADDL/II"],
    ),
    "dv_missing.csv": ({}, ["row 3 (ID 1)", "column DV", "has no DV", "set MDV to 1"]),
    "patient_without_observation.csv": ({}, ["ID 2 (rows 3-4)", "no EVID 0 record", "add one"]),
    "ids_not_contiguous.csv": ({}, ["ID 1", "separate blocks", "rows 1-2, row 5", "different patients"]),
    "bad_cens.csv": ({}, ["row 3 (ID 1)", "column CENS", "found 2", "-1 (above the limit)"]),
    "bad_blq.csv": ({}, ["row 3 (ID 1)", "column BLQ", "found 2", "expected 0 (observed) or 1"]),
    "blq_without_lloq.csv": ({}, ["row 3 (ID 1)", "column LLOQ", "BLQ 1 record without", "add an LLOQ column"]),
    "cens_limit_not_below_dv.csv": (
        {},
        ["row 3 (ID 1)", "column LIMIT", "LIMIT 0.5 is not below DV 0.3", "put the limit of quantification in DV"],
    ),
    "covariate_missing_first.csv": (
        {},
        ["row 3 (ID 2)", "column WT", "missing on the patient's first record", "carried forward", "fill it in"],
    ),
    "unknown_unit.csv": ({}, ["units of column TIME", "unknown unit 'hrs2'", "accepted: min, h, day, week"]),
}


def test_every_broken_file_has_a_case():
    on_disk = {path.name for path in BROKEN.glob("*.csv")} - {"multiple_violations.csv"}
    assert on_disk == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_broken_file_reports_its_violation(name):
    kwargs, fragments = CASES[name]
    with pytest.raises(DatasetError) as caught:
        read_nonmem(BROKEN / name, **kwargs)
    problems = caught.value.problems
    assert len(problems) == 1, problems
    for fragment in fragments:
        assert fragment in problems[0], (fragment, problems[0])
    assert str(BROKEN / name) in str(caught.value)


def test_all_violations_reported_at_once():
    with pytest.raises(DatasetError) as caught:
        read_nonmem(BROKEN / "multiple_violations.csv", drop=["comment"])
    problems = caught.value.problems
    expected = [
        ("row 5 (ID 2)", "column DV", "'abc'"),
        ("row 2 (ID 1)", "column TIME", "found -2"),
        ("row 3 (ID 1)", "column EVID", "unknown event type 7"),
        ("row 2 (ID 1)", "column TIME", "-2 is earlier than 0"),
        ("row 4 (ID 2)", "column AMT", "no amount"),
        ("row 1 (ID 1)", "column II", "II 24 without ADDL"),
        ("row 4 (ID 2)", "column SS", "not supported yet"),
        ("row 4 (ID 2)", "column WT", "first record"),
    ]
    for fragments in expected:
        assert sum(all(f in problem for f in fragments) for problem in problems) == 1, (fragments, problems)
    assert len(problems) == len(expected), problems
    assert str(caught.value).startswith(f"{len(expected)} problems found")


def test_free_text_column_is_reported_unless_dropped():
    with pytest.raises(DatasetError) as caught:
        read_nonmem(BROKEN / "multiple_violations.csv")
    comments = [p for p in caught.value.problems if "column COMMENT" in p]
    assert len(comments) == 5
    assert "'first dose'" in comments[0] and "drop=" in comments[0]


def test_drop_of_a_column_not_in_the_file_is_reported():
    with pytest.raises(DatasetError, match="drop= names column NOTES, which is not in the data"):
        read_nonmem(BROKEN.parent / "explicit_doses.csv", drop=["NOTES"])


def _valid_table(**changes):
    table = pd.DataFrame(
        {"ID": [1, 1, 1], "TIME": [0.0, 1.0, 2.0], "EVID": [1, 0, 0], "AMT": [100.0, 0, 0], "DV": [np.nan, 5.0, 3.0]}
    )
    for name, values in changes.items():
        table[name] = values
    return table


def test_validate_table_returns_empty_list_for_valid_records():
    assert validate_table(_valid_table()) == []


def test_validate_table_returns_messages_without_raising():
    problems = validate_table(_valid_table(EVID=[1, 0, 9]), source_rows=[11, 12, 13])
    assert len(problems) == 1
    assert "row 13 (ID 1), column EVID: unknown event type 9" in problems[0]


def test_prediction_rows_count_as_evid_zero_records():
    # MDV 1 on an EVID 0 row asks for a prediction: allowed, and DV may be missing there.
    table = _valid_table(MDV=[1, 1, 1], DV=[np.nan, np.nan, np.nan])
    dataset = Dataset.from_table(table)
    assert len(dataset.observations()) == 0


def test_infinite_values_are_violations_not_silent():
    problems = validate_table(_valid_table(DV=[np.nan, np.inf, 3.0]))
    assert len(problems) == 1 and "row 2 (ID 1), column DV" in problems[0]


def test_text_nan_is_not_a_missing_value():
    problems = validate_table(_valid_table(DV=[".", "nan", "3"]))
    assert len(problems) == 1 and "found 'nan'" in problems[0]


def test_many_rows_with_one_problem_are_summarised():
    n = 45
    table = pd.DataFrame(
        {"ID": 1, "TIME": np.arange(n, dtype=float), "EVID": [1] + [0] * (n - 1), "AMT": [100.0] + [0.0] * (n - 1),
         "DV": ["."] + ["x"] * (n - 1)}
    )  # fmt: skip
    problems = validate_table(table)
    listed = [p for p in problems if "column DV" in p]
    assert len(listed) == 20
    assert problems[-1].startswith("... and 24 more rows with the same problem")
    assert "rows 22, 23," in problems[-1]


def test_from_table_raises_one_error_with_every_problem():
    table = _valid_table(TIME=[0.0, -1.0, 2.0], AMT=[0.0, 0.0, 5.0])
    with pytest.raises(DatasetError) as caught:
        Dataset.from_table(table, compartments={1})
    text = "\n".join(caught.value.problems)
    assert "row 2 (ID 1), column TIME: found -1" in text
    assert "row 1 (ID 1), column AMT: dose record (EVID 1) has AMT 0" in text
    assert "row 3 (ID 1), column AMT: EVID 0 record has AMT 5" in text


def test_amt_without_evid_column_marks_doses():
    table = _valid_table().drop(columns="EVID")
    dataset = Dataset.from_table(table)
    assert dataset.table["EVID"].tolist() == [1.0, 0.0, 0.0]
    assert dataset.table["MDV"].tolist() == [1.0, 0.0, 0.0]
    problems = validate_table(_valid_table(AMT=[100.0, -3.0, 0.0]).drop(columns="EVID"))
    assert len(problems) == 1 and "without an EVID column" in problems[0]


def test_dvid_on_dose_rows_is_not_checked():
    # DVID 0 on dose records is common and harmless: DVID only matters on EVID 0 records.
    dataset = Dataset.from_table(_valid_table(DVID=[0, 1, 1]), dvids={1})
    assert dataset.table["DVID"].tolist() == [0.0, 1.0, 1.0]
