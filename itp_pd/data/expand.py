"""Expand ADDL/II into explicit dose records."""

from __future__ import annotations

import numpy as np
import pandas as pd

from itp_pd.data.build import prepare_table
from itp_pd.data.dataset import Dataset
from itp_pd.errors import DatasetError


def expand_addl(dataset: Dataset) -> Dataset:
    """Replace each dose with ADDL > 0 by its ADDL + 1 doses, as explicit records.

    Dose k = 1..ADDL is a copy of the dose record at TIME + k * II (day), with ADDL and II
    set to 0 and EVID 4 turned into 1 (only the first dose resets). The original record
    stays where it is, with ADDL and II set to 0. New records join their patient's records
    in time order; at equal times the original records keep their order and new doses come
    after them (in the order of the records that generated them). Covariates of a new
    record are those of the patient's original record in effect at its time (the last one
    at or before it). Each new record's source row is that of the dose that generated it.
    """
    table = dataset.table
    addl = table["ADDL"].to_numpy()
    origin = np.repeat(np.arange(len(table)), addl.astype(np.int64))
    if len(origin) == 0:
        return dataset
    # k counts 1..ADDL within each origin dose.
    starts = np.cumsum(addl.astype(np.int64)) - addl.astype(np.int64)
    k = np.arange(len(origin)) - starts[origin] + 1

    generated = table.iloc[origin].reset_index(drop=True)
    generated["TIME"] = table["TIME"].to_numpy()[origin] + k * table["II"].to_numpy()[origin]
    _refuse_additional_doses_after_reset(dataset, origin, generated["TIME"].to_numpy())
    generated["EVID"] = np.where(generated["EVID"].to_numpy() == 4, 1.0, generated["EVID"].to_numpy())
    generated[list(dataset.covariates)] = np.nan

    originals = table.copy()
    originals.loc[addl > 0, ["ADDL", "II"]] = 0.0
    generated["ADDL"] = 0.0
    generated["II"] = 0.0

    # Patients stay in file order (IDs are contiguous in a checked dataset).
    patient_order = {patient: n for n, patient in enumerate(dataset.patients())}
    ids = np.concatenate([table["ID"].to_numpy(), table["ID"].to_numpy()[origin]])
    keys = {
        "patient": np.array([patient_order[patient] for patient in ids]),
        "time": np.concatenate([table["TIME"].to_numpy(), generated["TIME"].to_numpy()]),
        "generated": np.concatenate([np.zeros(len(table)), np.ones(len(origin))]),
        "origin": np.concatenate([np.arange(len(table)), origin]),
        "k": np.concatenate([np.zeros(len(table)), k]),
    }
    order = np.lexsort((keys["k"], keys["origin"], keys["generated"], keys["time"], keys["patient"]))

    combined = pd.concat([originals, generated], ignore_index=True).iloc[order].reset_index(drop=True)
    # A patient's first record is always an original one, so forward-filling never crosses patients.
    combined[list(dataset.covariates)] = combined[list(dataset.covariates)].ffill()
    source_rows = np.asarray(dataset.source_rows + tuple(dataset.source_rows[i] for i in origin))[order]
    prepared = prepare_table(combined, units=dataset.units, source_rows=source_rows)
    return Dataset(prepared.table, prepared.units, prepared.covariates, prepared.source_rows)


def _refuse_additional_doses_after_reset(dataset, origin, generated_times):
    """Raise when an additional dose would fall at or after a later reset of its patient.

    Whether a reset cancels the additional doses still pending differs between tools, so
    itp-pd asks the user to say which doses are given instead of guessing.
    """
    table = dataset.table
    ids, times, evids = (table[c].to_numpy() for c in ("ID", "TIME", "EVID"))
    resets = np.flatnonzero(np.isin(evids, (3, 4)))
    problems = []
    for dose in np.unique(origin):
        later = resets[(ids[resets] == ids[dose]) & (times[resets] > times[dose])]
        last_additional = generated_times[origin == dose].max()
        clash = later[times[later] <= last_additional]
        if clash.size:
            reset = clash[0]
            problems.append(
                f"row {dataset.source_rows[dose]} (ID {ids[dose]:g}): ADDL doses continue past the "
                f"reset (EVID {evids[reset]:g}) on row {dataset.source_rows[reset]}; whether a reset "
                "cancels pending additional doses is ambiguous, so shorten ADDL to end before the "
                "reset or write the doses you mean as explicit rows"
            )
    if problems:
        raise DatasetError(problems)
