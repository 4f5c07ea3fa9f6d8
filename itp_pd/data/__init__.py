"""NONMEM-format datasets (CSV or .dta): read, check, convert to internal units, write, expand ADDL/II.

Internal units: time in day, amount in mg, rate in mg/day, concentration in mg/L,
platelets in 10^9/L (``INTERNAL_UNITS``).
"""

from itp_pd.data.dataset import Dataset
from itp_pd.data.expand import expand_addl
from itp_pd.data.nonmem import ReadReport, read_nonmem, read_nonmem_report, write_nonmem
from itp_pd.data.plausibility import DataWarning
from itp_pd.data.units import INTERNAL_UNITS
from itp_pd.data.validate import validate_table

__all__ = [
    "INTERNAL_UNITS",
    "DataWarning",
    "Dataset",
    "ReadReport",
    "expand_addl",
    "read_nonmem",
    "read_nonmem_report",
    "validate_table",
    "write_nonmem",
]
