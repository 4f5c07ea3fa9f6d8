"""Virtual patients: parameters drawn from a model spec's between-patient distributions.

Each parameter with IIV gets ``P_i = individual_value(θ, η_i, covariates)`` with
``η_i ~ N(0, ω²)`` on the spec's scale (log-normal, or logit-normal for fractions); the
others are shared. Trial eligibility (baseline platelets < 30×10⁹/L, NCT07057778) is applied
by redrawing the baseline of ineligible patients, so the count of patients is exact.
Population values can be overridden (a calibration writes them; see ``calibration.py``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..spec import individual_value

ENTRY_PLATELETS = 30.0  # 10⁹/L, exclusive: NCT07057778 entry criterion
BSA_MEAN, BSA_SD, BSA_RANGE = 1.75, 0.18, (1.3, 2.4)  # m², adult Chinese ITP trial populations [weak]


def sample_patients(
    spec,
    n_patients: int,
    *,
    seed: int,
    typical: Mapping[str, float] | None = None,
    omega: Mapping[str, float] | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Draw ``n_patients`` virtual patients.

    Args:
        spec: the model spec (typical values, IIV scales and sds, covariate effects).
        n_patients: number of patients.
        seed: seed of the numpy generator (the draws are reproducible).
        typical: overrides of typical values (same units as the spec).
        omega: overrides of IIV sds (on the parameter's IIV scale).

    Returns:
        ``(params, bsa)``: parameter name → ``(n_patients,)`` array, and BSA (m²).
    """
    rng = np.random.default_rng(seed)
    typical = {**spec.typical_values(), **(typical or {})}
    omega = dict(omega or {})
    bsa = np.clip(rng.normal(BSA_MEAN, BSA_SD, n_patients), *BSA_RANGE)
    params = {}
    for parameter in spec.parameters:
        sd = omega.get(parameter.name, parameter.iiv.sd if parameter.iiv else 0.0)
        eta = sd * rng.standard_normal(n_patients)
        if parameter.name == "PLT0":
            eta = _eligible_baseline(rng, typical["PLT0"], sd, eta)
        covariates = {"BSA": bsa} if parameter.covariates else {}
        params[parameter.name] = np.asarray(
            individual_value(parameter, typical[parameter.name], eta, covariates), dtype=float
        )
    return params, bsa


def _eligible_baseline(rng, typical, sd, eta):
    """Redraw η of baselines at or above the entry limit until every patient is eligible."""
    eta = eta.copy()
    while (ineligible := typical * np.exp(eta) >= ENTRY_PLATELETS).any():
        eta[ineligible] = sd * rng.standard_normal(ineligible.sum())
    return eta
