"""Regimens as data (doses, repeats, regimens, arms) and their NONMEM-format event records.

Units: time in days, amounts in mg, infusion rates in mg/day, body-surface area in m².
"""

from itp_pd.dosing.doses import Arm, Bolus, Dose, Infusion, Oral, Regimen, Repeat
from itp_pd.dosing.records import (
    RECORD_COLUMNS,
    observation_records,
    population_records,
    to_records,
)
from itp_pd.dosing.schedules import daily, every, weekly

__all__ = [
    "RECORD_COLUMNS",
    "Arm",
    "Bolus",
    "Dose",
    "Infusion",
    "Oral",
    "Regimen",
    "Repeat",
    "daily",
    "every",
    "observation_records",
    "population_records",
    "to_records",
    "weekly",
]
