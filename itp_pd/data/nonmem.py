"""Read and write NONMEM-format datasets (CSV or whitespace-separated .dta, with their units sidecar)."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

import pandas as pd

from itp_pd.data.build import prepare_table
from itp_pd.data.dataset import Dataset
from itp_pd.data.delimited import DEFAULT_IGNORE, label, read_cells
from itp_pd.data.plausibility import time_scale_warnings, warn
from itp_pd.data.sidecar import format_sidecar, read_sidecar_file, sidecar_path, write_atomically
from itp_pd.data.units import TIME_DIMENSIONS, Unit, internal_unit, parse_unit
from itp_pd.errors import DatasetError


@dataclasses.dataclass(frozen=True)
class ReadReport:
    """A dataset read from a file, and how it was read (for the messages of the CLI).

    Attributes:
        dataset: the checked Dataset.
        path: the file.
        delimiter: ``"comma"``, ``"semicolon"``, ``"tab"`` or ``"whitespace"``.
        detected: whether the delimiter was found from the header line.
        ignore: the characters starting the comment lines skipped (NONMEM's IGNORE).
        skipped: file line numbers of the comment lines skipped.
        units_from: where the declared units came from (``"units file <path>"``, the caller's
            label, e.g. a recipe), or ``""`` when none were declared and internal units assumed.
        units: the declared units (None when assumed).
        warnings: implausible scales (``itp_pd.data.plausibility``), each naming the column.
    """

    dataset: Dataset
    path: Path
    delimiter: str
    detected: bool
    ignore: str
    skipped: tuple[int, ...]
    units_from: str
    units: Mapping[str, object] | None
    warnings: tuple[str, ...]

    def reading(self) -> str:
        """'whitespace-separated (detected), 3 comment lines skipped (IGNORE=#)'."""
        text = f"{label(self.delimiter)}{' (detected)' if self.detected and self.delimiter != 'comma' else ''}"
        if self.skipped:
            n = len(self.skipped)
            text += f", {n} comment line{'s' if n != 1 else ''} skipped (IGNORE={self.ignore})"
        return text

    def units_text(self) -> str:
        """The units the file was read in, e.g. 'TIME h, AMT mg, RATE mg/h, DV (DVID 1) ng/mL'."""
        if self.units is None:
            return ASSUMED_UNITS
        parts = []
        for name, unit in self.units.items():
            if isinstance(unit, Mapping):
                parts.extend(f"{str(name).upper()} (DVID {dvid}) {value}" for dvid, value in unit.items())
            else:
                parts.append(f"{str(name).upper()} {unit}")
        return ", ".join(parts) or "internal units (declared empty)"

    def notes(self) -> list[str]:
        """What a user must be told on every run: units assumed (and how to declare them)."""
        if self.units is not None:
            return []
        sidecar = sidecar_path(self.path)
        why = f"none in its units file {sidecar.name}" if sidecar.is_file() else f"no units file {sidecar.name}"
        return [
            f"{self.path}: no units declared ({why}): assuming {ASSUMED_UNITS}; "
            f"if they differ, declare them in {sidecar_path(self.path)} (e.g. TIME = \"h\", AMT = \"mg\", and "
            "[DV] 1 = \"ng/mL\") or in a recipe's [data] units"
        ]


ASSUMED_UNITS = ("time in days (TIME, II, DUR), dose in mg (AMT), RATE in mg/day, DV and covariates as given "
                 "(compared with the model in its own units, e.g. mg/L, 10^9/L)")


def _declared_time_unit(units: Mapping[str, object] | None) -> Unit:
    for key, value in (units or {}).items():
        if str(key).strip().upper() == "TIME":
            return parse_unit(value, TIME_DIMENSIONS) or internal_unit("time")
    return internal_unit("time")


def read_nonmem_report(
    path: str | os.PathLike,
    *,
    units: Mapping[str, object] | None = None,
    compartments: Collection[int] | None = None,
    dvids: Collection[int] | None = None,
    drop: Iterable[str] = (),
    keep: Iterable[str] | None = None,
    sep: str | None = None,
    ignore: str | None = None,
    units_from: str = "the units argument",
) -> ReadReport:
    """``read_nonmem``, also saying how the file was read (delimiter, comment lines, units)
    and what looks implausible; see ``read_nonmem`` for the arguments.

    Args:
        units_from: how to name the origin of ``units`` in messages (e.g. a recipe's path).
    """
    path = Path(path)
    source = f"{path} (row n = n-th line below the header)"
    try:
        sidecar_units, options, problems = read_sidecar_file(path)
        if problems:
            raise DatasetError(problems, source=str(path))
        sep = options.get("sep") if sep is None else sep
        ignore = options.get("ignore", DEFAULT_IGNORE) if ignore is None else ignore
        cells = read_cells(path, sep=sep, ignore=ignore)
    except ValueError as error:  # a bad sep or ignore argument
        if isinstance(error, DatasetError):
            raise
        raise DatasetError([str(error)], source=str(path)) from None
    if cells.table is None:
        raise DatasetError(cells.problems, source=source if cells.header_line else str(path))
    problems = list(cells.problems)
    drop = [*drop, *options.get("drop", ())]
    if keep is not None:
        keep = [str(name).strip().upper() for name in keep]
        names = [str(name).strip().upper() for name in cells.table.columns]
        problems += [
            f"keep= names column {name}, which is not in the data (columns: {', '.join(names)}); check the spelling"
            for name in keep if name not in names
        ]
        drop += [name for name in names if name and name not in keep and name not in drop]
    if units is None:
        units, origin = sidecar_units, f"units file {sidecar_path(path)}" if sidecar_units is not None else ""
    else:
        origin = units_from
    prepared = prepare_table(
        cells.table,
        units=units,
        compartments=compartments,
        dvids=dvids,
        drop=list(dict.fromkeys(drop)),
        source_rows=cells.rows,
        source=source,
        problems=problems,
    )
    dataset = Dataset(prepared.table, prepared.units, prepared.covariates, prepared.source_rows)
    where = f"{sidecar_path(path)} or a recipe's [data] units" if units is None else origin
    found = time_scale_warnings(dataset.table, _declared_time_unit(units), declared=units is not None,
                                source=str(path), how_to_declare=where)
    return ReadReport(dataset, path, cells.delimiter, cells.detected, cells.ignore, tuple(cells.skipped),
                      origin, None if units is None else dict(units), tuple(found))


def read_nonmem(
    path: str | os.PathLike,
    *,
    units: Mapping[str, object] | None = None,
    compartments: Collection[int] | None = None,
    dvids: Collection[int] | None = None,
    drop: Iterable[str] = (),
    keep: Iterable[str] | None = None,
    sep: str | None = None,
    ignore: str | None = None,
) -> Dataset:
    """Read, check and convert a NONMEM-format dataset (CSV, or a NONMEM ``.dta`` file).

    Column names are case-insensitive; ``.`` and empty cells are missing. Required: ID,
    TIME, and EVID or AMT. Without EVID, rows with AMT > 0 are doses (EVID 1) and the others
    observations (EVID 0); without MDV (or where MDV is missing), MDV is 1 for EVID != 0 and 0
    for EVID 0. Missing cells and absent columns take neutral defaults: AMT 0, CMT 1, RATE 0,
    DUR 0, II 0, ADDL 0, SS 0, DVID 1, CENS/BLQ 0; DV, LIMIT and LLOQ stay missing. Any other
    column is a covariate: a missing covariate value is carried forward from the patient's
    previous record (NONMEM-style); it must be given on the patient's first record. DUR is
    kept as an infusion duration, not turned into RATE. Values beyond 1e15 in magnitude are
    refused (the model's float64 arithmetic does not survive them).

    The file: fields separated by commas, semicolons, tabs or whitespace (runs of spaces, as
    in NONMEM ``.dta`` files), found from the header line unless ``sep`` says; a line whose
    first non-blank character is in ``ignore`` is a comment and skipped (NONMEM's IGNORE;
    ``"@"`` skips lines starting with a letter or @). A commented-out header (``#ID,TIME,...``)
    is the header. The sidecar's ``[read]`` table may give ``sep``, ``ignore`` and ``drop``.

    Units: ``units`` maps columns to the units they are given in, e.g.
    ``{"TIME": "h", "AMT": "ug", "DV": {1: "ng/mL", 2: "10^9/L"}, "WT": "lb"}``. If ``units``
    is None, the sidecar ``<csv stem>.units.toml`` next to the file is read when present;
    otherwise TIME/II/DUR are taken to be in day, AMT in mg, RATE in mg/day, and DV and
    covariates are kept as given. RATE defaults to AMT-unit per TIME-unit, II and DUR to the
    TIME unit, LIMIT and LLOQ follow the DV unit of their row's DVID. Values are converted to
    day, mg, mg/day, mg/L, 10^9/L, kg, m2, cm, years (``1`` and ``%`` stay as given). Dose
    intervals that look like another time unit (II 12 or 24 read as days) give a
    ``DataWarning`` naming the column.

    Args:
        path: the data file.
        units: declared units, or None for the sidecar / internal units.
        compartments: allowed CMT numbers; None accepts any positive integer.
        dvids: allowed DVIDs of EVID 0 records; None accepts any positive integer.
        drop: columns to ignore, like NONMEM's DROP (e.g. free-text comments, SEX as M/F).
        keep: if given, the only columns read (all others are dropped).
        sep: ``"comma"``, ``"semicolon"``, ``"tab"``, ``"whitespace"`` (or ``","``, ``";"``,
            ``"\\t"``, ``" "``); None: the sidecar's, else detected from the header line.
        ignore: characters starting comment lines; None: the sidecar's, else ``"#"``
            (NONMEM's default); ``""`` skips none.

    Raises:
        DatasetError: listing every violation, each with its row (n = n-th line below the
            header), patient ID, column and a fix; a file split the wrong way (delimiter) is
            reported alone, by its cause.
    """
    report = read_nonmem_report(path, units=units, compartments=compartments, dvids=dvids, drop=drop,
                                keep=keep, sep=sep, ignore=ignore)
    warn(report.warnings)
    return report.dataset


def format_value(value: float) -> str:
    """One cell: '.' for missing, integers without '.0', other floats as the shortest exact repr."""
    if math.isnan(value):
        return "."
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def format_csv(table: pd.DataFrame) -> str:
    """CSV text of a Dataset table; every value reads back to the same float64."""
    columns = [[format_value(value) for value in table[name].tolist()] for name in table.columns]
    lines = [",".join(table.columns)]
    lines.extend(",".join(cells) for cells in zip(*columns))
    return "\n".join(lines) + "\n"


def write_nonmem(dataset: Dataset, path: str | os.PathLike) -> Path:
    """Write ``dataset`` as CSV plus its units sidecar ``<stem>.units.toml``; return the CSV path.

    Values are written in the stored (internal) units with full precision, so that
    ``read_nonmem(write_nonmem(dataset, path)) == dataset``. Each file is written atomically.
    """
    path = Path(path)
    write_atomically(path, format_csv(dataset.table))
    write_atomically(sidecar_path(path), format_sidecar(dataset.units, path.name))
    return path
