"""Tests for itp_pd.dosing: regimen objects and the NONMEM records made from them."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from itp_pd.dosing import (
    RECORD_COLUMNS,
    Arm,
    Bolus,
    Infusion,
    Oral,
    Regimen,
    Repeat,
    daily,
    every,
    observation_records,
    population_records,
    to_records,
    weekly,
)
from itp_pd.errors import RegimenError

# 4 h = 4/24 day is not exact in binary; 100 mg / (4/24 day) is 600 mg/day to a few ulp.
FLOAT_RTOL = 1e-12
COMPARTMENTS = {"rituximab_central": 1, "rituximab_peripheral": 2, "iguratimod_depot": 3}


def rituximab_weekly():
    return Regimen("rituximab", (weekly(Infusion(100, "rituximab_central", duration_h=4),
                                        count=6),))


def iguratimod_bid():
    return Regimen("iguratimod", (every(hours=12, dose=Oral(25, "iguratimod_depot"),
                                        for_weeks=26),))


# --- single regimens -------------------------------------------------------------------


def test_weekly_infusion_rows_times_and_rate():
    records = to_records(rituximab_weekly(), compartments=COMPARTMENTS)
    assert list(records.columns) == list(RECORD_COLUMNS)
    assert all(records[c].dtype == np.float64 for c in RECORD_COLUMNS)
    assert len(records) == 6
    np.testing.assert_array_equal(records["TIME"], [0.0, 7.0, 14.0, 21.0, 28.0, 35.0])
    np.testing.assert_allclose(records["RATE"], 600.0, rtol=FLOAT_RTOL)
    np.testing.assert_array_equal(records["AMT"], 100.0)
    np.testing.assert_array_equal(records["CMT"], 1.0)
    np.testing.assert_array_equal(records["EVID"], 1.0)
    np.testing.assert_array_equal(records["MDV"], 1.0)
    np.testing.assert_array_equal(records["DVID"], 1.0)
    np.testing.assert_array_equal(records[["II", "ADDL"]], 0.0)
    assert records["DV"].isna().all()


def test_unexpanded_repeat_is_one_addl_row_that_expands_to_the_same_rows():
    expanded = to_records(rituximab_weekly(), compartments=COMPARTMENTS, start=2.0)
    compact = to_records(rituximab_weekly(), compartments=COMPARTMENTS, start=2.0, expand=False)
    assert len(compact) == 1
    row = compact.iloc[0]
    assert row["ADDL"] == 5 and row["II"] == 7 and row["TIME"] == 2.0

    by_hand = pd.DataFrame([row] * (int(row["ADDL"]) + 1)).reset_index(drop=True)
    by_hand["TIME"] = row["TIME"] + np.arange(len(by_hand)) * row["II"]
    by_hand[["II", "ADDL"]] = 0.0
    pd.testing.assert_frame_equal(by_hand, expanded)


def test_single_dose_repeat_has_no_interval():
    compact = to_records(Repeat(Bolus(5, 1, time=3.0), count=1), expand=False)
    assert compact[["TIME", "II", "ADDL"]].to_numpy().tolist() == [[3.0, 0.0, 0.0]]


def test_every_12_hours_for_26_weeks_is_364_doses():
    repeat = iguratimod_bid().items[0]
    assert repeat.count == 364
    records = to_records(iguratimod_bid(), compartments=COMPARTMENTS)
    assert len(records) == 364
    assert records["TIME"].iloc[-1] == 181.5
    np.testing.assert_allclose(np.diff(records["TIME"]), 0.5, rtol=0, atol=0)
    np.testing.assert_array_equal(records["RATE"], 0.0)
    np.testing.assert_array_equal(records["CMT"], 3.0)


@pytest.mark.parametrize(
    ("repeat", "count", "interval"),
    [
        (every(Bolus(1, 1), days=5, for_days=14), 3, 5.0),  # doses at 0, 5, 10 start in 14 d
        (every(Bolus(1, 1), days=7, for_days=14), 2, 7.0),  # a dose at day 14 is outside
        (daily(Oral(25, 3), for_weeks=12), 84, 1.0),
        (weekly(Bolus(1, 1), for_weeks=4), 4, 7.0),
        (every(Bolus(1, 1), weeks=2, count=3), 3, 14.0),
        (Repeat(Oral(25, 3), every_h=24, count=2), 2, 1.0),
    ],
)
def test_convenience_constructors_count_and_interval(repeat, count, interval):
    assert (repeat.count, repeat.every) == (count, interval)


def test_convenience_units_are_stored_in_days():
    assert Infusion(100, 1, duration_h=6).duration == 0.25
    assert Repeat(Bolus(1, 1), every_h=12, count=2).every == 0.5


# --- body-surface area ------------------------------------------------------------------


def test_dose_per_m2_scales_with_bsa():
    regimen = Regimen("rituximab_375", (weekly(
        Infusion(cmt="rituximab_central", amount_mg_per_m2=375, duration_h=4), count=4),))
    records = to_records(regimen, bsa=1.8, compartments=COMPARTMENTS)
    np.testing.assert_allclose(records["AMT"], 675.0, rtol=FLOAT_RTOL)
    np.testing.assert_allclose(records["RATE"], 675.0 * 6, rtol=FLOAT_RTOL)


def test_infusion_per_m2_with_rate_keeps_the_rate():
    records = to_records(Infusion(amount_mg_per_m2=100, cmt=1, rate=1200.0), bsa=2.0)
    assert records[["AMT", "RATE"]].to_numpy().tolist() == [[200.0, 1200.0]]


def test_missing_bsa_names_the_dose():
    regimen = Regimen("rituximab_375", (Infusion(cmt=1, amount_mg_per_m2=375, duration=0.2),))
    with pytest.raises(RegimenError, match=r"rituximab_375.*375 mg/m².*BSA"):
        to_records(regimen)


# --- compartments -----------------------------------------------------------------------


def test_compartment_names_resolve_to_cmt_numbers():
    regimen = Regimen("mixed", (Bolus(10, "rituximab_peripheral"), Oral(25, "iguratimod_depot"),
                                Bolus(1, 4)))
    records = to_records(regimen, compartments=COMPARTMENTS)
    assert records["CMT"].tolist() == [2.0, 3.0, 4.0]


def test_unknown_compartment_name_lists_the_known_names():
    regimen = Regimen("rituximab", (Bolus(10, "ritximab_central"),))
    with pytest.raises(RegimenError, match="ritximab_central") as info:
        to_records(regimen, compartments=COMPARTMENTS)
    for name in COMPARTMENTS:
        assert name in str(info.value)


def test_compartment_name_without_mapping_says_how_to_fix():
    with pytest.raises(RegimenError, match="compartments"):
        to_records(Bolus(10, "rituximab_central"))


# --- invalid input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: Bolus(-5, 1), "amount_mg"),
        (lambda: Oral(0, 1), "amount_mg"),
        (lambda: Bolus(float("nan"), 1), "amount_mg"),
        (lambda: Bolus("100", 1), "amount_mg"),
        (lambda: Bolus(cmt=1), "amount_mg / amount_mg_per_m2"),
        (lambda: Bolus(100, 1, amount_mg_per_m2=375), "amount_mg / amount_mg_per_m2"),
        (lambda: Oral(amount_mg_per_m2=-1, cmt=1), "amount_mg_per_m2"),
        (lambda: Infusion(100, 1, duration=1.0, rate=100.0), "duration / rate"),
        (lambda: Infusion(100, 1), "duration (day, or duration_h in h) / rate"),
        (lambda: Infusion(100, 1, duration=0.0), "duration"),
        (lambda: Infusion(100, 1, rate=-1.0), "rate"),
        (lambda: Infusion(100, 1, duration=1.0, duration_h=4), "duration_h"),
        (lambda: Infusion(100, 1, duration_h=-4), "duration_h"),
        (lambda: Bolus(100, 0), "cmt"),
        (lambda: Bolus(100, 1.0), "cmt"),
        (lambda: Bolus(100), "cmt"),
        (lambda: Bolus(100, 1, time=-1.0), "time"),
        (lambda: Repeat(Bolus(1, 1), every=7, count=0), "count"),
        (lambda: Repeat(Bolus(1, 1), every=7, count=2.5), "count"),
        (lambda: Repeat(Bolus(1, 1), every=7), "count"),
        (lambda: Repeat(Bolus(1, 1), every=0.0, count=2), "every"),
        (lambda: Repeat(Bolus(1, 1), every=-7.0, count=2), "every"),
        (lambda: Repeat(Bolus(1, 1), count=2), "every"),
        (lambda: Repeat(Bolus(1, 1), every=1, every_h=24, count=2), "every_h"),
        (lambda: Repeat(Repeat(Bolus(1, 1), every=1, count=2), every=7, count=2), "dose"),
        (lambda: every(Bolus(1, 1), hours=12, days=1, count=2), "hours / days / weeks"),
        (lambda: every(Bolus(1, 1), hours=12), "count / for_days / for_weeks"),
        (lambda: every(Bolus(1, 1), hours=0, count=2), "hours"),
        (lambda: Regimen("", (Bolus(1, 1),)), "name"),
        (lambda: Regimen("x", ()), "items"),
        (lambda: Regimen("x", (Arm("a"),)), "items"),
        (lambda: Arm("a", (Regimen("x", Bolus(1, 1)), Regimen("x", Bolus(2, 1)))), "distinct"),
    ],
)
def test_invalid_input_raises_regimen_error_naming_the_field(make, field):
    with pytest.raises(RegimenError, match="got") as info:
        make()
    assert field in str(info.value)
    assert isinstance(info.value, ValueError)


def test_invalid_record_options_raise():
    with pytest.raises(RegimenError, match="bsa"):
        to_records(Bolus(1, 1), bsa=0.0)
    with pytest.raises(RegimenError, match="compartments"):
        to_records(Bolus(1, "a"), compartments={"a": 0})
    with pytest.raises(RegimenError, match="Arm, a Regimen"):
        to_records([Bolus(1, 1)])
    with pytest.raises(RegimenError, match="finite"):
        observation_records([0.0, float("nan")])
    with pytest.raises(RegimenError, match="dvid"):
        observation_records([0.0], dvid=0)


def test_doses_are_immutable():
    dose = Bolus(1, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        dose.amount_mg = 2.0


# --- arms and populations ---------------------------------------------------------------


def test_arm_merges_regimens_sorted_with_stable_order_at_ties():
    first = Regimen("a", (weekly(Bolus(1, 1), count=2),))
    second = Regimen("b", (weekly(Oral(2, 3), count=2), Oral(3, 3, time=3.5)))
    records = to_records(Arm("ab", (first, second)))
    assert records[["TIME", "AMT"]].to_numpy().tolist() == [
        [0.0, 1.0], [0.0, 2.0], [3.5, 3.0], [7.0, 1.0], [7.0, 2.0]]
    reversed_arm = to_records(Arm("ba", (second, first)))
    assert reversed_arm["AMT"].tolist() == [2.0, 1.0, 3.0, 2.0, 1.0]


def test_trial_arm_has_both_drugs():
    arm = Arm("RTX+IGU", (rituximab_weekly(), iguratimod_bid()))
    records = to_records(arm, compartments=COMPARTMENTS, id=7)
    assert len(records) == 6 + 364
    assert records["TIME"].is_monotonic_increasing
    assert (records["ID"] == 7.0).all()
    # At day 0 the rituximab infusion precedes the iguratimod dose (regimen order).
    assert records["CMT"].iloc[:2].tolist() == [1.0, 3.0]


def test_empty_arm_gives_empty_records():
    records = to_records(Arm("untreated"))
    assert list(records.columns) == list(RECORD_COLUMNS) and records.empty


def test_observation_records_are_prediction_requests():
    obs = observation_records([14.0, 0.0, 7.0], id=3, dvid=2)
    assert list(obs.columns) == list(RECORD_COLUMNS)
    assert obs["TIME"].tolist() == [0.0, 7.0, 14.0]
    assert (obs["EVID"] == 0).all() and (obs["MDV"] == 1).all() and obs["DV"].isna().all()
    assert (obs["DVID"] == 2).all() and (obs["ID"] == 3).all() and (obs["AMT"] == 0).all()


def test_population_records_order_covariates_and_bsa():
    arm = Arm("arm", (Regimen("rituximab", (weekly(
        Infusion(cmt="rituximab_central", amount_mg_per_m2=375, duration_h=4), count=2),)),
        Regimen("iguratimod", (daily(Oral(25, "iguratimod_depot"), count=2),))))
    patients = pd.DataFrame({"ID": [2, 1], "BSA": [2.0, 1.6], "SEX": ["F", "M"]})
    records = population_records(arm, patients, [7.0, 0.0], compartments=COMPARTMENTS,
                                 dvids=(1, 2))

    assert list(records.columns) == [*RECORD_COLUMNS, "BSA", "SEX"]
    assert records["ID"].tolist() == [1.0] * 8 + [2.0] * 8
    one = records[records["ID"] == 1]
    assert one[["TIME", "EVID", "DVID", "CMT"]].to_numpy().tolist() == [
        [0.0, 0, 1, 0], [0.0, 0, 2, 0],          # observations first at the dose time
        [0.0, 1, 1, 1], [0.0, 1, 1, 3],          # then doses, in regimen order
        [1.0, 1, 1, 3],
        [7.0, 0, 1, 0], [7.0, 0, 2, 0], [7.0, 1, 1, 1],
    ]
    assert (one["SEX"] == "M").all() and (one["BSA"] == 1.6).all()
    assert (records.loc[records["ID"] == 2, "SEX"] == "F").all()
    rituximab = records[records["CMT"] == 1].groupby("ID")["AMT"].unique()
    np.testing.assert_allclose(rituximab[1.0], [375 * 1.6], rtol=FLOAT_RTOL)
    np.testing.assert_allclose(rituximab[2.0], [375 * 2.0], rtol=FLOAT_RTOL)
    # Each patient's block equals its single-patient records plus observation requests.
    doses_two = to_records(arm, id=2, bsa=2.0, compartments=COMPARTMENTS)
    pd.testing.assert_frame_equal(
        records[(records["ID"] == 2) & (records["EVID"] == 1)][list(RECORD_COLUMNS)]
        .reset_index(drop=True), doses_two)


def test_population_records_missing_bsa_names_patient_and_dose():
    arm = Arm("arm", (Regimen("rituximab", (Infusion(cmt=1, amount_mg_per_m2=375, rate=500),)),))
    patients = pd.DataFrame({"ID": [1, 2], "BSA": [1.7, np.nan]})
    with pytest.raises(RegimenError, match=r"rituximab.*patient ID 2"):
        population_records(arm, patients, [0.0])


@pytest.mark.parametrize(
    ("patients", "message"),
    [
        (pd.DataFrame({"id": [1]}), "ID"),
        (pd.DataFrame({"ID": [1, 1]}), "unique"),
        (pd.DataFrame({"ID": [1], "TIME": [0.0]}), "TIME"),
        (pd.DataFrame({"ID": [1], "BSA": [-1.0]}), "BSA"),
        (pd.DataFrame({"ID": []}), "no rows"),
    ],
)
def test_population_records_rejects_bad_patient_tables(patients, message):
    with pytest.raises(RegimenError, match=message):
        population_records(Arm("a", (Regimen("r", (Bolus(1, 1),)),)), patients, [0.0])


def test_population_records_unexpanded_equal_expanded_after_addl_expansion():
    from itp_pd.data import Dataset, expand_addl

    arm = Arm("arm", (Regimen("rituximab", (weekly(Infusion(100.0, "rituximab_central", duration_h=4), count=3),)),
                      Regimen("iguratimod", (every(Oral(25, "iguratimod_depot"), hours=12, count=5),))))
    patients = pd.DataFrame({"ID": [1, 2], "BSA": [1.6, 1.9]})
    kwargs = dict(compartments=COMPARTMENTS, dvids=(1,))
    short = population_records(arm, patients, [0.0, 3.0, 14.0], expand=False, **kwargs)
    full = population_records(arm, patients, [0.0, 3.0, 14.0], **kwargs)
    assert len(short) == 2 * (3 + 2) and short.loc[short["EVID"] == 1, "ADDL"].tolist() == [2, 4, 2, 4]
    expanded = expand_addl(Dataset.from_table(short)).table
    key = ["ID", "TIME", "EVID", "CMT"]
    columns = ["ID", "TIME", "EVID", "AMT", "CMT", "RATE", "DVID"]
    pd.testing.assert_frame_equal(expanded.sort_values(key, kind="stable")[columns].reset_index(drop=True),
                                  Dataset.from_table(full).table.sort_values(key, kind="stable")[columns]
                                  .reset_index(drop=True), check_dtype=False)
