"""Raw records: column names normalised, cells parsed to numbers, nothing filled in yet."""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import re
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from itp_pd.data.columns import KNOWN_EVIDS, STANDARD_COLUMNS
from itp_pd.data.problems import ProblemLog

# Plain decimal numbers only: float() alone would also take "nan", "inf" and "1_000".
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
MISSING_TEXTS = ("", ".")


def format_number(value: float) -> str:
    """Short display of a number in messages: 2 not 2.0, NaN as 'missing'."""
    value = math.nan if value is None else float(value)
    if math.isnan(value):
        return "missing"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


@dataclasses.dataclass
class Records:
    """Parsed records before defaults, derivations and unit conversion.

    Attributes:
        names: upper-case column names kept, in input order.
        values: column -> float64 array; NaN where the cell is missing or not a number.
        bad: column -> bool array, True where the cell is not a number (already reported).
        texts: column -> {row index: original text} of the cells that are not numbers.
        source_rows: 1-based row number of each record in the input (int array).
    """

    names: tuple[str, ...]
    values: dict[str, np.ndarray]
    bad: dict[str, np.ndarray]
    texts: dict[str, dict[int, str]]
    source_rows: np.ndarray

    @property
    def n(self) -> int:
        return len(self.source_rows)

    def has(self, column: str) -> bool:
        return column in self.values

    def raw(self, column: str) -> np.ndarray:
        """Values of ``column``; all NaN when the column is absent."""
        return self.values[column] if column in self.values else np.full(self.n, np.nan)

    def given(self, column: str) -> np.ndarray:
        """True where ``column`` holds a number."""
        return ~np.isnan(self.raw(column))

    def is_missing(self, column: str) -> np.ndarray:
        """True where the column is present but the cell is empty or '.'."""
        if column not in self.values:
            return np.zeros(self.n, dtype=bool)
        return np.isnan(self.values[column]) & ~self.bad[column]

    def is_bad(self, column: str) -> np.ndarray:
        return self.bad[column] if column in self.bad else np.zeros(self.n, dtype=bool)

    def cell(self, column: str, i: int) -> str:
        """Display of one cell: its number, its bad text quoted, or 'missing'."""
        if column in self.texts and i in self.texts[column]:
            return repr(self.texts[column][i])
        return format_number(self.raw(column)[i])

    def row_number(self, i: int) -> int:
        return int(self.source_rows[i])

    def where(self, i: int) -> str:
        """'row 3 (ID 2)': the row number in the input and the patient, for messages."""
        return f"row {self.row_number(i)} (ID {self.cell('ID', i)})"

    @functools.cached_property
    def evid(self) -> np.ndarray:
        """EVID per row; from AMT (AMT > 0 -> 1, else 0) where there is no EVID column.

        NaN where it cannot be known (bad or missing cell) or is not one of 0-4, so that
        checks keyed on EVID skip rows already reported.
        """
        if self.has("EVID"):
            evid = self.values["EVID"].copy()
            evid[~np.isin(evid, KNOWN_EVIDS)] = np.nan
            return evid
        amt = self.raw("AMT")
        evid = np.where(amt > 0, 1.0, 0.0)
        evid[self.is_bad("AMT")] = np.nan
        if not self.has("AMT"):
            evid[:] = np.nan
        return evid

    @functools.cached_property
    def mdv(self) -> np.ndarray:
        """MDV per row; 1 for EVID != 0 and 0 for EVID 0 where the cell or column is missing."""
        derived = np.where(np.isnan(self.evid), np.nan, (self.evid != 0).astype(float))
        if not self.has("MDV"):
            return derived
        mdv = self.values["MDV"].copy()
        missing = self.is_missing("MDV")
        mdv[missing] = derived[missing]
        mdv[~np.isin(mdv, (0.0, 1.0))] = np.nan
        return mdv

    @functools.cached_property
    def blocks(self) -> np.ndarray:
        """Index of the contiguous run of equal IDs each row belongs to (-1: no valid ID)."""
        ids = self.raw("ID")
        valid = ~np.isnan(ids)
        new = np.ones(self.n, dtype=bool)
        if self.n > 1:
            new[1:] = ~(valid[1:] & valid[:-1] & (ids[1:] == ids[:-1]))
        block = np.cumsum(new) - 1
        block[~valid] = -1
        return block


def _parse_cell(value: object) -> tuple[float, bool]:
    """(number, is_bad) of one cell; missing cells are (NaN, False)."""
    if isinstance(value, str):
        text = value.strip()
        if text in MISSING_TEXTS:
            return math.nan, False
        if _NUMBER.fullmatch(text):
            number = float(text)
            return (number, False) if math.isfinite(number) else (math.nan, True)
        return math.nan, True
    if value is None or value is pd.NA or value is pd.NaT:
        return math.nan, False
    if isinstance(value, numbers.Real):
        number = float(value)
        if math.isnan(number):
            return math.nan, False
        return (number, False) if math.isfinite(number) else (math.nan, True)
    return math.nan, True


