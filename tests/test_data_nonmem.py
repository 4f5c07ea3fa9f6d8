"""read_nonmem / write_nonmem: parsing, defaults, covariates and an exact round trip."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from itp_pd.data import Dataset, read_nonmem, write_nonmem
from itp_pd.errors import DatasetError

EXAMPLE = Path(__file__).parents[1] / "examples" / "data" / "example_pk.csv"

MIXED = """\
id,Time,evid,Amt,cmt,Rate,dur,ii,addl,mdv,dv,dvid,blq,lloq,wt,ht,age,Sex,crcl
1,0,1,500,1,250,.,12,2,1,.,.,0,.,154,1.72,41,1,95.5
1,0.5,0,,1,,,,,0,812.5,1,0,25,,,,,
1,36,1,300,2,0,1.5,0,0,1,.,.,0,.,150,.,.,.,101.25
1,40,0,.,1,.,.,.,.,0,.,1,1,25,.,.,.,.,.
1,40,0,.,3,.,.,.,.,0,143,2,0,.,.,.,.,.,.
2,0,1,1000,1,0,.,.,.,1,.,.,0,.,198.5,1.8,63,0,70
2,2,0,.,1,.,.,.,.,0,10250.125,1,0,25,.,.,.,.,.
2,2,0,.,3,.,.,.,.,1,.,2,0,.,.,.,.,.,.
"""
MIXED_UNITS = {"TIME": "h", "AMT": "ug", "DV": {1: "ng/mL", 2: "10^3/uL"}, "WT": "lb", "HT": "m", "AGE": "years", "CRCL": "1"}


@pytest.fixture
def mixed(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text(MIXED)
    return read_nonmem(path, units=MIXED_UNITS)


def test_column_names_are_case_insensitive(mixed):
    assert list(mixed.table.columns) == [
        "ID", "TIME", "EVID", "AMT", "CMT", "RATE", "DUR", "II", "ADDL", "SS", "MDV", "DV", "DVID",
        "BLQ", "LLOQ", "WT", "HT", "AGE", "SEX", "CRCL",
    ]  # fmt: skip
    assert mixed.covariates == ("WT", "HT", "AGE", "SEX", "CRCL")
    assert all(dtype == np.float64 for dtype in mixed.table.dtypes)
    assert mixed.table.index.equals(pd.RangeIndex(8))


def test_dot_and_empty_are_missing_and_take_neutral_defaults(mixed):
    table = mixed.table
    assert np.isnan(table.loc[0, "DV"]) and np.isnan(table.loc[0, "LLOQ"])
    assert table["AMT"].tolist()[1] == 0.0  # '.' on an observation
    assert table["DVID"].tolist()[0] == 1.0  # '.' on a dose
    assert table["ADDL"].tolist()[5] == 0.0 and table["II"].tolist()[5] == 0.0
    assert table["SS"].tolist() == [0.0] * 8  # absent column
    assert table["DUR"].tolist()[:2] == [0.0, 0.0] and table["II"].tolist()[1] == 0.0  # '.' and empty


def test_covariates_are_carried_forward_within_patient(mixed):
    table = mixed.table
    lb = 0.45359237
    assert table["WT"].tolist() == pytest.approx([154 * lb] * 2 + [150 * lb] * 3 + [198.5 * lb] * 3, rel=1e-15)
    assert table["HT"].tolist() == pytest.approx([172.0] * 5 + [180.0] * 3, rel=1e-15)
    assert table["CRCL"].tolist() == [95.5, 95.5, 101.25, 101.25, 101.25, 70.0, 70.0, 70.0]
    assert table["SEX"].tolist() == [1.0] * 5 + [0.0] * 3


def test_units_are_converted(mixed):
    table = mixed.table
    # 1 h = 1/24 day; 1 ug = 1e-3 mg; 1 ng/mL = 1e-3 mg/L; 10^3/uL = 10^9/L.
    assert table["TIME"].tolist() == [0.0, 0.5 / 24, 1.5, 40 / 24, 40 / 24, 0.0, 2 / 24, 2 / 24]
    assert table["AMT"].tolist()[:3] == [0.5, 0.0, 0.3]
    assert table.loc[0, "RATE"] == pytest.approx(250 * 24 / 1000, rel=1e-15)  # ug/h -> mg/day
    assert table.loc[0, "II"] == 0.5 and table.loc[2, "DUR"] == 1.5 / 24
    assert table.loc[1, "DV"] == pytest.approx(0.8125, rel=1e-15)
    assert table.loc[4, "DV"] == 143.0  # platelets, DVID 2: factor 1
    assert table.loc[1, "LLOQ"] == 0.025 and table.loc[3, "LLOQ"] == 0.025
    # RATE * duration still equals AMT after conversion: 0.5 mg at 6 mg/day lasts 2 h.
    assert table.loc[0, "AMT"] / table.loc[0, "RATE"] == pytest.approx(2 / 24, rel=1e-15)
    assert dict(mixed.units) == {
        "TIME": "day", "AMT": "mg", "RATE": "mg/day", "DUR": "day", "II": "day",
        "WT": "kg", "HT": "cm", "AGE": "years", "CRCL": "1", "DV": {1: "mg/L", 2: "10^9/L"},
    }  # fmt: skip


def test_round_trip_is_exact(mixed, tmp_path):
    path = write_nonmem(mixed, tmp_path / "copy.csv")
    again = read_nonmem(path)
    pd.testing.assert_frame_equal(again.table, mixed.table, check_exact=True)
    assert dict(again.units) == dict(mixed.units)
    assert again.covariates == mixed.covariates
    assert again == mixed
    # A second round trip writes byte-identical files.
    text = path.read_text(), path.with_name("copy.units.toml").read_text()
    write_nonmem(again, path)
    assert (path.read_text(), path.with_name("copy.units.toml").read_text()) == text


def test_written_csv_is_plain_nonmem(mixed, tmp_path):
    (tmp_path / "out").mkdir()
    path = write_nonmem(mixed, tmp_path / "out" / "copy.csv")
    lines = path.read_text().splitlines()
    assert lines[0].startswith("ID,TIME,EVID,AMT,CMT,RATE")
    assert lines[1].split(",")[:5] == ["1", "0", "1", "0.5", "1"]  # integers without '.0'
    assert lines[1].split(",")[11] == "."  # missing DV
    assert lines[2].split(",")[1] == repr(0.5 / 24)
    assert sorted(os.listdir(tmp_path / "out")) == ["copy.csv", "copy.units.toml"]  # no temporary files left


def test_write_replaces_existing_files(mixed, tmp_path):
    path = tmp_path / "copy.csv"
    path.write_text("stale")
    path.with_name("copy.units.toml").write_text("stale")
    write_nonmem(mixed, path)
    assert read_nonmem(path) == mixed


def test_round_trip_with_cens_limit_and_dur(tmp_path):
    source = tmp_path / "cens.csv"
    source.write_text(
        "ID,TIME,EVID,AMT,DUR,DV,CENS,LIMIT,BSA\n"
        "7,0,1,3,0.1,.,0,.,1.9\n7,0.3,0,.,.,0.123456789012345678,0,.,.\n7,2,0,.,.,0.05,1,0,.\n"
    )
    dataset = read_nonmem(source, units={"DV": {1: "ug/mL"}, "BSA": "m2"})
    again = read_nonmem(write_nonmem(dataset, tmp_path / "copy.csv"))
    pd.testing.assert_frame_equal(again.table, dataset.table, check_exact=True)
    assert again == dataset


def test_sidecar_is_read_when_units_not_given(tmp_path):
    path = tmp_path / "study.csv"
    path.write_text("ID,TIME,AMT,DV\n1,0,250,.\n1,48,0,120\n")
    path.with_name("study.units.toml").write_text('TIME = "h"\nAMT = "ug"\n[DV]\n1 = "ng/mL"\n')
    dataset = read_nonmem(path)
    assert dataset.table["TIME"].tolist() == [0.0, 2.0]
    assert dataset.table["AMT"].tolist() == [0.25, 0.0]
    assert dataset.table["DV"].tolist()[1] == 0.12
    # An explicit units argument wins over the sidecar.
    assert read_nonmem(path, units={}).table["TIME"].tolist() == [0.0, 48.0]


def test_internal_units_assumed_without_sidecar(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("ID,TIME,AMT,DV\n1,0,250,.\n1,2,0,120\n")
    dataset = read_nonmem(path)
    assert dataset.table["TIME"].tolist() == [0.0, 2.0] and dataset.table["DV"].tolist()[1] == 120.0
    assert dict(dataset.units) == {"TIME": "day", "AMT": "mg", "RATE": "mg/day", "II": "day", "DV": {}}


def test_bad_sidecar_is_reported(tmp_path):
    path = tmp_path / "study.csv"
    path.write_text("ID,TIME,AMT,DV\n1,0,250,.\n1,48,0,120\n")
    path.with_name("study.units.toml").write_text('TIME = "h\n')
    with pytest.raises(DatasetError, match="not valid TOML"):
        read_nonmem(path)


def test_blank_lines_are_skipped_but_counted(tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text("\ufeffID,TIME,EVID,AMT,DV\n1,0,1,100,.\n\n1,1,0,.,5\n1,2,0,.,-\n")
    with pytest.raises(DatasetError) as caught:
        read_nonmem(path)
    assert caught.value.problems[0].startswith("row 4 (ID 1), column DV: found '-'")
    path.write_text("\ufeffID,TIME,EVID,AMT,DV\n1,0,1,100,.\n\n1,1,0,.,5\n,,,,\n")
    assert read_nonmem(path).source_rows == (1, 3)


def test_example_dataset_reads():
    dataset = read_nonmem(EXAMPLE, compartments={1, 2}, dvids={1})
    assert dataset.patients().tolist() == [1.0, 2.0]
    assert len(dataset.doses()) == 2 and len(dataset.observations()) == 19
    assert dataset.covariates == ("BSA",)
    assert dataset.patient_covariates()["BSA"].tolist() == [1.82, 1.64]
    assert dataset.table["II"].tolist()[0] == 1.0 and dataset.table["II"].tolist()[11] == 7.0
    infusion = dataset.doses().iloc[1]
    assert infusion["RATE"] == 2400.0 and infusion["AMT"] / infusion["RATE"] == 2 / 24  # 2 h
    blq = dataset.is_blq()
    assert blq.sum() == 1 and dataset.table["TIME"][blq].tolist() == [14.0]
    assert dataset.lloq()[blq].tolist() == [0.05]  # 50 ng/mL
    assert dataset.table["DV"].tolist()[1] == pytest.approx(20.08, rel=1e-15)
    assert dict(dataset.units) == {"TIME": "day", "AMT": "mg", "RATE": "mg/day", "II": "day", "BSA": "m2", "DV": {1: "mg/L"}}
