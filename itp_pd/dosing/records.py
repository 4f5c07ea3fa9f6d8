"""Regimens → NONMEM-format event records (pandas DataFrames).

Columns (upper case, float64): ID, TIME (day), EVID, AMT (mg), CMT, RATE (mg/day; 0 for a
bolus or oral dose), II (day), ADDL, MDV, DV, DVID. Dose rows have EVID 1, MDV 1, DV NaN.
Observation rows made here are prediction requests: EVID 0, MDV 1, DV NaN, AMT 0, and
CMT 0 (NONMEM's "default observation compartment"; the output is chosen by DVID).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from itp_pd.dosing._checks import check_number
from itp_pd.dosing.doses import DOSE_TYPES, Arm, Infusion, Regimen, Repeat
from itp_pd.errors import RegimenError

RECORD_COLUMNS: tuple[str, ...] = (
    "ID", "TIME", "EVID", "AMT", "CMT", "RATE", "II", "ADDL", "MDV", "DV", "DVID",
)


@dataclass(frozen=True)
class _DoseRows:
    """Dose rows of one arm before the patient's BSA is known (one entry per row)."""

    time: np.ndarray          # day, sorted (stable)
    amount_mg: np.ndarray     # mg; NaN where the dose is per m²
    amount_per_m2: np.ndarray  # mg/m²; NaN where the dose is a fixed amount
    cmt: np.ndarray
    rate: np.ndarray          # mg/day as given; 0 for bolus/oral; NaN where set by duration
    duration: np.ndarray      # day; NaN unless an infusion with a duration
    ii: np.ndarray            # day
    addl: np.ndarray
    labels: tuple[str, ...]   # which dose made the row, for error messages

    @property
    def needs_bsa(self) -> np.ndarray:
        return ~np.isnan(self.amount_per_m2)


def _regimens_of(source) -> tuple[Regimen, ...]:
    if isinstance(source, Arm):
        return source.regimens
    if isinstance(source, Regimen):
        return (source,)
    if isinstance(source, (*DOSE_TYPES, Repeat)):
        return (Regimen("doses", (source,)),)
    raise RegimenError(
        f"expected an Arm, a Regimen, or a single dose/Repeat; got {type(source).__name__}. "
        f"Wrap doses in Regimen(name, items=(...)) and regimens in Arm(name, regimens=(...))."
    )


def _resolve_cmt(cmt, compartments: Mapping[str, int] | None, label: str) -> int:
    if isinstance(cmt, int):
        return cmt
    if compartments is None:
        raise RegimenError(
            f"{label}: uses the compartment name {cmt!r}, but no compartments mapping was "
            f"given. Pass compartments={{{cmt!r}: <NONMEM CMT>, ...}} (the structural model's "
            f"numbering), or give cmt as an int."
        )
    if cmt not in compartments:
        raise RegimenError(
            f"{label}: unknown compartment name {cmt!r}; known names are "
            f"{sorted(compartments)}. Fix the spelling or add the name to compartments."
        )
    return compartments[cmt]


def _check_compartments(compartments) -> Mapping[str, int] | None:
    if compartments is None:
        return None
    if not isinstance(compartments, Mapping):
        raise RegimenError(
            f"compartments must be a mapping of name → NONMEM CMT (e.g. "
            f"{{'rituximab_central': 1}}); got {type(compartments).__name__}."
        )
    for name, number in compartments.items():
        if (isinstance(number, bool) or not isinstance(number, numbers.Integral)
                or int(number) < 1):
            raise RegimenError(
                f"compartments[{name!r}] must be an int ≥ 1 (NONMEM CMT); got {number!r}."
            )
    return {name: int(number) for name, number in compartments.items()}


