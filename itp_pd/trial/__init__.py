"""Trial layer: response endpoints, named regimens, virtual trials from a prior or a posterior,
comparisons between arms, power, and individual forecasts.

Units: time in days (day 0 = first treatment), platelets in 10⁹/L, doses in mg (or mg/m²).
"""

from itp_pd.trial.endpoints import (
    EndpointInputError,
    Endpoints,
    compute_endpoints,
    relapsed_by,
    summarise,
)
from itp_pd.trial.forecast import Forecast, forecast_patient
from itp_pd.trial.measurement import measured_endpoints, simulate_measurements
from itp_pd.trial.population import (
    PopulationDraws,
    fitted_population,
    population_source,
    posterior_population,
    prior_population,
)
from itp_pd.trial.power import PowerResult, trial_power
from itp_pd.trial.regimens import ARMS, REGIMENS, iguratimod, load_regimens, make_arm, resolve_arms, rituximab
from itp_pd.trial.trajectories import Trajectories, central_population, simulate_trajectories, weekly_visits
from itp_pd.trial.virtual_trial import TrialDesign, TrialResult, compare, simulate_trial

__all__ = [
    "ARMS",
    "REGIMENS",
    "EndpointInputError",
    "Endpoints",
    "Forecast",
    "PopulationDraws",
    "PowerResult",
    "Trajectories",
    "TrialDesign",
    "TrialResult",
    "central_population",
    "compare",
    "compute_endpoints",
    "fitted_population",
    "forecast_patient",
    "iguratimod",
    "load_regimens",
    "make_arm",
    "measured_endpoints",
    "population_source",
    "posterior_population",
    "prior_population",
    "relapsed_by",
    "resolve_arms",
    "rituximab",
    "simulate_measurements",
    "simulate_trajectories",
    "simulate_trial",
    "summarise",
    "trial_power",
    "weekly_visits",
]
