"""Collect every problem in a spec, so that one SpecError can list all of them."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import SpecError


@dataclass(frozen=True)
class SpecProblem:
    """One violation: where it is, what was found, what was expected, how to fix it.

    Attributes:
        file: the spec file (or ``"<spec>"`` for objects built in Python).
        field: dotted path of the offending field, e.g. ``parameters.CL.prior.median``.
        found: what the file holds there (``"nothing"`` when the field is missing).
        expected: what would be valid.
        fix: what to change.
    """

    file: str
    field: str
    found: str
    expected: str
    fix: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: found {self.found}; expected {self.expected}; fix: {self.fix}"


def show(value: object) -> str:
    """A value as it would read in the TOML file, for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return "a table {" + ", ".join(value) + "}" if value else "an empty table"
    if isinstance(value, list):
        if not value:
            return "an empty array"
        if len(value) <= 4 and not any(isinstance(v, (dict, list)) for v in value):
            return "[" + ", ".join(show(v) for v in value) + "]"
        return f"an array of {len(value)}"
    return repr(value)


def found(value: object) -> str:
    """A value read from the file, with its TOML type where a wrong type is the likely slip."""
    if isinstance(value, str):
        return f"{show(value)} (text)"
    if isinstance(value, bool):
        return f"{show(value)} (a boolean)"
    return show(value)


def key_path(parent: str, name: str) -> str:
    """``parent.name``, quoting a name that TOML would need quoted (as the user must write it)."""
    return f"{parent}.{name}" if name.replace("-", "_").isidentifier() else f'{parent}."{name}"'


def suggestion(word: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest choice, or ``""`` when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if not close:
        # Case slips ("Median", "CL" for "cl") are the commonest typo and score low on ratio.
        close = [c for c in choices if c.lower() == word.lower()][:1]
    return f" (did you mean '{close[0]}'?)" if close else ""


class Problems:
    """Violations in the order they were found, for one file."""

    def __init__(self, file: str):
        self.file = file
        self.items: list[SpecProblem] = []

    def add(self, field: str, found: str, expected: str, fix: str) -> None:
        self.items.append(SpecProblem(self.file, field, found, expected, fix))

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self) -> None:
        if self.items:
            raise spec_error(self.items, self.file)


def spec_error(problems: Iterable[SpecProblem], file: str) -> SpecError:
    """One SpecError listing every problem; ``.problems`` keeps them as objects."""
    problems = tuple(problems)
    count = len(problems)
    header = f"{count} problem{'s' if count != 1 else ''} found in {file}:"
    error = SpecError("\n".join([header, *(f"  - {p}" for p in problems)]))
    error.problems = problems
    error.source = file
    return error
