"""Warnings for values that are valid but implausible in the units they are read in.

A dataset in hours read as days is a valid dataset with every rate 24 times wrong; these
checks look at the scale of the dose intervals and of the observations and name the column
that looks wrong and the declaration that would fix it. They warn; they never refuse.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable

import numpy as np

from itp_pd.data.columns import DOSE_EVIDS
from itp_pd.data.units import DV_DIMENSIONS, Unit, parse_unit

# Dose intervals typical of a schedule in hours (q4h ... weekly, 4-weekly).
HOUR_LIKE_INTERVALS = (4, 6, 8, 12, 24, 36, 48, 72, 96, 168, 336, 504, 672)
# Below this many time units between doses (median), doses come implausibly often.
MIN_INTERVAL = {"min": 0.5, "h": 0.5, "day": 1 / 6}
# Platelet counts above this (in 10^9/L) are counts per microlitre, not per nanolitre.
MAX_PLATELETS = 5000.0
# The highest conceivable concentration: a patient's whole dosing in this volume (L).
MIN_VOLUME_L = 1.0


class DataWarning(UserWarning):
    """A dataset that reads but looks wrong (units, scale); the message names the column."""


def warn(messages: Iterable[str]) -> None:
    """Issue each message as a ``DataWarning`` (the Python API's way to say them)."""
    for message in messages:
        warnings.warn(message, DataWarning, stacklevel=3)


def dose_intervals(table, factor: float) -> tuple[np.ndarray, str]:
    """(intervals between doses in the file's time unit, the column they come from: II or TIME)."""
    doses = table[table["EVID"].isin(DOSE_EVIDS)]
    ii = doses["II"].to_numpy()
    ii = ii[ii > 0] / factor
    gaps = doses.groupby("ID", sort=False)["TIME"].diff().to_numpy()
    gaps = gaps[np.isfinite(gaps) & (gaps > 0)] / factor
    if len(ii) >= len(gaps):
        return (ii, "II") if len(ii) else (gaps, "TIME")
    return gaps, "TIME"


def time_scale_warnings(table, time_unit: Unit, *, declared: bool, source: str, how_to_declare: str) -> list[str]:
    """Warnings when the dose intervals look like another time unit than the one read.

    Args:
        table: a Dataset table (internal units, days).
        time_unit: the unit TIME was read in.
        declared: whether the unit was declared (else assumed).
        source: the data file, for the message.
        how_to_declare: where the unit would be declared (sidecar, recipe).
    """
    intervals, column = dose_intervals(table, float(time_unit.factor))
    if not len(intervals):
        return []
    median = float(np.median(intervals))
    how = "as declared" if declared else "assumed, as no units are declared"
    if time_unit.name == "day" and any(math.isclose(median, h, rel_tol=1e-9) for h in HOUR_LIKE_INTERVALS):
        return [
            f"{source}: column {column}: the median interval between doses is {median:g} time units, read as "
            f"{median:g} days ({how}); intervals of {median:g} are typical of hours (q{median:g}h): if TIME is "
            f"in hours, declare TIME = \"h\" ({how_to_declare}); read as days, every rate is 24 times too small"
        ]
    limit = MIN_INTERVAL.get(time_unit.name)
    if limit is not None and median < limit:
        return [
            f"{source}: column {column}: the median interval between doses is {median:g} {time_unit.name} "
            f"({how}), more than {1 / limit:g} doses per {time_unit.name}; check the unit of TIME and II "
            f"({how_to_declare})"
        ]
    return []


def dv_scale_warnings(dataset, observations, *, source: str, spec: str) -> list[str]:
    """Warnings when a model output's observations are implausible in the spec's unit.

    Concentrations above a patient's whole dosing dissolved in 1 L, or platelet counts above
    5000 ×10^9/L (counts per µL), suggest a DV unit that was not declared or converted.

    Args:
        dataset: the checked Dataset.
        observations: the spec's ``Observation`` objects (name, dvid, unit).
        source: the data file; spec: the spec file (both named in the message).
    """
    table = dataset.table
    observed = (table["EVID"] == 0) & (table["MDV"] == 0) & ~dataset.is_blq()
    out = []
    doses = table[table["EVID"].isin(DOSE_EVIDS)]
    total = (doses["AMT"] * (1 + doses["ADDL"])).groupby(doses["ID"]).sum()
    largest = float(total.max()) if len(total) else math.nan
    for obs in observations:
        dv = table.loc[observed & (table["DVID"] == obs.dvid), "DV"].to_numpy()
        dv = dv[np.isfinite(dv) & (dv > 0)]
        unit = parse_unit(obs.unit, DV_DIMENSIONS)
        if not len(dv) or unit is None:
            continue
        median = float(np.median(dv))
        where = f"{source}: column DV (DVID {obs.dvid}, {obs.name}, in {obs.unit} as the spec {spec} says)"
        if unit.dimension == "concentration" and math.isfinite(largest) and largest > 0:
            bound = largest / MIN_VOLUME_L / float(unit.factor)
            if median > bound:
                out.append(
                    f"{where}: median {median:g}, more than the largest patient's whole dosing ({largest:g} mg) "
                    f"in {MIN_VOLUME_L:g} L ({bound:g} {obs.unit}); the observations look given in a smaller "
                    f"unit (ng/mL or ug/L for mg/L is 1000 times): declare the DV unit ([DV] {obs.dvid} = "
                    "\"ng/mL\" in the units sidecar, or the recipe's [data] units) so that it is converted"
                )
        elif unit.dimension == "platelets" and median > MAX_PLATELETS / float(unit.factor):
            out.append(
                f"{where}: median {median:g}, implausible for platelets in {obs.unit} (normal 150-450 x10^9/L); "
                "counts per microlitre (e.g. 150000/uL) are 1000 times 10^3/uL: divide them by 1000 and "
                "declare [DV] " f"{obs.dvid} = \"10^3/uL\""
            )
    return out
