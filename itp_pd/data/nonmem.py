"""Read and write NONMEM-format CSV datasets (with their units sidecar)."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

import pandas as pd

from itp_pd.data.build import prepare_table
from itp_pd.data.dataset import Dataset
from itp_pd.data.sidecar import format_sidecar, read_sidecar, sidecar_path, write_atomically
from itp_pd.errors import DatasetError


def _read_cells(path: Path) -> tuple[pd.DataFrame | None, list[int], list[str]]:
    """(cells as text with the header as column names, row numbers, problems) of a CSV file.

    Blank lines are skipped but counted, so that row n is always the n-th line below the header.
    """
    problems: list[str] = []
    header: list[str] | None = None
    header_line = 0
    rows: list[list[str]] = []
    numbers: list[int] = []
    try:
        # utf-8-sig: spreadsheet programs often start a CSV with a byte-order mark.
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            for fields in reader:
                if not any(field.strip() for field in fields):
                    continue
                if header is None:
                    header, header_line = fields, reader.line_num
                    continue
                number = reader.line_num - header_line
                if len(fields) != len(header):
                    problems.append(
                        f"row {number}: {len(fields)} fields, but the header names {len(header)} columns; "
                        "check for a missing or extra comma (quote text values that contain commas)"
                    )
                    fields = (fields + [""] * len(header))[: len(header)]
                rows.append(fields)
                numbers.append(number)
    except UnicodeDecodeError as error:
        return None, [], [f"the file is not UTF-8 text ({error}); save it as UTF-8 CSV"]
    except csv.Error as error:
        return None, [], [f"the file is not readable as CSV ({error}); save it as plain comma-separated text"]
    if header is None:
        return None, [], [
            "the file is empty; expected a header line naming the columns (e.g. ID,TIME,EVID,AMT,DV) "
            "and one line per record"
        ]
    cells = pd.DataFrame(rows, columns=range(len(header)), dtype=object)
    cells.columns = header  # may hold duplicates; they are reported when names are normalised
    return cells, numbers, problems


def read_nonmem(
    path: str | os.PathLike,
    *,
    units: Mapping[str, object] | None = None,
    compartments: Collection[int] | None = None,
    dvids: Collection[int] | None = None,
    drop: Iterable[str] = (),
) -> Dataset:
    """Read, check and convert a NONMEM-format CSV dataset.

    Column names are case-insensitive; ``.`` and empty cells are missing. Required: ID,
    TIME, and EVID or AMT. Without EVID, rows with AMT > 0 are doses (EVID 1) and the others
    observations (EVID 0); without MDV (or where MDV is missing), MDV is 1 for EVID != 0 and 0
    for EVID 0. Missing cells and absent columns take neutral defaults: AMT 0, CMT 1, RATE 0,
    DUR 0, II 0, ADDL 0, SS 0, DVID 1, CENS/BLQ 0; DV, LIMIT and LLOQ stay missing. Any other
    column is a covariate: a missing covariate value is carried forward from the patient's
    previous record (NONMEM-style); it must be given on the patient's first record. DUR is
    kept as an infusion duration, not turned into RATE.

    Units: ``units`` maps columns to the units they are given in, e.g.
    ``{"TIME": "h", "AMT": "ug", "DV": {1: "ng/mL", 2: "10^9/L"}, "WT": "lb"}``. If ``units``
    is None, the sidecar ``<csv stem>.units.toml`` next to the file is read when present;
    otherwise TIME/II/DUR are taken to be in day, AMT in mg, RATE in mg/day, and DV and
    covariates are kept as given. RATE defaults to AMT-unit per TIME-unit, II and DUR to the
    TIME unit, LIMIT and LLOQ follow the DV unit of their row's DVID. Values are converted to
    day, mg, mg/day, mg/L, 10^9/L, kg, m2, cm, years (``1`` and ``%`` stay as given).

    Args:
        path: the CSV file.
        units: declared units, or None for the sidecar / internal units.
        compartments: allowed CMT numbers; None accepts any positive integer.
        dvids: allowed DVIDs of EVID 0 records; None accepts any positive integer.
        drop: columns to ignore, like NONMEM's DROP (e.g. free-text comments).

    Raises:
        DatasetError: listing every violation, each with its row (n = n-th line below the
            header), patient ID, column and a fix.
    """
    path = Path(path)
    cells, numbers, problems = _read_cells(path)
    source = f"{path} (row n = n-th line below the header)"
    if cells is None:
        raise DatasetError(problems, source=str(path))
    if units is None:
        units, sidecar_problems = read_sidecar(path)
        problems += sidecar_problems
    prepared = prepare_table(
        cells,
        units=units,
        compartments=compartments,
        dvids=dvids,
        drop=drop,
        source_rows=numbers,
        source=source,
        problems=problems,
    )
    return Dataset(prepared.table, prepared.units, prepared.covariates, prepared.source_rows)


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