def parse_column(series: pd.Series) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """Cells of one column -> (float64 values, bad mask, {row index: text of bad cell})."""
    if pd.api.types.is_bool_dtype(series.dtype) or (
        pd.api.types.is_numeric_dtype(series.dtype) and not isinstance(series.dtype, pd.CategoricalDtype)
    ):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.isinf(values)
        values = np.where(bad, np.nan, values)
        texts = {int(i): format_number(series.iloc[i]) for i in np.flatnonzero(bad)}
        return values, bad, texts
    cells = series.to_numpy(dtype=object)
    values = np.empty(len(cells))
    bad = np.zeros(len(cells), dtype=bool)
    texts: dict[int, str] = {}
    # Codes such as '.', '0' and '1' repeat in most rows: parse each distinct text once.
    cache: dict[str, tuple[float, bool]] = {}
    for i, cell in enumerate(cells):
        if type(cell) is str:
            parsed = cache.get(cell)
            if parsed is None:
                parsed = cache[cell] = _parse_cell(cell)
        else:
            parsed = _parse_cell(cell)
        values[i], bad[i] = parsed
        if parsed[1]:
            texts[i] = str(cell)
    return values, bad, texts


def normalise_names(names: Sequence[object], drop: Iterable[str], log: ProblemLog) -> list[tuple[int, str]]:
    """(position, upper-case name) of the columns to keep; reports empty and duplicate names."""
    drop_names = {str(name).strip().upper() for name in drop}
    upper = [str(name).strip().upper() for name in names]
    kept: list[tuple[int, str]] = []
    first: dict[str, int] = {}
    for position, (original, name) in enumerate(zip(names, upper)):
        if not name:
            log.add(
                f"column {position + 1} has no name in the header; name it, or delete the column "
                "if it is empty"
            )
            continue
        if name in first:
            if name in drop_names:
                continue  # drop= removes every column of that name
            log.add(
                f"column {name}: appears more than once when names are upper-cased "
                f"(columns {first[name] + 1} and {position + 1}, e.g. {str(original)!r}); column names "
                "are case-insensitive, so rename one of them (drop= would ignore both)"
            )
            continue
        first[name] = position
        if name not in drop_names:
            kept.append((position, name))
    for name in sorted(drop_names - set(upper)):
        log.add(
            f"drop= names column {name}, which is not in the data (columns: {', '.join(upper)}); "
            "check the spelling"
        )
    return kept


def read_records(
    raw: pd.DataFrame, *, drop: Iterable[str] = (), source_rows: Sequence[int] | None, log: ProblemLog
) -> Records:
    """Parse a table of text or numbers into Records, reporting names and cells that are wrong."""
    kept = normalise_names(list(raw.columns), drop, log)
    rows = np.arange(1, len(raw) + 1)
    if source_rows is not None:
        if len(source_rows) == len(raw):
            rows = np.asarray(source_rows, dtype=np.int64)
        else:
            log.add(
                f"source_rows: {len(source_rows)} row numbers for {len(raw)} records; give one per "
                "record (rows are numbered 1..n below)"
            )
    values, bad, texts = {}, {}, {}
    for position, name in kept:
        values[name], bad[name], texts[name] = parse_column(raw.iloc[:, position])
    records = Records(tuple(name for _, name in kept), values, bad, texts, rows)
    for name in records.names:
        if not records.bad[name].any():
            continue
        text_rows = np.flatnonzero(records.bad[name])
        if (name not in STANDARD_COLUMNS and len(text_rows) > TEXT_COLUMN_ROWS
                and not np.isfinite(records.values[name]).any()):
            # A column of text (SEX = M/F, comments): one message, not one per row.
            examples = list(dict.fromkeys(records.texts[name][int(i)] for i in text_rows))
            shown = ", ".join(repr(text) for text in examples[:3]) + (", ..." if len(examples) > 3 else "")
            log.add(
                f"column {name}: text, not numbers, in all {len(text_rows)} rows that have a value ({shown}; "
                f"rows {_span(records, text_rows)}); ignore it with {drop_hint(name)}, or recode it as numbers "
                "(e.g. 0/1) to use it as a covariate"
            )
            continue
        log.add_rows(
            f"non-numeric {name}",
            text_rows,
            lambda i, name=name: (
                f"{records.where(i)}, column {name}: found {records.cell(name, i)}, expected a "
                "finite number; write a plain number, or '.' or an empty cell for a missing value "
                f"(a free-text column can be ignored: {drop_hint(name)})"
            ),
            records.row_number,
        )
    return records


# A covariate column with text in more rows than this, and no number, is reported once as a text column.
TEXT_COLUMN_ROWS = 10


def drop_hint(name: str) -> str:
    """How to ignore column ``name``, in each place a dataset is read from."""
    return (f"--drop {name} (itp-pd check-data, fit), drop = [\"{name}\"] in a "
            f"recipe's [data], or read_nonmem(..., drop=[\"{name}\"])")


def _span(records: Records, rows: np.ndarray) -> str:
    numbers = records.source_rows[rows]
    return f"{int(numbers.min())}-{int(numbers.max())}"
