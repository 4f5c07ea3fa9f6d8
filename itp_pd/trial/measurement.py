"""Simulated measurements: model predictions with the spec's residual error.

Trial endpoints are defined on measured counts, and measured platelet counts scatter around
the patient's course (assay error and day-to-day variation, ~20% in ITP [weak], the spec's
``sigma_prop`` of PLT). A response that hovers just above 30×10⁹/L is therefore broken by a
low count in real trials; endpoints computed on noiseless predictions would overstate
sustained response. The error models are the spec's (``ERROR_MODELS`` in
``itp_pd.spec.model``), the same ones a fit's likelihood reads, so one spec describes both.
"""

from __future__ import annotations

import numpy as np

from ..spec.model import Observation
from ..stats.residual import residual_sd as stats_residual_sd
from .endpoints import Endpoints, compute_endpoints


def residual_sd(observation: Observation, prediction):
    """Standard deviation of a measurement around ``prediction`` (in its unit; on the log
    scale for lognormal), from the observation's error model (``itp_pd.stats.residual_sd``)."""
    sigmas = {name: value for name, value, _ in observation.sigmas}
    return np.asarray(stats_residual_sd(observation.error, np.asarray(prediction, dtype=float), **sigmas))


def simulate_measurements(prediction, observation: Observation, rng: np.random.Generator, *, floor=0.0):
    """Measurements drawn around ``prediction`` with the observation's residual error.

    Args:
        prediction: model predictions, any shape (for example patients × visits).
        observation: the spec's observation (``spec.observation(dvid)``): error model and sigmas.
        rng: numpy generator; pass one with a fixed seed for common random numbers.
        floor: lowest reportable value; a count cannot be negative, so draws below 0 (a
            4-sd event at 20% proportional error) are reported as 0.

    Returns:
        array of the prediction's shape: ``f + sd·ε`` (additive, proportional, combined) or
        ``f·exp(σ·ε)`` (lognormal), ε standard normal.
    """
    f = np.asarray(prediction, dtype=float)
    noise = rng.standard_normal(f.shape)
    if observation.error == "lognormal":
        return f * np.exp(observation.sigma("sigma_log") * noise)
    return np.maximum(f + residual_sd(observation, f) * noise, floor)


def platelet_observation(spec) -> Observation:
    """The spec's platelet observation (output ``PLT``)."""
    for observation in spec.observations:
        if observation.name == "PLT":
            return observation
    raise KeyError(f"spec {spec.name} declares no PLT observation; add [observations.PLT]")


def measured_endpoints(spec, visits, platelets, baseline, rng) -> Endpoints:
    """Response endpoints of measured counts.

    Args:
        spec: model spec; its PLT observation gives the residual error.
        visits: visit days, shape ``(n_visits,)``.
        platelets: predicted counts (10⁹/L), shape ``(n_patients, n_visits)``.
        baseline: each patient's baseline count (10⁹/L), the true PLT0: eligibility and the
            "2× baseline" criterion refer to the patient's level, not to one noisy count.
        rng: numpy generator for the measurement error (fixed seed: common random numbers).
    """
    counts = simulate_measurements(platelets, platelet_observation(spec), rng)
    return compute_endpoints(np.tile(np.asarray(visits, dtype=float), (len(counts), 1)), counts, baseline)
