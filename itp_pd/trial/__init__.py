"""Trial layer: response endpoints (OR, CR, SR, time to response, relapse) from platelet series,
measured with the spec's residual error.

Units: time in days (day 0 = first treatment), platelets in 10⁹/L.
"""

from itp_pd.trial.endpoints import (
    EndpointInputError,
    Endpoints,
    compute_endpoints,
    relapsed_by,
    summarise,
)
from itp_pd.trial.measurement import measured_endpoints, simulate_measurements

__all__ = [
    "EndpointInputError",
    "Endpoints",
    "compute_endpoints",
    "measured_endpoints",
    "relapsed_by",
    "simulate_measurements",
    "summarise",
]
