"""Trial layer: response endpoints (OR, CR, SR, time to response, relapse) from platelet series.

Units: time in days (day 0 = first treatment), platelets in 10⁹/L.
"""

from itp_pd.trial.endpoints import (
    EndpointInputError,
    Endpoints,
    compute_endpoints,
    relapsed_by,
    summarise,
)

__all__ = [
    "EndpointInputError",
    "Endpoints",
    "compute_endpoints",
    "relapsed_by",
    "summarise",
]
