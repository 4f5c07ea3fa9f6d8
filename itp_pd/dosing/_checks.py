"""Input checks shared by the dosing modules; each raises `RegimenError` naming the field."""

from __future__ import annotations

import math
import numbers

from itp_pd.errors import RegimenError


def check_number(value, field: str, owner: str, *, unit: str, minimum: float = 0.0,
                 strict: bool = False) -> float:
    """Return `value` as a float, or raise if it is not a finite number above `minimum`.

    `strict=True` requires value > minimum, otherwise value >= minimum.
    """
    bound = f"{'>' if strict else '≥'} {minimum:g}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise RegimenError(
            f"{owner}: {field} must be a number {bound} ({unit}); got {value!r} "
            f"of type {type(value).__name__}. Pass a plain int or float."
        )
    number = float(value)
    if not math.isfinite(number):
        raise RegimenError(
            f"{owner}: {field} must be a finite number {bound} ({unit}); got {value!r}."
        )
    if number < minimum or (strict and number == minimum):
        raise RegimenError(
            f"{owner}: {field} must be {bound} ({unit}); got {value!r}. "
            f"Give a {'positive' if strict and minimum == 0 else 'larger'} value."
        )
    return number


def check_one_of(owner: str, **given) -> str:
    """Return the name of the only keyword that is not None; raise if none or several are."""
    present = [name for name, value in given.items() if value is not None]
    names = " / ".join(given)
    if not present:
        raise RegimenError(f"{owner}: give exactly one of {names}; got none of them. Add one.")
    if len(present) > 1:
        received = ", ".join(f"{n}={given[n]!r}" for n in present)
        raise RegimenError(
            f"{owner}: give exactly one of {names}; got {received}. Keep one of them."
        )
    return present[0]


def check_cmt(value, owner: str) -> int | str:
    """A NONMEM compartment number (int ≥ 1) or a non-empty compartment name."""
    if isinstance(value, str):
        if not value.strip():
            raise RegimenError(
                f"{owner}: cmt is an empty string. Give a compartment name such as "
                f"'rituximab_central' or a NONMEM CMT number ≥ 1."
            )
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        if int(value) < 1:
            raise RegimenError(
                f"{owner}: cmt must be a NONMEM compartment number ≥ 1; got {value!r}. "
                f"NONMEM numbers compartments from 1."
            )
        return int(value)
    raise RegimenError(
        f"{owner}: cmt must be an int ≥ 1 (NONMEM CMT) or a compartment name (str); "
        f"got {value!r} of type {type(value).__name__}."
    )


def check_count(value, owner: str) -> int:
    """A number of doses: an int ≥ 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and float(value).is_integer():
            value = int(value)
        else:
            raise RegimenError(
                f"{owner}: count must be a whole number of doses ≥ 1; got {value!r}."
            )
    if int(value) < 1:
        raise RegimenError(
            f"{owner}: count must be ≥ 1 dose; got {value!r}. "
            f"Leave the dose out of the regimen instead of repeating it 0 times."
        )
    return int(value)
