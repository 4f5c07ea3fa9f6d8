"""Resolve the units a user declares for the columns of a dataset.

Declared units are a mapping such as
``{"TIME": "h", "AMT": "ug", "DV": {1: "ng/mL", 2: "10^9/L"}, "WT": "kg"}``. Columns not
declared are taken to be in internal units: TIME/II/DUR in day, AMT in mg, RATE in
AMT-unit per TIME-unit. DV (and LIMIT/LLOQ, which follow DV) and covariates without a
declared unit are kept as given and get no entry in the stored units.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping

from itp_pd.data.columns import DV_UNIT_COLUMNS, STANDARD_COLUMNS, TIME_COLUMNS, UNITLESS_COLUMNS
from itp_pd.data.problems import ProblemLog
from itp_pd.data.units import (
    AMOUNT_DIMENSIONS,
    COVARIATE_DIMENSIONS,
    DV_DIMENSIONS,
    TIME_DIMENSIONS,
    Unit,
    accepted_units,
    internal_unit,
    parse_rate_unit,
    parse_unit,
    rate_unit,
)


@dataclasses.dataclass(frozen=True)
class ResolvedUnits:
    """The unit each column is given in.

    Attributes:
        columns: column -> declared unit, for TIME, AMT, RATE, II, DUR and declared covariates.
        dv: DVID -> unit of DV, LIMIT and LLOQ on rows of that DVID.
    """

    columns: Mapping[str, Unit]
    dv: Mapping[int, Unit]

    def stored(self, present: Collection[str]) -> dict[str, object]:
        """Units of the columns after conversion, for ``Dataset.units``."""
        out: dict[str, object] = {
            name: unit.internal for name, unit in self.columns.items() if name in present
        }
        out["DV"] = {dvid: unit.internal for dvid, unit in sorted(self.dv.items())}
        return out


def _dvid_key(key: object) -> int | None:
    if isinstance(key, bool):
        return None
    if isinstance(key, int):
        return key
    if isinstance(key, str) and key.strip().isdigit():
        return int(key.strip())
    if isinstance(key, float) and key.is_integer():
        return int(key)
    return None


def _unknown(column: str, text: object, dimensions: tuple[str, ...]) -> str:
    return (
        f"units of column {column}: unknown unit {text!r}; accepted: {accepted_units(dimensions)}. "
        "Declare one of these, or convert the column before reading"
    )


def _resolve_dv(declared: object, log: ProblemLog) -> tuple[dict[int | None, Unit], set[int | None]]:
    """(DVID -> unit, DVIDs declared even if wrongly); DVID None means every DVID."""
    if isinstance(declared, str):
        unit = parse_unit(declared, DV_DIMENSIONS)
        if unit is None:
            log.add(_unknown("DV", declared, DV_DIMENSIONS))
            return {}, {None}
        return {None: unit}, {None}
    if not isinstance(declared, Mapping):
        log.add(
            f"units of column DV: found {declared!r}; expected a unit string, or a mapping "
            'DVID -> unit such as {1: "ng/mL", 2: "10^9/L"}'
        )
        return {}, {None}
    out: dict[int | None, Unit] = {}
    named: set[int | None] = set()
    for key, text in declared.items():
        dvid = _dvid_key(key)
        named.add(dvid)
        if dvid is None or dvid < 1:
            log.add(
                f"units of column DV: key {key!r} is not a DVID; key the DV units by the positive "
                'integer DVID, e.g. {1: "ng/mL"}'
            )
            continue
        unit = parse_unit(text, DV_DIMENSIONS)
        if unit is None:
            log.add(_unknown(f"DV (DVID {dvid})", text, DV_DIMENSIONS))
            continue
        out[dvid] = unit
    return out, named


def resolve_units(
    declared: Mapping[str, object] | None,
    *,
    present: Collection[str],
    covariates: Collection[str],
    observed_dvids: Collection[int],
    log: ProblemLog,
) -> ResolvedUnits:
    """Check declared units against the columns and fill in the defaults.

    Args:
        declared: column -> unit; None means every column is in internal units.
        present: columns in the data.
        covariates: the covariate columns among them.
        observed_dvids: DVIDs of the EVID 0 rows; each needs a DV unit once any is declared.
        log: where violations go.
    """
    declared = dict(declared or {})
    by_name: dict[str, object] = {}
    for key, value in declared.items():
        name = str(key).strip().upper()
        if name in by_name:
            log.add(f"units name column {name} twice (names are case-insensitive); keep one")
            continue
        by_name[name] = value

    columns: dict[str, Unit] = {}
    dv: dict[int | None, Unit] = {}
    dv_named: set[int | None] = set()
    for name, text in by_name.items():
        if name in TIME_COLUMNS:
            unit = parse_unit(text, TIME_DIMENSIONS)
            if unit is None:
                log.add(_unknown(name, text, TIME_DIMENSIONS))
            else:
                columns[name] = unit
        elif name == "AMT":
            unit = parse_unit(text, AMOUNT_DIMENSIONS)
            if unit is None:
                log.add(_unknown(name, text, AMOUNT_DIMENSIONS))
            else:
                columns[name] = unit
        elif name == "RATE":
            unit = parse_rate_unit(text)
            if unit is None:
                log.add(
                    f"units of column RATE: unknown unit {text!r}; expected <amount unit>/<time unit> "
                    f"with amount in {accepted_units(AMOUNT_DIMENSIONS)} and time in "
                    f"{accepted_units(TIME_DIMENSIONS)}, e.g. 'mg/h'. Leave RATE out to use AMT-unit/TIME-unit"
                )
            else:
                columns[name] = unit
        elif name == "DV":
            dv, dv_named = _resolve_dv(text, log)
        elif name in DV_UNIT_COLUMNS:
            log.add(
                f"units of column {name}: {name} is read in the DV unit of its row's DVID; remove "
                f"{name} from the units and declare the DV units instead"
            )
        elif name in UNITLESS_COLUMNS:
            log.add(f"units of column {name}: {name} is an identifier or a flag and has no unit; remove it")
        elif name in covariates:
            unit = parse_unit(text, COVARIATE_DIMENSIONS)
            if unit is None:
                log.add(_unknown(name, text, COVARIATE_DIMENSIONS))
            else:
                columns[name] = unit
        else:
            log.add(
                f"units name column {name}, which is not in the data (columns: {', '.join(present)}); "
                "check the spelling, or remove it from the units"
            )

    # II and DUR are in TIME units, RATE in AMT-unit per TIME-unit, unless declared otherwise.
    if "TIME" in by_name and "TIME" not in columns:
        return ResolvedUnits(columns, {})  # unusable TIME unit, already reported
    time = columns.get("TIME", internal_unit("time"))
    amount = columns.get("AMT", internal_unit("amount"))
    columns.setdefault("TIME", time)
    columns.setdefault("AMT", amount)
    columns.setdefault("II", time)
    columns.setdefault("DUR", time)
    if "RATE" not in by_name:
        columns["RATE"] = rate_unit(amount, time)

    if None in dv:
        per_dvid = {dvid: dv[None] for dvid in observed_dvids}
    else:
        per_dvid = {dvid: unit for dvid, unit in dv.items() if dvid is not None}
        # Once any DV unit is declared, a DVID left out would silently stay unconverted.
        if dv_named and None not in dv_named:
            for dvid in sorted(set(observed_dvids) - dv_named):
                log.add(
                    f"units of column DV: DVID {dvid} has EVID 0 records but no unit in the DV units "
                    f"(declared for DVIDs {', '.join(str(d) for d in sorted(dv_named))}); add "
                    f"{dvid}: '<unit>' to the DV units"
                )
    ordered = {name: columns[name] for name in (*STANDARD_COLUMNS, *covariates) if name in columns}
    return ResolvedUnits(ordered, per_dvid)


def unit_name_problems(declared: Mapping[str, object]) -> list[tuple[str, object, str]]:
    """``(key, value, what was expected)`` for each declared unit that is not a unit of its
    column's kind, checked without the data (a column that is not a standard one is taken to
    be a covariate): for a recipe's ``[data] units``, before the dataset is read."""
    out: list[tuple[str, object, str]] = []
    for key, value in declared.items():
        name = str(key).strip().upper()
        if name in TIME_COLUMNS:
            dimensions = TIME_DIMENSIONS
        elif name == "AMT":
            dimensions = AMOUNT_DIMENSIONS
        elif name == "RATE":
            if parse_rate_unit(value) is None:
                out.append((key, value, "<amount unit>/<time unit>, e.g. 'mg/h'"))
            continue
        elif name == "DV":
            entries = value.items() if isinstance(value, Mapping) else [(None, value)]
            for dvid, text in entries:
                if dvid is not None and (_dvid_key(dvid) is None or _dvid_key(dvid) < 1):
                    out.append((f"{key}.{dvid}", text, 'a positive integer DVID as the key, e.g. DV = { 1 = "ng/mL" }'))
                elif parse_unit(text, DV_DIMENSIONS) is None:
                    out.append((key if dvid is None else f"{key}.{dvid}", text,
                                f"one of {accepted_units(DV_DIMENSIONS)}"))
            continue
        elif name in DV_UNIT_COLUMNS or name in UNITLESS_COLUMNS:
            out.append((key, value, f"no unit: {name} " + ("follows the DV unit" if name in DV_UNIT_COLUMNS
                                                           else "is an identifier or a flag") + "; remove it"))
            continue
        else:
            dimensions = COVARIATE_DIMENSIONS
        if parse_unit(value, dimensions) is None:
            out.append((key, value, f"one of {accepted_units(dimensions)}"))
    return out
