"""Constructors that read like a protocol: `weekly(dose, count=6)`, `every(hours=12, ...)`."""

from __future__ import annotations

import math

from itp_pd.dosing._checks import check_number, check_one_of
from itp_pd.dosing.doses import Dose, Repeat

_HOURS_PER_DAY = 24.0
_DAYS_PER_WEEK = 7.0
# Ratios such as 182 / 0.5 come out of float division a few ulp off an integer;
# this relative slack keeps "26 weeks every 12 h" at 364 doses, not 365.
_COUNT_SLACK = 1e-9


def every(dose: Dose, *, hours: float | None = None, days: float | None = None,
          weeks: float | None = None, count: int | None = None,
          for_days: float | None = None, for_weeks: float | None = None) -> Repeat:
    """Repeat `dose` at a fixed interval, for a number of doses or a treatment period.

    Give one interval (`hours`, `days` or `weeks`) and one length (`count` doses, or a period
    `for_days` / `for_weeks`). A period holds every dose that starts before it ends:
    count = ⌈period / interval⌉, so 12-hourly for 26 weeks is 364 doses, the last at day 181.5.

    Args:
        dose: the dose given each time; the first dose is at `dose.time` (day).
        hours, days, weeks: the dosing interval (h, day or week).
        count: number of doses.
        for_days, for_weeks: treatment period (day or week), counted from the first dose.
    """
    owner = "every()"
    unit = check_one_of(owner, hours=hours, days=days, weeks=weeks)
    scale = {"hours": 1.0 / _HOURS_PER_DAY, "days": 1.0, "weeks": _DAYS_PER_WEEK}[unit]
    interval = check_number({"hours": hours, "days": days, "weeks": weeks}[unit], unit,
                            owner, unit=unit.rstrip("s"), strict=True) * scale
    length = check_one_of(owner, count=count, for_days=for_days, for_weeks=for_weeks)
    if length != "count":
        period = check_number(for_days if length == "for_days" else for_weeks, length, owner,
                              unit=length.removeprefix("for_").rstrip("s"), strict=True)
        period_days = period * (_DAYS_PER_WEEK if length == "for_weeks" else 1.0)
        count = max(1, math.ceil(period_days / interval * (1.0 - _COUNT_SLACK)))
    return Repeat(dose, every=interval, count=count)


def daily(dose: Dose, count: int | None = None, *, for_days: float | None = None,
          for_weeks: float | None = None) -> Repeat:
    """Repeat `dose` once a day (interval 1 day) for `count` doses or a period (day / week)."""
    return every(dose, days=1.0, count=count, for_days=for_days, for_weeks=for_weeks)


def weekly(dose: Dose, count: int | None = None, *, for_weeks: float | None = None) -> Repeat:
    """Repeat `dose` once a week (interval 7 days) for `count` doses or `for_weeks` weeks."""
    return every(dose, weeks=1.0, count=count, for_weeks=for_weeks)
