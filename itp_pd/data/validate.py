"""Check a NONMEM-format table and report every violation, each with row, column and fix."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from itp_pd.data.columns import DOSE_EVIDS, KNOWN_EVIDS, REQUIRED, STANDARD_COLUMNS
from itp_pd.data.declared_units import ResolvedUnits, resolve_units
from itp_pd.data.problems import ProblemLog
from itp_pd.data.records import Records, format_number, read_records

EVID_MEANING = "0 (observation), 1 (dose), 2 (other event), 3 (reset) or 4 (reset and dose)"


def covariate_names(records: Records) -> tuple[str, ...]:
    """Every column that is not a standard NONMEM column, in input order."""
    return tuple(name for name in records.names if name not in STANDARD_COLUMNS)


def _is_integer(values: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.isfinite(values) & (np.floor(values) == values)


def _row_span(records: Records, rows: np.ndarray) -> str:
    numbers = records.source_rows[rows]
    low, high = int(numbers.min()), int(numbers.max())
    return f"row {low}" if low == high else f"rows {low}-{high}"


# Larger magnitudes do not survive the model's float64 arithmetic (exp, products of rates and
# amounts, squares in the likelihood); no dataset value in any unit needs them.
MAX_MAGNITUDE = 1e15


def check_magnitudes(records: Records, log: ProblemLog) -> None:
    """Refuse values beyond ``MAX_MAGNITUDE`` (e.g. AMT 1e300), each with its row and column.

    They are then treated like unreadable cells (already reported), so that no later check
    reports them again.
    """
    for name in records.names:
        values = records.values[name]
        with np.errstate(invalid="ignore"):
            huge = np.abs(values) > MAX_MAGNITUDE
        if not huge.any():
            continue
        rows = np.flatnonzero(huge)
        texts = records.texts.setdefault(name, {})
        for i in rows:
            texts[int(i)] = format_number(values[i])
        log.add_rows(
            f"huge {name}",
            rows,
            lambda i, name=name, values=values: (
                f"{records.where(i)}, column {name}: found {format_number(values[i])}, beyond what the model's "
                f"float64 arithmetic survives (|value| <= {MAX_MAGNITUDE:g}); check the value and its unit"
            ),
            records.row_number,
        )
        values[huge] = np.nan
        records.bad[name] = records.bad[name] | huge


def _check_required(records: Records, log: ProblemLog) -> None:
    if records.n == 0:
        log.add("the table has no data rows below the header; add at least one record per patient")
    found = ", ".join(records.names) or "none"
    for name in REQUIRED:
        if not records.has(name):
            what = "a patient ID" if name == "ID" else "a time (in TIME units)"
            log.add(
                f"missing required column {name}: every record needs {what}; add column {name} "
                f"(columns found: {found})"
            )
    if not records.has("EVID") and not records.has("AMT"):
        log.add(
            "missing column EVID and AMT: at least one is needed to tell doses from observations; "
            f"add EVID, with {EVID_MEANING}, or AMT (rows with AMT > 0 are then doses) "
            f"(columns found: {found})"
        )


def _check_id_time(records: Records, log: ProblemLog) -> None:
    for name, what in (("ID", "a patient ID"), ("TIME", "a time")):
        log.add_rows(
            f"missing {name}",
            np.flatnonzero(records.is_missing(name)),
            lambda i, name=name, what=what: (
                f"{records.where(i)}, column {name}: missing; every record needs {what}; fill it in"
            ),
            records.row_number,
        )
    time = records.raw("TIME")
    log.add_rows(
        "negative TIME",
        np.flatnonzero(time < 0),
        lambda i: (
            f"{records.where(i)}, column TIME: found {format_number(time[i])}, expected >= 0; "
            "shift the patient's times so they count from 0 (e.g. the first dose)"
        ),
        records.row_number,
    )


def _check_evid_mdv(records: Records, log: ProblemLog) -> None:
    if records.has("EVID"):
        log.add_rows(
            "missing EVID",
            np.flatnonzero(records.is_missing("EVID")),
            lambda i: f"{records.where(i)}, column EVID: missing; give {EVID_MEANING}",
            records.row_number,
        )
        raw = records.raw("EVID")
        log.add_rows(
            "unknown EVID",
            np.flatnonzero(records.given("EVID") & ~np.isin(raw, KNOWN_EVIDS)),
            lambda i: (
                f"{records.where(i)}, column EVID: unknown event type {format_number(raw[i])}; "
                f"expected {EVID_MEANING}; fix the code"
            ),
            records.row_number,
        )
    if records.has("MDV"):
        raw = records.raw("MDV")
        log.add_rows(
            "bad MDV",
            np.flatnonzero(records.given("MDV") & ~np.isin(raw, (0.0, 1.0))),
            lambda i: (
                f"{records.where(i)}, column MDV: found {format_number(raw[i])}, expected 0 (DV is an "
                "observation) or 1 (no observation on this row); fix it"
            ),
            records.row_number,
        )
    evid, mdv = records.evid, records.mdv
    log.add_rows(
        "MDV 0 on event",
        np.flatnonzero((mdv == 0) & (evid > 0)),
        lambda i: (
            f"{records.where(i)}, column MDV: MDV 0 on an EVID {format_number(evid[i])} record; only "
            "EVID 0 records carry an observation: set MDV to 1, and put an observation made at that "
            "time on its own EVID 0 row"
        ),
        records.row_number,
    )


def _check_order(records: Records, log: ProblemLog) -> None:
    time, block = records.raw("TIME"), records.blocks
    if records.n > 1:
        same = (block[1:] >= 0) & (block[1:] == block[:-1])
        with np.errstate(invalid="ignore"):
            earlier = same & (time[1:] < time[:-1])
        log.add_rows(
            "decreasing TIME",
            np.flatnonzero(earlier) + 1,
            lambda i: (
                f"{records.where(i)}, column TIME: {format_number(time[i])} is earlier than "
                f"{format_number(time[i - 1])} on row {records.row_number(i - 1)} of the same patient; "
                "TIME must not decrease within a patient (itp-pd keeps one time axis per patient, "
                "also across EVID 3/4 resets): sort the patient's records by TIME, or give later "
                "occasions later times"
            ),
            records.row_number,
        )
    ids = records.raw("ID")
    valid = block >= 0
    blocks_per_id = pd.Series(block[valid]).groupby(ids[valid], sort=False).nunique()
    for patient in blocks_per_id.index[blocks_per_id.to_numpy() > 1]:
        rows = np.flatnonzero(valid & (ids == patient))
        starts = np.unique(block[rows])
        if len(starts) > 1:
            spans = ", ".join(_row_span(records, rows[block[rows] == b]) for b in starts)
            log.add(
                f"ID {format_number(patient)}, column ID: the patient's records are in {len(starts)} "
                f"separate blocks ({spans}); NONMEM starts a new individual whenever ID changes between "
                "consecutive records, so these would be different patients: put each patient's records "
                "together (sorted by TIME), or give the blocks different IDs"
            )


def _check_doses(records: Records, log: ProblemLog) -> None:
    evid, amt = records.evid, records.raw("AMT")
    dose = np.isin(evid, DOSE_EVIDS)
    if records.has("EVID"):
        log.add_rows(
            "dose without AMT",
            np.flatnonzero(dose & ~records.given("AMT") & ~records.is_bad("AMT")),
            lambda i: (
                f"{records.where(i)}, column AMT: dose record (EVID {format_number(evid[i])}) has no "
                "amount; give the dose in AMT (> 0), or change EVID if this row is not a dose"
            ),
            records.row_number,
        )
    log.add_rows(
        "dose AMT <= 0",
        np.flatnonzero(dose & (amt <= 0)),
        lambda i: (
            f"{records.where(i)}, column AMT: dose record (EVID {format_number(evid[i])}) has AMT "
            f"{format_number(amt[i])}, expected > 0; give the dose amount, or change EVID if this row "
            "is not a dose"
        ),
        records.row_number,
    )
    non_dose = np.isin(evid, (0, 2, 3))
    if records.has("EVID"):
        hint = (
            "AMT is read only on dose records (EVID 1 or 4): set EVID to 1 (and MDV to 1) if this is "
            "a dose, else set AMT to 0 or '.'"
        )
    else:
        hint = (
            "without an EVID column, rows with AMT > 0 are doses and all others observations: give a "
            "positive amount, or 0/'.' on observations"
        )
    log.add_rows(
        "AMT on non-dose",
        np.flatnonzero(non_dose & records.given("AMT") & (amt != 0)),
        lambda i: (
            f"{records.where(i)}, column AMT: EVID {format_number(evid[i])} record has AMT "
            f"{format_number(amt[i])}; {hint}"
        ),
        records.row_number,
    )


def _check_cmt_dvid(records: Records, log: ProblemLog, compartments, dvids) -> None:
    cmt = records.raw("CMT")
    # CMT only routes doses; on other records NONMEM allows 0 (the default observation
    # compartment) and the output is chosen by DVID, so only dose records need a real one.
    dose = np.isin(records.evid, DOSE_EVIDS)
    minimum = np.where(dose, 1, 0)
    valid_cmt = _is_integer(cmt) & (cmt >= minimum)
    log.add_rows(
        "bad CMT",
        np.flatnonzero(records.given("CMT") & ~valid_cmt),
        lambda i: (
            f"{records.where(i)}, column CMT: found {format_number(cmt[i])}, expected a "
            + ("positive integer compartment number on a dose record" if dose[i] else "non-negative integer")
            + "; fix it"
        ),
        records.row_number,
    )
    if compartments is not None:
        allowed = sorted(compartments)
        log.add_rows(
            "unknown CMT",
            np.flatnonzero(dose & valid_cmt & ~np.isin(cmt, allowed)),
            lambda i: (
                f"{records.where(i)}, column CMT: compartment {format_number(cmt[i])} is not one of the "
                f"model's compartments ({', '.join(map(str, allowed))}); fix CMT"
            ),
            records.row_number,
        )
    dvid = records.raw("DVID")
    observation_record = records.evid == 0
    valid_dvid = _is_integer(dvid) & (dvid >= 1)
    log.add_rows(
        "bad DVID",
        np.flatnonzero(observation_record & records.given("DVID") & ~valid_dvid),
        lambda i: (
            f"{records.where(i)}, column DVID: found {format_number(dvid[i])} on an EVID 0 record, "
            "expected a positive integer saying which output is observed (1, 2, ...); fix it"
        ),
        records.row_number,
    )
    if dvids is not None:
        allowed = sorted(dvids)
        log.add_rows(
            "unknown DVID",
            np.flatnonzero(observation_record & valid_dvid & ~np.isin(dvid, allowed)),
            lambda i: (
                f"{records.where(i)}, column DVID: output {format_number(dvid[i])} is not one of the "
                f"model's outputs ({', '.join(map(str, allowed))}); fix DVID"
            ),
            records.row_number,
        )


def _check_rate_dur(records: Records, log: ProblemLog) -> None:
    rate, dur, evid = records.raw("RATE"), records.raw("DUR"), records.evid
    modelled = np.isin(rate, (-1.0, -2.0))
    log.add_rows(
        "modelled RATE",
        np.flatnonzero(modelled),
        lambda i: (
            f"{records.where(i)}, column RATE: found {format_number(rate[i])}, a modelled infusion "
            f"{'rate' if rate[i] == -1 else 'duration'}; modelled rates and durations (RATE -1/-2) are "
            "not supported yet: give the infusion rate in RATE (> 0) or its duration in DUR"
        ),
        records.row_number,
    )
    log.add_rows(
        "negative RATE",
        np.flatnonzero((rate < 0) & ~modelled),
        lambda i: (
            f"{records.where(i)}, column RATE: found {format_number(rate[i])}, expected >= 0 (0 for a "
            "bolus, > 0 for an infusion rate in AMT units per TIME unit); fix it"
        ),
        records.row_number,
    )
    log.add_rows(
        "negative DUR",
        np.flatnonzero(dur < 0),
        lambda i: (
            f"{records.where(i)}, column DUR: found {format_number(dur[i])}, expected >= 0 (0 for a "
            "bolus, > 0 for an infusion duration in TIME units); fix it"
        ),
        records.row_number,
    )
    both = (rate != 0) & (dur != 0) & records.given("RATE") & records.given("DUR")
    log.add_rows(
        "RATE and DUR",
        np.flatnonzero(both),
        lambda i: (
            f"{records.where(i)}, columns RATE and DUR: both given (RATE {format_number(rate[i])}, "
            f"DUR {format_number(dur[i])}); an infusion is defined by one of them: set the other to 0"
        ),
        records.row_number,
    )
    non_dose = np.isin(evid, (0, 2, 3))
    for name, values in (("RATE", rate), ("DUR", dur)):
        log.add_rows(
            f"{name} on non-dose",
            np.flatnonzero(non_dose & (values > 0)),
            lambda i, name=name, values=values: (
                f"{records.where(i)}, column {name}: EVID {format_number(evid[i])} record has {name} "
                f"{format_number(values[i])}; {name} is read only on dose records (EVID 1 or 4): set it "
                "to 0 or '.'"
            ),
            records.row_number,
        )


def _check_addl_ii(records: Records, log: ProblemLog) -> None:
    addl, ii, ss, evid = records.raw("ADDL"), records.raw("II"), records.raw("SS"), records.evid
    valid_addl = _is_integer(addl) & (addl >= 0)
    log.add_rows(
        "bad ADDL",
        np.flatnonzero(records.given("ADDL") & ~valid_addl),
        lambda i: (
            f"{records.where(i)}, column ADDL: found {format_number(addl[i])}, expected a non-negative "
            "integer (the number of additional doses after this one); fix it"
        ),
        records.row_number,
    )
    log.add_rows(
        "negative II",
        np.flatnonzero(ii < 0),
        lambda i: (
            f"{records.where(i)}, column II: found {format_number(ii[i])}, expected >= 0 (the interval "
            "between additional doses, in TIME units); fix it"
        ),
        records.row_number,
    )
    repeats = (addl > 0) | (ii > 0)
    log.add_rows(
        "ADDL on non-dose",
        np.flatnonzero(np.isin(evid, (0, 2, 3)) & repeats),
        lambda i: (
            f"{records.where(i)}, columns ADDL and II: EVID {format_number(evid[i])} record has ADDL "
            f"{format_number(addl[i])} and II {format_number(ii[i])}; additional doses are read only "
            "on dose records (EVID 1 or 4): move them to the dose row, or set both to 0"
        ),
        records.row_number,
    )
    dose = np.isin(evid, DOSE_EVIDS)
    no_addl = (valid_addl & (addl == 0)) | (np.isnan(addl) & ~records.is_bad("ADDL"))
    no_ii = (ii == 0) | (np.isnan(ii) & ~records.is_bad("II"))
    steady_state = records.given("SS") & (ss != 0)
    log.add_rows(
        "II without ADDL",
        np.flatnonzero(dose & (ii > 0) & no_addl & ~steady_state),
        lambda i: (
            f"{records.where(i)}, column II: II {format_number(ii[i])} without ADDL > 0; II is the "
            "interval between the additional doses counted by ADDL: give ADDL (the number of doses "
            "after this one), or set II to 0"
        ),
        records.row_number,
    )
    log.add_rows(
        "ADDL without II",
        np.flatnonzero(dose & valid_addl & (addl > 0) & no_ii),
        lambda i: (
            f"{records.where(i)}, column ADDL: ADDL {format_number(addl[i])} without II > 0; give the "
            "interval between the doses in II (TIME units), or set ADDL to 0"
        ),
        records.row_number,
    )
    log.add_rows(
        "SS",
        np.flatnonzero(steady_state),
        lambda i: (
            f"{records.where(i)}, column SS: found {format_number(ss[i])}; steady-state doses are not "
            "supported yet: give the doses explicitly or with ADDL/II, and set SS to 0"
        ),
        records.row_number,
    )


def _check_dv_censoring(records: Records, log: ProblemLog) -> None:
    evid, mdv, dv = records.evid, records.mdv, records.raw("DV")
    observation = (evid == 0) & (mdv == 0)
    blq, cens = records.raw("BLQ"), records.raw("CENS")
    no_dv = records.is_missing("DV") if records.has("DV") else np.ones(records.n, dtype=bool)
    log.add_rows(
        "missing DV",
        np.flatnonzero(observation & no_dv & (blq != 1)),
        lambda i: (
            f"{records.where(i)}, column DV: observation record (EVID 0, MDV 0) has no DV; give the "
            "observed value, set MDV to 1 if the row only asks for a prediction, or flag it below the "
            "limit of quantification (BLQ 1 with its LLOQ, or CENS 1 with the limit in DV)"
        ),
        records.row_number,
    )
    if records.has("CENS") and records.has("BLQ"):
        log.add(
            "columns CENS and BLQ: both present; give censoring either Monolix-style (CENS, with "
            "LIMIT optional) or with BLQ and LLOQ, not both: drop one of them (--drop BLQ,LLOQ on the "
            "command line, drop = [...] in a recipe's [data], or read_nonmem(..., drop=[...]))"
        )
    log.add_rows(
        "bad CENS",
        np.flatnonzero(records.given("CENS") & ~np.isin(cens, (-1.0, 0.0, 1.0))),
        lambda i: (
            f"{records.where(i)}, column CENS: found {format_number(cens[i])}, expected 0 (observed), "
            "1 (below the limit of quantification, which DV holds) or -1 (above the limit)"
        ),
        records.row_number,
    )
    log.add_rows(
        "bad BLQ",
        np.flatnonzero(records.given("BLQ") & ~np.isin(blq, (0.0, 1.0))),
        lambda i: (
            f"{records.where(i)}, column BLQ: found {format_number(blq[i])}, expected 0 (observed) or "
            "1 (below the limit of quantification given in LLOQ)"
        ),
        records.row_number,
    )
    for name, values in (("CENS", cens), ("BLQ", blq)):
        known_evid = ~np.isnan(evid) & ~np.isnan(mdv)
        log.add_rows(
            f"{name} on non-observation",
            np.flatnonzero(known_evid & ~observation & np.isin(values, (-1.0, 1.0))),
            lambda i, name=name, values=values: (
                f"{records.where(i)}, column {name}: {name} {format_number(values[i])} on a record that "
                f"is not an observation (EVID {format_number(evid[i])}, MDV {format_number(mdv[i])}); "
                f"set {name} to 0, or make the row an observation (EVID 0, MDV 0)"
            ),
            records.row_number,
        )
    lloq = records.raw("LLOQ")
    log.add_rows(
        "BLQ without LLOQ",
        np.flatnonzero((blq == 1) & ~records.given("LLOQ") & ~records.is_bad("LLOQ")),
        lambda i: (
            f"{records.where(i)}, column LLOQ: BLQ 1 record without a limit of quantification; give "
            f"it in LLOQ (DV units){'' if records.has('LLOQ') else '; add an LLOQ column'}"
        ),
        records.row_number,
    )
    log.add_rows(
        "LLOQ <= 0",
        np.flatnonzero((blq == 1) & (lloq <= 0)),
        lambda i: (
            f"{records.where(i)}, column LLOQ: found {format_number(lloq[i])} on a BLQ 1 record, "
            "expected > 0; fix the limit of quantification"
        ),
        records.row_number,
    )
    limit = records.raw("LIMIT")
    with np.errstate(invalid="ignore"):
        wrong_side = ((cens == 1) & (limit >= dv)) | ((cens == -1) & (limit <= dv))
    log.add_rows(
        "LIMIT wrong side",
        np.flatnonzero(wrong_side),
        lambda i: (
            f"{records.where(i)}, column LIMIT: LIMIT {format_number(limit[i])} is not "
            f"{'below' if cens[i] == 1 else 'above'} DV {format_number(dv[i])} on a CENS "
            f"{format_number(cens[i])} record; with CENS (Monolix convention) DV holds the limit of "
            "quantification and LIMIT the other bound of the censoring interval (e.g. 0 below an LLOQ): "
            "put the limit of quantification in DV, and the other bound or '.' in LIMIT"
        ),
        records.row_number,
    )


def _check_patients(records: Records, log: ProblemLog) -> None:
    ids, evid = records.raw("ID"), records.evid
    if not (records.has("EVID") or records.has("AMT")):
        return
    valid = ~np.isnan(ids)
    # A patient passes with an EVID 0 record, or is skipped when an unknown EVID was reported.
    passes = pd.Series((evid[valid] == 0) | np.isnan(evid[valid])).groupby(ids[valid], sort=False).any()
    for patient in passes.index[~passes.to_numpy()]:
        rows = np.flatnonzero(valid & (ids == patient))
        log.add(
            f"ID {format_number(patient)} ({_row_span(records, rows)}), column EVID: the patient has no "
            "EVID 0 record; every patient needs at least one (an observation with MDV 0, or a "
            "prediction request with MDV 1): add one, or remove the patient"
        )


def _check_covariates(records: Records, log: ProblemLog) -> None:
    block = records.blocks
    first = np.ones(records.n, dtype=bool)
    if records.n > 1:
        first[1:] = block[1:] != block[:-1]
    first &= block >= 0
    for name in covariate_names(records):
        log.add_rows(
            f"first {name} missing",
            np.flatnonzero(first & records.is_missing(name)),
            lambda i, name=name: (
                f"{records.where(i)}, column {name}: missing on the patient's first record; a missing "
                "covariate is carried forward from the patient's previous record, so the first one must "
                "be given: fill it in"
            ),
            records.row_number,
        )


def check_records(
    records: Records,
    log: ProblemLog,
    *,
    compartments: Collection[int] | None = None,
    dvids: Collection[int] | None = None,
) -> None:
    """Run every check on parsed records, adding each violation to ``log``."""
    _check_required(records, log)
    _check_id_time(records, log)
    _check_evid_mdv(records, log)
    _check_order(records, log)
    _check_doses(records, log)
    _check_cmt_dvid(records, log, compartments, dvids)
    _check_rate_dur(records, log)
    _check_addl_ii(records, log)
    _check_dv_censoring(records, log)
    _check_patients(records, log)
    _check_covariates(records, log)


def observed_dvids(records: Records) -> list[int]:
    """Distinct valid DVIDs of the EVID 0 records (1 where DVID is absent or missing)."""
    dvid = records.raw("DVID")
    dvid = np.where(np.isnan(dvid) & ~records.is_bad("DVID"), 1.0, dvid)
    dvid = dvid[(records.evid == 0) & _is_integer(dvid) & (dvid >= 1)]
    return sorted(int(d) for d in np.unique(dvid))


def collect_problems(
    table: pd.DataFrame,
    log: ProblemLog,
    *,
    units: Mapping[str, object] | None = None,
    compartments: Collection[int] | None = None,
    dvids: Collection[int] | None = None,
    drop: Iterable[str] = (),
    source_rows: Sequence[int] | None = None,
) -> tuple[Records, ResolvedUnits]:
    """Parse and check ``table``; violations go to ``log``. Returns what later steps need."""
    records = read_records(table, drop=drop, source_rows=source_rows, log=log)
    check_magnitudes(records, log)
    check_records(records, log, compartments=compartments, dvids=dvids)
    resolved = resolve_units(
        units,
        present=records.names,
        covariates=covariate_names(records),
        observed_dvids=observed_dvids(records),
        log=log,
    )
    return records, resolved


def validate_table(
    table: pd.DataFrame,
    *,
    units: Mapping[str, object] | None = None,
    compartments: Collection[int] | None = None,
    dvids: Collection[int] | None = None,
    drop: Iterable[str] = (),
    source_rows: Sequence[int] | None = None,
) -> list[str]:
    """Every violation in a NONMEM-format table, as messages; an empty list if it is valid.

    Args:
        table: records as text or numbers; column names in any case.
        units: declared units of the columns, as for ``read_nonmem``.
        compartments: allowed CMT numbers; None accepts any positive integer.
        dvids: allowed DVIDs on EVID 0 records; None accepts any positive integer.
        drop: columns to ignore.
        source_rows: 1-based row number of each record, quoted in the messages;
            default 1..n.
    """
    log = ProblemLog()
    collect_problems(
        table, log, units=units, compartments=compartments, dvids=dvids, drop=drop, source_rows=source_rows
    )
    return log.messages()
