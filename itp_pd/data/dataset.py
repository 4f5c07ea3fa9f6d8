"""The validated dataset: a canonical NONMEM-format table in internal units."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from types import MappingProxyType

import numpy as np
import pandas as pd

from itp_pd.data.build import prepare_table
from itp_pd.data.columns import ALWAYS_PRESENT, DOSE_EVIDS
from itp_pd.errors import DatasetError


def _freeze_units(units: Mapping[str, object]) -> Mapping[str, object]:
    frozen = {}
    for name, unit in units.items():
        frozen[name] = MappingProxyType(dict(unit)) if isinstance(unit, Mapping) else unit
    return MappingProxyType(frozen)


def _plain_units(units: Mapping[str, object]) -> dict[str, object]:
    return {name: dict(unit) if isinstance(unit, Mapping) else unit for name, unit in units.items()}


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A checked NONMEM-format dataset in internal units (day, mg, mg/day, mg/L, 10^9/L).

    Build one with ``read_nonmem`` or ``Dataset.from_table``; both check every record first.
    Treat the table as read-only.

    Attributes:
        table: one row per record in input order, index 0..n-1, upper-case column names,
            float64 columns. Always has ID, TIME, EVID, AMT, CMT, RATE, II, ADDL, SS, MDV,
            DV, DVID; DUR, CENS, LIMIT, BLQ, LLOQ when the input had them; then the covariates.
        units: unit of each column as stored: TIME/II/DUR ``"day"``, AMT ``"mg"``, RATE
            ``"mg/day"``, ``"DV"`` -> {DVID: unit} (LIMIT and LLOQ share it), and each
            covariate with a declared unit. Columns kept as given have no entry.
        covariates: covariate column names, in input order.
        source_rows: 1-based row number in the input of each record (data rows, counted
            from the first line below the header), for error messages.
    """

    table: pd.DataFrame
    units: Mapping[str, object]
    covariates: tuple[str, ...]
    source_rows: tuple[int, ...]

    def __post_init__(self):
        table = self.table
        problems = []
        if not isinstance(table, pd.DataFrame):
            raise DatasetError([f"Dataset.table: found {type(table).__name__}, expected a pandas DataFrame"])
        if len(self.source_rows) != len(table):
            problems.append(
                f"Dataset.source_rows: {len(self.source_rows)} row numbers for {len(table)} records; "
                "give one per record"
            )
        if not table.index.equals(pd.RangeIndex(len(table))):
            problems.append("Dataset.table: index is not 0..n-1; use table.reset_index(drop=True)")
        for name in table.columns:
            if not isinstance(name, str) or name != name.upper():
                problems.append(f"Dataset.table: column {name!r} is not an upper-case name")
            elif table[name].dtype != np.float64:
                problems.append(f"Dataset.table: column {name} is {table[name].dtype}, expected float64")
        missing = [name for name in self.covariates if name not in table.columns]
        if missing:
            problems.append(f"Dataset.covariates: {', '.join(missing)} not in the table")
        absent = [name for name in ALWAYS_PRESENT if name not in table.columns]
        if absent:
            problems.append(
                f"Dataset.table: missing column(s) {', '.join(absent)}; build datasets with "
                "Dataset.from_table or read_nonmem, which fill in the defaults"
            )
        if problems:
            raise DatasetError(problems)
        object.__setattr__(self, "units", _freeze_units(self.units))
        object.__setattr__(self, "covariates", tuple(self.covariates))
        object.__setattr__(self, "source_rows", tuple(int(row) for row in self.source_rows))

    @classmethod
    def from_table(
        cls,
        table: pd.DataFrame,
        *,
        units: Mapping[str, object] | None = None,
        compartments: Collection[int] | None = None,
        dvids: Collection[int] | None = None,
        drop: Collection[str] = (),
        source_rows: Sequence[int] | None = None,
    ) -> Dataset:
        """Check records built in memory and convert them like ``read_nonmem`` does.

        Args:
            table: records as numbers (or text), column names in any case.
            units: declared units, as for ``read_nonmem``; None means internal units.
            compartments: allowed CMT numbers; None accepts any positive integer.
            dvids: allowed DVIDs of EVID 0 records; None accepts any positive integer.
            drop: columns to ignore.
            source_rows: row numbers quoted in errors; default 1..n.

        Raises:
            DatasetError: listing every violation.
        """
        prepared = prepare_table(
            table, units=units, compartments=compartments, dvids=dvids, drop=drop, source_rows=source_rows
        )
        return cls(prepared.table, prepared.units, prepared.covariates, prepared.source_rows)

    def __eq__(self, other: object) -> bool:
        """Same table (values, NaNs, column order), units and covariates; ``source_rows`` is provenance and not compared."""
        if not isinstance(other, Dataset):
            return NotImplemented
        return (
            list(self.table.columns) == list(other.table.columns)
            and self.table.equals(other.table)
            and _plain_units(self.units) == _plain_units(other.units)
            and self.covariates == other.covariates
        )

    __hash__ = None  # a DataFrame is mutable

    def __len__(self) -> int:
        return len(self.table)

    def patients(self) -> np.ndarray:
        """Patient IDs in order of first appearance, shape (n_patients,)."""
        return pd.unique(self.table["ID"].to_numpy())

    def observations(self) -> pd.DataFrame:
        """Observation records (EVID 0 and MDV 0); the index points into ``table``."""
        table = self.table
        return table[(table["EVID"] == 0) & (table["MDV"] == 0)]

    def doses(self) -> pd.DataFrame:
        """Dose records (EVID 1 or 4); the index points into ``table``."""
        return self.table[self.table["EVID"].isin(DOSE_EVIDS)]

    def patient_covariates(self) -> pd.DataFrame:
        """One row per patient (file order): ID and the covariates constant within every patient."""
        grouped = self.table.groupby("ID", sort=False)
        constant = [name for name in self.covariates if (grouped[name].nunique(dropna=False) <= 1).all()]
        return grouped[constant].first().reset_index()

    def is_blq(self) -> np.ndarray:
        """True for records below the limit of quantification (CENS 1 or BLQ 1), shape (n_records,)."""
        blq = np.zeros(len(self.table), dtype=bool)
        for name in ("CENS", "BLQ"):
            if name in self.table:
                blq |= self.table[name].to_numpy() == 1
        return blq

    def lloq(self) -> np.ndarray:
        """Lower limit of quantification per record in DV units, NaN where unknown.

        From the LLOQ column where there is one (every row it is given on); with Monolix-style
        CENS, DV of the CENS 1 records (Monolix puts the limit in DV; LIMIT is the other bound
        of the censoring interval).
        """
        limit = np.full(len(self.table), np.nan)
        if "LLOQ" in self.table:
            limit = self.table["LLOQ"].to_numpy(dtype=np.float64, copy=True)
        if "CENS" in self.table:
            censored = self.table["CENS"].to_numpy() == 1
            limit[censored] = self.table["DV"].to_numpy()[censored]
        return limit