def _dose_rows(source, compartments, expand: bool, start: float) -> _DoseRows:
    compartments = _check_compartments(compartments)
    rows = []
    for regimen in _regimens_of(source):
        for index, item in enumerate(regimen.items):
            label = f"regimen {regimen.name!r} item {index} ({item.describe()})"
            dose = item.dose if isinstance(item, Repeat) else item
            cmt = _resolve_cmt(dose.cmt, compartments, label)
            if isinstance(item, Repeat) and expand:
                schedule = [(t, 0.0, 0.0) for t in item.times]
            elif isinstance(item, Repeat):
                ii = item.every if item.count > 1 else 0.0
                schedule = [(dose.time, ii, float(item.count - 1))]
            else:
                schedule = [(dose.time, 0.0, 0.0)]
            if isinstance(dose, Infusion):
                rate = math.nan if dose.rate is None else dose.rate
                duration = math.nan if dose.duration is None else dose.duration
            else:
                rate, duration = 0.0, math.nan
            amount = math.nan if dose.amount_mg is None else dose.amount_mg
            per_m2 = math.nan if dose.amount_mg_per_m2 is None else dose.amount_mg_per_m2
            for time, ii, addl in schedule:
                rows.append((start + time, amount, per_m2, cmt, rate, duration, ii, addl, label))
    if not rows:
        empty = np.zeros(0)
        return _DoseRows(empty, empty, empty, empty, empty, empty, empty, empty, ())
    columns = list(zip(*rows))
    time = np.asarray(columns[0], dtype=np.float64)
    # Stable: doses at equal times keep the arm's regimen order, then item order.
    order = np.argsort(time, kind="stable")
    arrays = [np.asarray(c, dtype=np.float64)[order] for c in columns[:8]]
    labels = tuple(columns[8][i] for i in order)
    return _DoseRows(*arrays, labels=labels)


