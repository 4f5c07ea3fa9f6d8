"""Regimens as data: single doses, repeats, a drug's regimen and a trial arm.

Internal units: time in days, amounts in mg, infusion rates in mg/day, body-surface
area (BSA) in m². Convenience keywords (`duration_h`, `every_h`) are converted to days
on construction; only days are stored.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, InitVar, dataclass
from typing import Union

from itp_pd.dosing._checks import check_cmt, check_count, check_number, check_one_of
from itp_pd.errors import RegimenError

_HOURS_PER_DAY = 24.0


def _check_amount(dose, owner: str) -> None:
    """Validate the amount fields shared by every dose type (exactly one is given, > 0)."""
    which = check_one_of(owner, amount_mg=dose.amount_mg, amount_mg_per_m2=dose.amount_mg_per_m2)
    unit = "mg" if which == "amount_mg" else "mg/m²"
    value = check_number(getattr(dose, which), which, owner, unit=unit, strict=True)
    object.__setattr__(dose, which, value)


def _check_cmt_and_time(dose, owner: str) -> None:
    object.__setattr__(dose, "cmt", check_cmt(dose.cmt, owner))
    time = check_number(dose.time, "time", owner, unit="day")
    object.__setattr__(dose, "time", time)


def _cmt_text(cmt) -> str:
    return repr(cmt) if isinstance(cmt, str) else f"CMT {cmt}"


def _amount_text(dose) -> str:
    if dose.amount_mg is not None:
        return f"{dose.amount_mg:g} mg"
    return f"{dose.amount_mg_per_m2:g} mg/m²"


@dataclass(frozen=True)
class Bolus:
    """An instantaneous dose (IV bolus) into compartment `cmt`.

    Args:
        amount_mg: dose (mg), > 0; or give `amount_mg_per_m2` (mg/m², scaled by the
            patient's BSA when records are made) instead.
        cmt: NONMEM compartment number (≥ 1) or a compartment name.
        time: dose time relative to the regimen start (day), ≥ 0.
    """

    amount_mg: float | None = None
    cmt: int | str | None = None
    time: float = 0.0
    _: KW_ONLY
    amount_mg_per_m2: float | None = None

    def __post_init__(self):
        _check_amount(self, "Bolus")
        _check_cmt_and_time(self, "Bolus")

    def describe(self) -> str:
        """One line for error messages, e.g. "Bolus of 10 mg into 'central' at day 0"."""
        return f"Bolus of {_amount_text(self)} into {_cmt_text(self.cmt)} at day {self.time:g}"


@dataclass(frozen=True)
class Oral:
    """An oral dose: instantaneous input into the depot (gut) compartment `cmt`.

    Numerically a bolus into the depot; a separate type so a model can check the route.

    Args:
        amount_mg: dose (mg), > 0; or `amount_mg_per_m2` (mg/m²) instead.
        cmt: NONMEM number (≥ 1) or name of the depot compartment.
        time: dose time relative to the regimen start (day), ≥ 0.
    """

    amount_mg: float | None = None
    cmt: int | str | None = None
    time: float = 0.0
    _: KW_ONLY
    amount_mg_per_m2: float | None = None

    def __post_init__(self):
        _check_amount(self, "Oral")
        _check_cmt_and_time(self, "Oral")

    def describe(self) -> str:
        """One line for error messages."""
        return (f"Oral dose of {_amount_text(self)} into {_cmt_text(self.cmt)} "
                f"at day {self.time:g}")


@dataclass(frozen=True)
class Infusion:
    """A zero-order (constant-rate) infusion into compartment `cmt`.

    Give exactly one of `duration` (day; or `duration_h` in hours) and `rate` (mg/day).
    The NONMEM RATE is amount / duration when a duration is given.

    Args:
        amount_mg: dose (mg), > 0; or `amount_mg_per_m2` (mg/m²) instead.
        cmt: NONMEM compartment number (≥ 1) or a compartment name.
        duration: infusion length (day), > 0.
        rate: infusion rate (mg/day), > 0.
        time: infusion start relative to the regimen start (day), ≥ 0.
        duration_h: convenience, infusion length in hours (stored as `duration` in days).
    """

    amount_mg: float | None = None
    cmt: int | str | None = None
    duration: float | None = None
    rate: float | None = None
    time: float = 0.0
    _: KW_ONLY
    amount_mg_per_m2: float | None = None
    duration_h: InitVar[float | None] = None

    def __post_init__(self, duration_h):
        owner = "Infusion"
        _check_amount(self, owner)
        _check_cmt_and_time(self, owner)
        if duration_h is not None:
            if self.duration is not None:
                raise RegimenError(
                    f"{owner}: give the duration once, as duration (day) or duration_h (h); "
                    f"got duration={self.duration!r} and duration_h={duration_h!r}."
                )
            hours = check_number(duration_h, "duration_h", owner, unit="h", strict=True)
            object.__setattr__(self, "duration", hours / _HOURS_PER_DAY)
        if self.duration is None and self.rate is None:
            raise RegimenError(
                f"{owner}: give exactly one of duration (day, or duration_h in h) / rate "
                f"(mg/day); got neither. Add one, e.g. Infusion(100, cmt, duration_h=4)."
            )
        which = check_one_of(owner, duration=self.duration, rate=self.rate)
        unit = "day" if which == "duration" else "mg/day"
        value = check_number(getattr(self, which), which, owner, unit=unit, strict=True)
        object.__setattr__(self, which, value)

    def describe(self) -> str:
        """One line for error messages."""
        how = (f"over {self.duration:g} day" if self.duration is not None
               else f"at {self.rate:g} mg/day")
        return (f"Infusion of {_amount_text(self)} into {_cmt_text(self.cmt)} "
                f"at day {self.time:g} {how}")


Dose = Union[Bolus, Infusion, Oral]
DOSE_TYPES = (Bolus, Infusion, Oral)


@dataclass(frozen=True)
class Repeat:
    """`count` copies of `dose`, the first at `dose.time`, then every `every` days.

    Args:
        dose: a Bolus, Infusion or Oral dose.
        every: dosing interval (day), > 0 (may be left out when count == 1).
        count: number of doses, ≥ 1.
        every_h: convenience, the interval in hours (stored as `every` in days).
    """

    dose: Dose
    every: float | None = None
    count: int | None = None
    _: KW_ONLY
    every_h: InitVar[float | None] = None

    def __post_init__(self, every_h):
        owner = "Repeat"
        if not isinstance(self.dose, DOSE_TYPES):
            hint = (" Nested repeats are not supported: write one Repeat with the combined "
                    "count, or list several Repeats in the Regimen."
                    if isinstance(self.dose, Repeat) else "")
            raise RegimenError(
                f"{owner}: dose must be a Bolus, Infusion or Oral; got "
                f"{type(self.dose).__name__}.{hint}"
            )
        if self.count is None:
            raise RegimenError(
                f"{owner}: count is missing (got None). Give the number of doses, e.g. "
                f"Repeat(dose, every=7, count=6)."
            )
        count = check_count(self.count, owner)
        object.__setattr__(self, "count", count)
        if every_h is not None:
            if self.every is not None:
                raise RegimenError(
                    f"{owner}: give the interval once, as every (day) or every_h (h); "
                    f"got every={self.every!r} and every_h={every_h!r}."
                )
            hours = check_number(every_h, "every_h", owner, unit="h", strict=count > 1)
            object.__setattr__(self, "every", hours / _HOURS_PER_DAY)
        if self.every is None:
            if count > 1:
                raise RegimenError(
                    f"{owner}: every is missing (got None) for {count} doses. Give the interval in "
                    f"days (every=7) or hours (every_h=12)."
                )
            object.__setattr__(self, "every", 0.0)
        every = check_number(self.every, "every", owner, unit="day", strict=count > 1)
        object.__setattr__(self, "every", every)

    @property
    def times(self) -> tuple[float, ...]:
        """Dose times relative to the regimen start (day): time + i·every, i = 0…count−1."""
        return tuple(self.dose.time + i * self.every for i in range(self.count))

    def describe(self) -> str:
        """One line for error messages."""
        return f"{self.count} × ({self.dose.describe()}) every {self.every:g} day"


Item = Union[Bolus, Infusion, Oral, Repeat]
_ITEM_TYPES = (*DOSE_TYPES, Repeat)


def _as_tuple(value, allowed, owner: str, field: str, expected: str) -> tuple:
    if isinstance(value, allowed):
        value = (value,)
    if not isinstance(value, (tuple, list)):
        raise RegimenError(
            f"{owner}: {field} must be a tuple of {expected}; got {type(value).__name__}."
        )
    for i, item in enumerate(value):
        if not isinstance(item, allowed):
            raise RegimenError(
                f"{owner}: {field}[{i}] must be one of {expected}; got "
                f"{type(item).__name__} ({item!r})."
            )
    return tuple(value)


def _check_name(name, owner: str) -> None:
    if not isinstance(name, str) or not name.strip():
        raise RegimenError(f"{owner}: name must be a non-empty string; got {name!r}.")


@dataclass(frozen=True)
class Regimen:
    """One drug's schedule: a tuple of doses and repeats, times relative to the start (day).

    Args:
        name: the drug or schedule name, e.g. "rituximab".
        items: Bolus, Infusion, Oral or Repeat objects (a list, or one item, is accepted).
        description: free text, e.g. the protocol wording.
    """

    name: str
    items: tuple[Item, ...]
    description: str = ""

    def __post_init__(self):
        _check_name(self.name, "Regimen")
        owner = f"Regimen {self.name!r}"
        items = _as_tuple(self.items, _ITEM_TYPES, owner, "items", "Bolus, Infusion, Oral, Repeat")
        if not items:
            raise RegimenError(
                f"{owner}: items is empty (got {self.items!r}). A regimen needs at least one dose; "
                f"for an untreated "
                f"arm leave the regimen out (Arm(name, regimens=()))."
            )
        object.__setattr__(self, "items", items)
        if not isinstance(self.description, str):
            raise RegimenError(
                f"{owner}: description must be a string; got {type(self.description).__name__}."
            )


@dataclass(frozen=True)
class Arm:
    """What one trial arm receives: several regimens given together (e.g. rituximab + iguratimod).

    Args:
        name: the arm name, e.g. "RTX+IGU".
        regimens: Regimen objects with distinct names; may be empty (an untreated arm).
    """

    name: str
    regimens: tuple[Regimen, ...] = ()

    def __post_init__(self):
        _check_name(self.name, "Arm")
        owner = f"Arm {self.name!r}"
        regimens = _as_tuple(self.regimens, Regimen, owner, "regimens", "Regimen")
        names = [r.name for r in regimens]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise RegimenError(
                f"{owner}: regimen names must be distinct; got {names}, where {duplicated} "
                f"appear more than once. "
                f"Merge their items into one Regimen or rename them."
            )
        object.__setattr__(self, "regimens", regimens)
