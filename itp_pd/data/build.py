"""Turn a checked table into a Dataset's parts: defaults filled, covariates carried, units converted."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from itp_pd.data.columns import ALWAYS_PRESENT, DV_UNIT_COLUMNS, NEUTRAL_DEFAULTS, STANDARD_COLUMNS
from itp_pd.data.declared_units import ResolvedUnits
from itp_pd.data.problems import ProblemLog
from itp_pd.data.records import Records
from itp_pd.data.validate import collect_problems, covariate_names
from itp_pd.errors import DatasetError


@dataclasses.dataclass(frozen=True)
class Prepared:
    """The fields of a Dataset (see ``itp_pd.data.dataset.Dataset``)."""

    table: pd.DataFrame
    units: dict[str, object]
    covariates: tuple[str, ...]
    source_rows: tuple[int, ...]


def _column(records: Records, name: str) -> np.ndarray:
    if name == "EVID":
        return records.evid.copy()
    if name == "MDV":
        return records.mdv.copy()
    values = records.raw(name).copy()
    if name in NEUTRAL_DEFAULTS:
        values[np.isnan(values)] = NEUTRAL_DEFAULTS[name]
    return values


def assemble(records: Records, resolved: ResolvedUnits) -> Prepared:
    """Build the canonical table from records that passed every check."""
    covariates = covariate_names(records)
    names = [name for name in STANDARD_COLUMNS if name in ALWAYS_PRESENT or records.has(name)]
    data = {name: _column(records, name) for name in names}
    for name in covariates:
        # NONMEM-style: a missing covariate takes the patient's previous value.
        data[name] = pd.Series(records.raw(name)).groupby(records.blocks).ffill().to_numpy(np.float64)

    for name, unit in resolved.columns.items():
        if name in data:
            data[name] = unit.convert(data[name])
    dvid = data["DVID"]
    for number, unit in resolved.dv.items():
        rows = dvid == number
        for name in DV_UNIT_COLUMNS:
            if name in data:
                data[name][rows] = unit.convert(data[name][rows])

    table = pd.DataFrame({name: np.asarray(data[name], dtype=np.float64) for name in (*names, *covariates)})
    return Prepared(
        table=table,
        units=resolved.stored(table.columns),
        covariates=covariates,
        source_rows=tuple(int(row) for row in records.source_rows),
    )


def prepare_table(
    table: pd.DataFrame,
    *,
    units: Mapping[str, object] | None = None,
    compartments: Collection[int] | None = None,
    dvids: Collection[int] | None = None,
    drop: Iterable[str] = (),
    source_rows: Sequence[int] | None = None,
    source: str | None = None,
    problems: Iterable[str] = (),
) -> Prepared:
    """Check ``table`` and build a Dataset's parts; raise one DatasetError listing every violation.

    ``problems`` are violations found before (e.g. while reading the file), reported first.
    """
    log = ProblemLog()
    for problem in problems:
        log.add(problem)
    records, resolved = collect_problems(
        table, log, units=units, compartments=compartments, dvids=dvids, drop=drop, source_rows=source_rows
    )
    if log:
        raise DatasetError(log.messages(), source=source)
    return assemble(records, resolved)