def _amount_and_rate(doses: _DoseRows, bsa: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AMT (mg) and RATE (mg/day) for each patient; bsa has shape (n_patients,) in m²."""
    bsa = bsa[:, None]
    amount = np.where(doses.needs_bsa, doses.amount_per_m2 * bsa, doses.amount_mg)
    rate = np.where(np.isnan(doses.rate), amount / doses.duration, doses.rate)
    return amount, rate


def _check_bsa_available(doses: _DoseRows, bsa: np.ndarray, who: Sequence[str]) -> None:
    needs = doses.needs_bsa
    if not needs.any():
        return
    missing = np.isnan(bsa)
    if missing.any():
        first_dose = doses.labels[int(np.argmax(needs))]
        patients = [who[i] for i in np.flatnonzero(missing)]
        shown = ", ".join(patients[:10]) + (f" and {len(patients) - 10} more"
                                             if len(patients) > 10 else "")
        raise RegimenError(
            f"{first_dose} is dosed per m² of body-surface area, but no BSA was given for "
            f"{shown}. Give the BSA in m² (bsa=1.8, or a BSA column in patients), or give the "
            f"dose as amount_mg."
        )


def _check_optional_bsa(bsa) -> float:
    if bsa is None:
        return math.nan
    return check_number(bsa, "bsa", "to_records", unit="m²", strict=True)


def _check_id(value, owner: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(float(value)):
        raise RegimenError(f"{owner}: id must be a finite number; got {value!r}.")
    return float(value)


def _check_dvid(value, owner: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise RegimenError(
            f"{owner}: dvid must be an int ≥ 1 (which model output is requested); got {value!r}."
        )
    return float(value)


def _check_times(times, owner: str) -> np.ndarray:
    try:
        array = np.asarray(times, dtype=np.float64)
    except (TypeError, ValueError):
        raise RegimenError(
            f"{owner}: observation times must be numbers (day); got {times!r}."
        ) from None
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1:
        raise RegimenError(
            f"{owner}: observation times must be a 1-D sequence (day); got shape {array.shape}."
        )
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise RegimenError(
            f"{owner}: observation times must be finite (day); positions {bad.tolist()} are "
            f"{array[bad].tolist()}. Drop or fix them."
        )
    return np.sort(array, kind="stable")


def _frame(columns: dict[str, np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame({name: np.asarray(columns[name], dtype=np.float64)
                         for name in RECORD_COLUMNS})


def to_records(arm_or_regimen, *, id: float = 1, bsa: float | None = None,
               compartments: Mapping[str, int] | None = None, start: float = 0.0,
               expand: bool = True) -> pd.DataFrame:
    """Dose records of one patient, sorted by TIME (stable: regimen order kept at ties).

    Args:
        arm_or_regimen: an Arm, a Regimen, or a single dose/Repeat.
        id: the patient's ID.
        bsa: body-surface area (m²); needed only for doses given per m².
        compartments: compartment name → NONMEM CMT, for doses whose cmt is a name.
        start: added to every dose time (day).
        expand: True: one row per dose (II = ADDL = 0). False: each Repeat is one row with
            ADDL = count − 1 and II = interval (day).

    Returns:
        DataFrame with columns RECORD_COLUMNS, all float64; RATE in mg/day.
    """
    owner = "to_records"
    patient = _check_id(id, owner)
    start = check_number(start, "start", owner, unit="day", minimum=-math.inf)
    bsa_value = np.array([_check_optional_bsa(bsa)])
    doses = _dose_rows(arm_or_regimen, compartments, bool(expand), start)
    _check_bsa_available(doses, bsa_value, [f"patient ID {patient:g}"])
    amount, rate = _amount_and_rate(doses, bsa_value)
    n = doses.time.size
    return _frame({
        "ID": np.full(n, patient), "TIME": doses.time, "EVID": np.ones(n), "AMT": amount[0],
        "CMT": doses.cmt, "RATE": rate[0], "II": doses.ii, "ADDL": doses.addl,
        "MDV": np.ones(n), "DV": np.full(n, np.nan), "DVID": np.ones(n),
    })


def observation_records(times, *, id: float = 1, dvid: int = 1) -> pd.DataFrame:
    """Prediction requests at `times` (day): EVID 0, MDV 1, DV NaN, sorted by TIME.

    Args:
        times: 1-D sequence of times (day).
        id: the patient's ID.
        dvid: which model output is requested (int ≥ 1).
    """
    owner = "observation_records"
    patient = _check_id(id, owner)
    output = _check_dvid(dvid, owner)
    time = _check_times(times, owner)
    n = time.size
    zeros = np.zeros(n)
    return _frame({
        "ID": np.full(n, patient), "TIME": time, "EVID": zeros, "AMT": zeros, "CMT": zeros,
        "RATE": zeros, "II": zeros, "ADDL": zeros, "MDV": np.ones(n),
        "DV": np.full(n, np.nan), "DVID": np.full(n, output),
    })


def _check_patients(patients) -> tuple[np.ndarray, np.ndarray, list[str]]:
    owner = "population_records"
    if not isinstance(patients, pd.DataFrame):
        raise RegimenError(
            f"{owner}: patients must be a pandas DataFrame with an ID column (and optional BSA "
            f"in m² and other covariates); got {type(patients).__name__}."
        )
    if "ID" not in patients.columns:
        raise RegimenError(
            f"{owner}: patients has no ID column; columns are {list(patients.columns)}. "
            f"Add one ID per patient (upper-case column name 'ID')."
        )
    if patients.empty:
        raise RegimenError(f"{owner}: patients has no rows. Give at least one patient.")
    clashing = [c for c in patients.columns if c != "ID" and c in RECORD_COLUMNS]
    if clashing:
        raise RegimenError(
            f"{owner}: patients has columns {clashing} that would overwrite record columns "
            f"{list(RECORD_COLUMNS)}. Rename or drop them; patients should hold ID and covariates."
        )
    ids = pd.to_numeric(patients["ID"], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(ids))
    if bad.size:
        raise RegimenError(
            f"{owner}: patients.ID must be finite numbers; rows {bad.tolist()} hold "
            f"{patients['ID'].iloc[bad].tolist()}."
        )
    values, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise RegimenError(
            f"{owner}: patients.ID must be unique (one row per patient); duplicated: "
            f"{[f'{v:g}' for v in values[counts > 1]]}."
        )
    if "BSA" in patients.columns:
        bsa = pd.to_numeric(patients["BSA"], errors="coerce").to_numpy(dtype=np.float64)
        wrong = np.flatnonzero(~np.isnan(bsa) & ~(np.isfinite(bsa) & (bsa > 0)))
        unreadable = np.flatnonzero(np.isnan(bsa) & patients["BSA"].notna().to_numpy())
        bad = np.union1d(wrong, unreadable)
        if bad.size:
            raise RegimenError(
                f"{owner}: patients.BSA must be a positive number (m²) or missing; rows "
                f"{bad.tolist()} hold {patients['BSA'].iloc[bad].tolist()}."
            )
    else:
        bsa = np.full(ids.size, np.nan)
    return ids, bsa, [f"patient ID {i:g}" for i in ids]


def population_records(arm, patients: pd.DataFrame, observation_times, *,
                       compartments: Mapping[str, int] | None = None,
                       dvids: Sequence[int] = (1,), expand: bool = True) -> pd.DataFrame:
    """Dose and observation-request records for many patients on one arm.

    Rows are sorted by ID, then TIME; at equal TIME observation rows (in `dvids` order)
    come before dose rows, because an observation at a dose time sees the pre-dose state.
    Every column of `patients` other than ID (BSA and other covariates) is copied onto each
    of that patient's rows.

    Args:
        arm: an Arm (or a Regimen, or a single dose/Repeat).
        patients: one row per patient: ID, optional BSA (m²; needed for doses per m²),
            other covariates.
        observation_times: times (day) at which each output in `dvids` is requested.
        compartments: compartment name → NONMEM CMT, for doses whose cmt is a name.
        dvids: model outputs (DVID, int ≥ 1) requested at each observation time.
        expand: True: one row per dose. False: each Repeat is one row with ADDL = count − 1
            and II = interval (day), as a site would write it (much shorter files).

    Returns:
        DataFrame with RECORD_COLUMNS (float64) followed by the covariate columns.
    """
    owner = "population_records"
    ids, bsa, who = _check_patients(patients)
    if isinstance(dvids, (int, np.integer)):
        dvids = (dvids,)
    outputs = np.array([_check_dvid(d, owner) for d in dvids], dtype=np.float64)
    times = _check_times(observation_times, owner)
    doses = _dose_rows(arm, compartments, bool(expand), 0.0)
    _check_bsa_available(doses, bsa, who)
    amount, rate = _amount_and_rate(doses, bsa)          # (n_patients, n_doses)

    n_obs = times.size * outputs.size
    n_doses = doses.time.size
    # One patient's rows: observation requests first, then doses; a stable sort on TIME then
    # keeps observations ahead of doses at equal times. Dose times do not depend on BSA, so
    # the same order serves every patient.
    time = np.concatenate([np.repeat(times, outputs.size), doses.time])
    order = np.argsort(time, kind="stable")
    is_dose = np.concatenate([np.zeros(n_obs, bool), np.ones(n_doses, bool)])[order]

    def per_patient(obs_values, dose_values):
        """(n_patients, n_rows) array in the sorted row order."""
        obs = np.broadcast_to(np.asarray(obs_values, np.float64), (ids.size, n_obs))
        dose = np.broadcast_to(np.asarray(dose_values, np.float64), (ids.size, n_doses))
        return np.concatenate([obs, dose], axis=1)[:, order]

    by_id = np.argsort(ids, kind="stable")
    n_rows = n_obs + n_doses
    columns = {
        "ID": np.repeat(ids[:, None], n_rows, axis=1),
        "TIME": per_patient(np.repeat(times, outputs.size), doses.time),
        "EVID": np.broadcast_to(is_dose.astype(np.float64), (ids.size, n_rows)),
        "AMT": per_patient(0.0, amount),
        "CMT": per_patient(0.0, doses.cmt),
        "RATE": per_patient(0.0, rate),
        "II": per_patient(0.0, doses.ii),
        "ADDL": per_patient(0.0, doses.addl),
        "MDV": np.ones((ids.size, n_rows)),
        "DV": np.full((ids.size, n_rows), np.nan),
        "DVID": per_patient(np.tile(outputs, times.size), np.ones(n_doses)),
    }
    frame = _frame({name: values[by_id].reshape(-1) for name, values in columns.items()})
    rows_of_patient = np.repeat(by_id, n_rows)
    for name in patients.columns:
        if name != "ID":
            frame[name] = patients[name].to_numpy()[rows_of_patient]
    return frame
