"""Units: declared units are converted exactly to day, mg, mg/day, mg/L, 10^9/L; bad ones are reported."""

import numpy as np
import pandas as pd
import pytest

from itp_pd.data import INTERNAL_UNITS, Dataset, validate_table
from itp_pd.errors import DatasetError


def _records(**extra):
    table = pd.DataFrame(
        {"ID": [1, 1, 1], "TIME": [0.0, 6.0, 12.0], "EVID": [1, 0, 0], "AMT": [250.0, 0, 0],
         "RATE": [125.0, 0, 0], "II": [0.0, 0, 0], "DV": [np.nan, 400.0, 150.0], "DVID": [1, 1, 2]}
    )  # fmt: skip
    for name, values in extra.items():
        table[name] = values
    return table


def test_internal_units():
    assert dict(INTERNAL_UNITS) == {
        "time": "day", "amount": "mg", "rate": "mg/day", "concentration": "mg/L", "platelets": "10^9/L",
    }  # fmt: skip
    with pytest.raises(TypeError):
        INTERNAL_UNITS["time"] = "h"


def test_hours_micrograms_nanograms_per_millilitre():
    units = {"TIME": "h", "AMT": "µg", "DV": {1: "ng/mL", 2: "10^3/uL"}}
    table = Dataset.from_table(_records(), units=units).table
    assert table["TIME"].tolist() == [0.0, 0.25, 0.5]
    assert table["AMT"].tolist() == [0.25, 0.0, 0.0]
    assert table["RATE"].tolist()[0] == 3.0  # 125 ug/h = 0.125 mg/h = 3 mg/day
    assert table["DV"].tolist()[1:] == [0.4, 150.0]


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        ({"TIME": "min", "II": "h", "DUR": "week"}, {"TIME": 6 / 1440, "II": 0.5, "DUR": 14.0}),
        ({"TIME": "day"}, {"TIME": 6.0, "II": 12.0, "DUR": 2.0}),
        ({"TIME": "week"}, {"TIME": 42.0, "II": 84.0, "DUR": 14.0}),
    ],
)
def test_ii_and_dur_follow_time_unless_declared(declared, expected):
    table = _records(II=[12.0, 0, 0], ADDL=[1, 0, 0], DUR=[2.0, 0, 0], RATE=[0.0, 0, 0])
    converted = Dataset.from_table(table, units=declared).table
    assert converted.loc[1, "TIME"] == expected["TIME"]
    assert converted.loc[0, "II"] == expected["II"]
    assert converted.loc[0, "DUR"] == expected["DUR"]


@pytest.mark.parametrize(
    ("declared", "mg_per_day"),
    [
        ({"TIME": "h", "AMT": "mg"}, 125 * 24.0),
        ({"TIME": "min", "AMT": "ug"}, 125 * 1440 / 1000),
        ({"TIME": "h", "AMT": "mg", "RATE": "mg/min"}, 125 * 1440.0),
        ({"AMT": "g"}, 125_000.0),
    ],
)
def test_rate_is_amount_per_time(declared, mg_per_day):
    table = Dataset.from_table(_records(), units=declared).table
    assert table.loc[0, "RATE"] == pytest.approx(mg_per_day, rel=1e-15)


@pytest.mark.parametrize(
    ("unit", "factor"),
    [("ng/mL", 1e-3), ("ng/ml", 1e-3), ("ug/L", 1e-3), ("µg/mL", 1.0), ("mcg/mL", 1.0), ("mg/L", 1.0),
     ("g/L", 1e3), ("10^9/L", 1.0), ("10^3/µL", 1.0), ("G/L", 1.0), ("1", 1.0), ("%", 1.0)],
)  # fmt: skip
def test_dv_units(unit, factor):
    table = Dataset.from_table(_records(), units={"DV": unit}).table
    assert table["DV"].tolist()[1:] == pytest.approx([400 * factor, 150 * factor], rel=1e-15)


@pytest.mark.parametrize(
    ("column", "unit", "value", "stored"),
    [("WT", "lb", 0.45359237, "kg"), ("WT", "kg", 1.0, "kg"), ("HT", "m", 100.0, "cm"), ("HT", "cm", 1.0, "cm"),
     ("BSA", "m2", 1.0, "m2"), ("BSA", "m^2", 1.0, "m2"), ("AGE", "years", 1.0, "years"),
     ("DURATION", "week", 7.0, "day"), ("PLT0", "10^3/uL", 1.0, "10^9/L"), ("FRAC", "%", 1.0, "%")],
)  # fmt: skip
def test_covariate_units(column, unit, value, stored):
    dataset = Dataset.from_table(_records(**{column: [2.0, 2.0, 2.0]}), units={column: unit})
    assert dataset.table[column].tolist() == pytest.approx([2 * value] * 3, rel=1e-15)
    assert dataset.units[column] == stored


def test_dv_units_must_cover_every_observed_dvid():
    problems = validate_table(_records(), units={"DV": {1: "ng/mL"}})
    assert len(problems) == 1
    assert "DVID 2 has EVID 0 records but no unit" in problems[0] and "add 2: '<unit>'" in problems[0]


@pytest.mark.parametrize(
    ("units", "fragments"),
    [
        ({"TIME": "fortnight"}, ["units of column TIME", "'fortnight'", "min, h, day, week"]),
        ({"AMT": "IU"}, ["units of column AMT", "'IU'", "ug, mg, g"]),
        ({"RATE": "mg"}, ["units of column RATE", "<amount unit>/<time unit>", "'mg/h'"]),
        ({"DV": {1: "mmol/L", 2: "10^9/L"}}, ["DV (DVID 1)", "'mmol/L'", "ng/mL", "10^9/L"]),
        ({"DV": {"one": "mg/L"}}, ["key 'one' is not a DVID"]),
        ({"WT": "stone"}, ["units of column WT", "'stone'", "kg, lb"]),
        ({"LLOQ": "ng/mL"}, ["column LLOQ", "DV unit of its row's DVID", "declare the DV units"]),
        ({"CMT": "1"}, ["column CMT", "has no unit"]),
        ({"HEIGHT": "cm"}, ["units name column HEIGHT, which is not in the data", "check the spelling"]),
        ({"time": "h", "TIME": "min"}, ["units name column TIME twice"]),
    ],
)
def test_bad_declared_units_are_reported(units, fragments):
    with pytest.raises(DatasetError) as caught:
        Dataset.from_table(_records(WT=[70.0, 70, 70]), units=units)
    problems = caught.value.problems
    assert len(problems) == 1, problems
    for fragment in fragments:
        assert fragment in problems[0], (fragment, problems[0])


def test_undeclared_dv_and_covariates_are_kept_as_given():
    dataset = Dataset.from_table(_records(WT=[70.0, 70, 70]), units={"TIME": "h"})
    assert dataset.table["DV"].tolist()[1:] == [400.0, 150.0] and dataset.table["WT"].tolist() == [70.0] * 3
    assert "WT" not in dataset.units and dict(dataset.units["DV"]) == {}
