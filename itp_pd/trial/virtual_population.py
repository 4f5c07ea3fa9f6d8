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
    exponents: Mapping[str, Mapping[str, float]] | None = None,
    covariates: Mapping[str, np.ndarray] | None = None,
    entry_platelets: float | None = ENTRY_PLATELETS,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Draw ``n_patients`` virtual patients.

    Args:
        spec: the model spec (typical values, IIV scales and sds, covariate effects).
        n_patients: number of patients.
        seed: seed of the numpy generator (the draws are reproducible).
        typical: overrides of typical values (same units as the spec).
        omega: overrides of IIV sds (on the parameter's IIV scale).
        exponents: parameter → {covariate: exponent}, overriding the spec's covariate
            exponents (a posterior's ``beta_<P>_<COV>`` draws).
        covariates: covariate name → ``(n_patients,)`` values (BSA in m², AGE in years) to use
            instead of drawing BSA; must hold BSA.
        entry_platelets: eligibility limit of the baseline count (10⁹/L, exclusive): baselines
            at or above it are redrawn (a trial population); None for one known patient, whose
            data decide.

    Returns:
        ``(params, bsa)``: parameter name → ``(n_patients,)`` array, and BSA (m²).
    """
    rng = np.random.default_rng(seed)
    typical = {**spec.typical_values(), **(typical or {})}
    omega = dict(omega or {})
    exponents = dict(exponents or {})
    if covariates is None:
        covariates = {"BSA": np.clip(rng.normal(BSA_MEAN, BSA_SD, n_patients), *BSA_RANGE)}
    needed = sorted({e.covariate for p in spec.parameters for e in p.covariates} - set(covariates))
    if needed:
        raise ValueError(f"spec {spec.name} needs covariates {needed} for its virtual patients; "
                         f"received {sorted(covariates)}. Pass them in covariates=.")
    params = {}
    for parameter in spec.parameters:
        sd = omega.get(parameter.name, parameter.iiv.sd if parameter.iiv else 0.0)
        eta = sd * rng.standard_normal(n_patients)
        if parameter.name == "PLT0" and entry_platelets is not None:
            eta = _eligible_baseline(rng, typical["PLT0"], sd, eta, entry_platelets)
        used = {e.covariate: covariates[e.covariate] for e in parameter.covariates}
        params[parameter.name] = np.asarray(
            individual_value(parameter, typical[parameter.name], eta, used,
                             exponents=exponents.get(parameter.name)), dtype=float
        )
    return params, np.asarray(covariates["BSA"], dtype=float)


def _eligible_baseline(rng, typical, sd, eta, limit=ENTRY_PLATELETS):
    """Redraw η of baselines at or above the entry limit until every patient is eligible."""
    if typical * np.exp(-6.0 * sd) >= limit:
        raise ValueError(f"a typical baseline of {typical:g} with sd {sd:g} leaves almost nobody below the "
                         f"entry limit {limit:g}; lower PLT0 or raise the limit")
    eta = eta.copy()
    while (ineligible := typical * np.exp(eta) >= limit).any():
        eta[ineligible] = sd * rng.standard_normal(ineligible.sum())
    return eta
