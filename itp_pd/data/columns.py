"""Column roles of a NONMEM-format dataset and the neutral defaults of optional columns."""

from __future__ import annotations

from types import MappingProxyType

# Canonical order of the standard columns in a Dataset table; covariates follow in file order.
STANDARD_COLUMNS = (
    "ID", "TIME", "EVID", "AMT", "CMT", "RATE", "DUR", "II", "ADDL", "SS",
    "MDV", "DV", "DVID", "CENS", "LIMIT", "BLQ", "LLOQ",
)  # fmt: skip

# Always present in a Dataset table, added with their defaults when the file lacks them.
ALWAYS_PRESENT = ("ID", "TIME", "EVID", "AMT", "CMT", "RATE", "II", "ADDL", "SS", "MDV", "DV", "DVID")

REQUIRED = ("ID", "TIME")

# What a missing cell (or an absent column) means. DV, LIMIT and LLOQ stay missing (NaN);
# EVID and MDV are derived instead (see build.py).
NEUTRAL_DEFAULTS = MappingProxyType(
    {"AMT": 0.0, "CMT": 1.0, "RATE": 0.0, "DUR": 0.0, "II": 0.0, "ADDL": 0.0, "SS": 0.0,
     "DVID": 1.0, "CENS": 0.0, "BLQ": 0.0}
)  # fmt: skip

KNOWN_EVIDS = (0, 1, 2, 3, 4)
DOSE_EVIDS = (1, 4)

# Columns in TIME units, and columns in the DV unit of the row's DVID.
TIME_COLUMNS = ("TIME", "II", "DUR")
DV_UNIT_COLUMNS = ("DV", "LIMIT", "LLOQ")
# Identifiers, flags and counts: they carry no unit.
UNITLESS_COLUMNS = ("ID", "EVID", "CMT", "ADDL", "SS", "MDV", "DVID", "CENS", "BLQ")
