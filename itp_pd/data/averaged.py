"""Repeated oral doses as their average input rate: the "averaged" representation of oral dosing.

A run of equal bolus doses into a depot compartment at a constant interval τ (e.g. iguratimod
25 mg every 12 h for 26 weeks: 364 doses) becomes one zero-order input into the same depot at
rate amount/τ, from the first dose until one interval after the last (same total amount). The
depot then empties into the central compartment at the same mean rate, so the central
concentration is the dosing's average, F·dose/(CL/F·τ) at steady state, without the
within-interval peaks and troughs.

Why: the model's ODE solver must stop at every dose (a kink in the concentration), so 364
oral doses make the combination arm cost 1.8× the control arm; a constant input has two
events. It is exact for the total and mean exposure; what it loses is the peak-trough
swing (< 2-fold for iguratimod on 25 mg bid, science.md's table), which matters only for an
effect that is nonlinear within one dosing interval (an Emax effect averaged over the swing
is not the effect of the average), and the input lags the doses by τ/2 on average. Its
measured error on the ITP model is in ``itp_pd.structural.SolverConfig``'s ``oral_doses``.
"""

from __future__ import annotations

import numpy as np

from .dataset import Dataset

# Doses in a run: fewer are left as they are (a loading dose and one repeat is no regimen).
MIN_RUN = 3
_TIME_TOLERANCE = 1e-9  # day: intervals equal to this are one interval
_AMOUNT_TOLERANCE = 1e-12  # relative


def average_repeated_doses(dataset: Dataset, compartments) -> Dataset:
    """``dataset`` with every run of ≥ ``MIN_RUN`` equal, equally spaced bolus doses into one of
    ``compartments`` (CMT numbers of depot compartments) replaced by one infusion record.

    ADDL/II must be expanded first (``expand_addl``). A run is broken by a change of amount,
    by a dose of another kind into the same compartment, by a reset (EVID 3 or 4) of the
    patient, and by a change of interval (the dose where the interval changes ends the earlier
    run). The infusion record is the run's first record with AMT the run's total and
    RATE = AMT of one dose / τ (mg/day); its source row is the first dose's.
    """
    table = dataset.table
    ids = table["ID"].to_numpy()
    times = table["TIME"].to_numpy()
    evid = table["EVID"].to_numpy()
    cmt = table["CMT"].to_numpy()
    amount = table["AMT"].to_numpy()
    rate = table["RATE"].to_numpy()
    keep = np.ones(len(table), dtype=bool)
    new_amount, new_rate = amount.copy(), rate.copy()
    for compartment in compartments:
        bolus = (evid == 1) & (rate == 0) & (cmt == compartment)
        barrier = np.isin(evid, (3, 4)) | (np.isin(evid, (1, 4)) & (cmt == compartment) & ~bolus)
        segment = np.cumsum(barrier)
        rows = np.flatnonzero(bolus)
        if rows.size < MIN_RUN:
            continue
        t, a = times[rows], amount[rows]
        gap = np.diff(t, prepend=np.nan)
        # Hard starts: a new patient, a barrier since the last dose, another amount, two doses at once.
        starts = np.ones(rows.size, dtype=bool)
        starts[1:] = ((ids[rows][1:] != ids[rows][:-1]) | (segment[rows][1:] != segment[rows][:-1])
                      | (np.abs(a[1:] - a[:-1]) > _AMOUNT_TOLERANCE * np.abs(a[:-1])) | ~(gap[1:] > _TIME_TOLERANCE))
        changed = np.zeros(rows.size, dtype=bool)
        changed[2:] = ~starts[2:] & ~starts[1:-1] & (np.abs(gap[2:] - gap[1:-1]) > _TIME_TOLERANCE)
        # A run's second dose joins it at any interval, so an interval change starts a run only
        # where the dose before it does not start one itself: sequential, but over the few changes.
        for j in np.flatnonzero(changed):
            starts[j] = not starts[j - 1]
        first = np.flatnonzero(starts)
        length = np.diff(first, append=rows.size)
        run = np.cumsum(starts) - 1
        averaged = length >= MIN_RUN
        heads = rows[first[averaged]]
        new_amount[heads] = amount[heads] * length[averaged]
        new_rate[heads] = amount[heads] / (times[rows[first[averaged] + 1]] - times[heads])
        keep[rows[~starts & averaged[run]]] = False
    if keep.all():
        return dataset
    averaged_table = table.assign(AMT=new_amount, RATE=new_rate)
    if "DUR" in averaged_table:
        averaged_table["DUR"] = np.where(new_rate != rate, 0.0, averaged_table["DUR"].to_numpy())
    averaged_table = averaged_table[keep].reset_index(drop=True)
    source_rows = tuple(np.asarray(dataset.source_rows)[keep])
    return Dataset(averaged_table, dataset.units, dataset.covariates, source_rows)
