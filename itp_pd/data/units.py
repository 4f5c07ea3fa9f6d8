"""Units of dataset columns and their exact conversion to the package's internal units.

Internal units: time in day, amount in mg, rate in mg/day, concentration in mg/L,
platelets in 10^9/L. Covariates go to kg (body mass), m2 (area), cm (length),
years (age); dimensionless columns (``1``, ``%``) stay as given.

Factors are kept as exact fractions, so that hours -> days is ``x / 24`` (one
correctly rounded division) rather than ``x * 0.041666...`` (two roundings).
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from types import MappingProxyType

import numpy as np

INTERNAL_UNITS = MappingProxyType(
    {
        "time": "day",
        "amount": "mg",
        "rate": "mg/day",
        "concentration": "mg/L",
        "platelets": "10^9/L",
    }
)


@dataclasses.dataclass(frozen=True)
class Unit:
    """A unit a column may be declared in.

    Attributes:
        name: canonical spelling, e.g. ``"ng/mL"``.
        dimension: ``"time"``, ``"amount"``, ``"rate"``, ``"concentration"``, ...
        factor: value in this unit times ``factor`` = value in ``internal``.
        internal: the unit values are stored in after conversion.
    """

    name: str
    dimension: str
    factor: Fraction
    internal: str

    def convert(self, values: np.ndarray) -> np.ndarray:
        """Values (float64, this unit) -> values in ``self.internal``; NaN stays NaN."""
        if self.factor == 1:
            return np.array(values, dtype=np.float64)
        values = np.asarray(values, dtype=np.float64)
        num, den = self.factor.numerator, self.factor.denominator
        return values * num / den if num != 1 else values / den


# dimension -> (internal unit, {canonical name: factor to internal})
_DIMENSIONS: dict[str, tuple[str, dict[str, Fraction]]] = {
    "time": ("day", {"min": Fraction(1, 1440), "h": Fraction(1, 24), "day": Fraction(1), "week": Fraction(7)}),
    "amount": ("mg", {"ug": Fraction(1, 1000), "mg": Fraction(1), "g": Fraction(1000)}),
    "concentration": (
        "mg/L",
        {
            "ng/mL": Fraction(1, 1000),
            "ug/L": Fraction(1, 1000),
            "ug/mL": Fraction(1),
            "mg/L": Fraction(1),
            "mg/mL": Fraction(1000),
            "g/L": Fraction(1000),
        },
    ),
    "platelets": ("10^9/L", {"10^9/L": Fraction(1), "10^3/uL": Fraction(1), "G/L": Fraction(1)}),
    "body mass": ("kg", {"kg": Fraction(1), "lb": Fraction("0.45359237")}),
    "area": ("m2", {"m2": Fraction(1)}),
    "length": ("cm", {"cm": Fraction(1), "m": Fraction(100)}),
    "age": ("years", {"years": Fraction(1)}),
}
_DIMENSIONLESS = ("1", "%")

_ALIASES = {
    "minute": "min", "minutes": "min", "mins": "min",
    "hr": "h", "hrs": "h", "hour": "h", "hours": "h",
    "d": "day", "days": "day",
    "wk": "week", "wks": "week", "weeks": "week",
    "year": "years", "yr": "years", "yrs": "years", "y": "years",
    "m^2": "m2",
    "x10^9/L": "10^9/L", "x10^3/uL": "10^3/uL",
}  # fmt: skip


def _lookup_table() -> dict[str, Unit]:
    table: dict[str, Unit] = {}
    for dimension, (internal, units) in _DIMENSIONS.items():
        for name, factor in units.items():
            table[name] = Unit(name, dimension, factor, internal)
    for name in _DIMENSIONLESS:
        table[name] = Unit(name, "dimensionless", Fraction(1), name)
    for alias, name in _ALIASES.items():
        table[alias] = table[name]
    # "ml"/"l" are common spellings of "mL"/"L"; case matters otherwise (G/L is not g/L).
    for name in list(table):
        if "L" in name:
            table.setdefault(name.replace("L", "l"), table[name])
    return table


_UNITS = _lookup_table()

TIME_DIMENSIONS = ("time",)
AMOUNT_DIMENSIONS = ("amount",)
DV_DIMENSIONS = ("concentration", "platelets", "dimensionless")
COVARIATE_DIMENSIONS = (
    "body mass", "area", "length", "age", "time", "amount", "concentration", "platelets", "dimensionless",
)  # fmt: skip


def _normalise(text: str) -> str:
    text = "".join(str(text).split())
    text = text.replace("mcg", "ug").replace("\u00b5", "u").replace("\u03bc", "u")
    return text.replace("\u00b2", "2").replace("\u00d7", "x")


def accepted_units(dimensions: tuple[str, ...]) -> str:
    """Human-readable list of the canonical unit names of ``dimensions``."""
    names = [name for dim in dimensions if dim in _DIMENSIONS for name in _DIMENSIONS[dim][1]]
    if "dimensionless" in dimensions:
        names += list(_DIMENSIONLESS)
    return ", ".join(names)


def parse_unit(text: object, dimensions: tuple[str, ...]) -> Unit | None:
    """The unit spelled ``text`` if it belongs to one of ``dimensions``, else None."""
    if not isinstance(text, str):
        return None
    unit = _UNITS.get(_normalise(text))
    if unit is None or unit.dimension not in dimensions:
        return None
    return unit


def rate_unit(amount: Unit, time: Unit) -> Unit:
    """The rate unit ``amount/time``; internal mg/day."""
    return Unit(f"{amount.name}/{time.name}", "rate", amount.factor / time.factor, INTERNAL_UNITS["rate"])


def parse_rate_unit(text: object) -> Unit | None:
    """A rate unit spelled ``<amount unit>/<time unit>``, e.g. ``"mg/h"``, else None."""
    if not isinstance(text, str) or "/" not in text:
        return None
    amount_text, _, time_text = _normalise(text).partition("/")
    amount = parse_unit(amount_text, AMOUNT_DIMENSIONS)
    time = parse_unit(time_text, TIME_DIMENSIONS)
    if amount is None or time is None:
        return None
    return rate_unit(amount, time)


def internal_unit(dimension: str) -> Unit:
    """The internal unit of a dimension (factor 1)."""
    if dimension == "rate":
        return rate_unit(_UNITS["mg"], _UNITS["day"])
    return _UNITS[_DIMENSIONS[dimension][0]]
