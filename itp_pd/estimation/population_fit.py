"""A FOCE-I or Laplace fit of a hierarchical model: estimate, covariance step, and the tables a
NONMEM user reads (estimates with SE and RSE%, EBEs with conditional sds and shrinkage,
PRED/IPRED/IWRES/CWRES per observation), and parameter draws for simulation.

Objective function values (``ofv``) are −2 log L without the constant Σ nᵢ log 2π, which is
what NONMEM prints as OBJECTIVE FUNCTION VALUE; ``ofv_with_constant`` adds it (what R's
``logLik`` and Pumas report as −2 log L). AIC = OFV_c + 2p, BIC = OFV_c + p log N (N the number
of observations), both from the OFV with the constant.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from .from_model import ModelProblem, problem_from_model
from .marginal import ofv_constant
from .outer import OuterResult, OuterSettings, minimise

Z95 = 1.959963984540054


@dataclass
class PopulationFit:
    """A finished FOCE-I/Laplace fit (``fit_population``)."""

    method: str
    outer: OuterResult
    setup: ModelProblem
    estimates: pd.DataFrame
    individual: pd.DataFrame
    residuals: pd.DataFrame
    summary: dict

    @property
    def ok(self) -> bool:
        """Converged, and the covariance step succeeded: a result, not a starting point."""
        return bool(self.outer.converged and self.outer.covariance is not None and self.outer.covariance.ok)


def _reported(parameters, x):
    """The reported parameters as a vector: typical values, exponents, Ω as variances and
    correlations, σ; with their names."""
    natural = parameters.natural(x)
    names, values = [], []
    for name, value in natural.items():
        if name.startswith("omega_"):
            names.append("omega2_" + name[len("omega_"):])
            values.append(value**2)
        else:
            names.append(name)
            values.append(value)
    return names, jnp.stack([jnp.asarray(v, dtype=float) for v in values])


def _unit(spec, name: str) -> str:
    if name.startswith("pop_"):
        return spec.parameter(name[4:]).unit
    if name.startswith("sigma_"):
        for o in spec.observations:
            if name.endswith(o.name):
                return "fraction" if "prop" in name or (o.error == "proportional") else (
                    "log scale" if o.error == "lognormal" else o.unit)
    return "variance (eta scale)" if name.startswith("omega2_") else "-"


def estimates_table(setup: ModelProblem, outer: OuterResult) -> pd.DataFrame:
    """``parameter, estimate, se, rse_pct, lower95, upper95, unit, cv_pct``: natural units
    (delta method from the unconstrained covariance); intervals are the unconstrained scale's
    ±1.96 SE mapped back (positive parameters stay positive); CV% of log-normal IIV is
    √(exp(ω²) − 1)·100."""
    parameters = setup.parameters
    names, values = _reported(parameters, outer.x)
    values = np.asarray(values)
    cov = outer.covariance.covariance if outer.covariance is not None and outer.covariance.ok else None
    se = np.full(len(names), np.nan)
    lower = np.full(len(names), np.nan)
    upper = np.full(len(names), np.nan)
    if cov is not None:
        jac = np.asarray(jax.jacfwd(lambda x: _reported(parameters, x)[1])(jnp.asarray(outer.x)))
        se = np.sqrt(np.maximum(np.diagonal(jac @ cov @ jac.T), 0.0))
        sd_x = np.sqrt(np.diagonal(cov))
        for row, name in enumerate(names):
            entry = name.replace("omega2_", "omega_")
            if entry in parameters.names:
                j = parameters.index(entry)
                bounds = []
                for sign in (-1.0, 1.0):
                    x = np.array(outer.x, dtype=float)
                    x[j] += sign * Z95 * sd_x[j]
                    bounds.append(float(np.asarray(_reported(parameters, jnp.asarray(x))[1])[row]))
                lower[row], upper[row] = min(bounds), max(bounds)
            else:
                lower[row], upper[row] = values[row] - Z95 * se[row], values[row] + Z95 * se[row]
    spec = parameters.spec
    cv = [math.sqrt(math.expm1(v)) * 100 if n.startswith("omega2_") and spec.parameter(n[7:]).iiv.scale == "log"
          else np.nan for n, v in zip(names, values)]
    return pd.DataFrame({
        "parameter": names, "estimate": values, "se": se,
        "rse_pct": np.where(values != 0, 100 * se / np.abs(values), np.nan),
        "lower95": lower, "upper95": upper, "unit": [_unit(spec, n) for n in names], "cv_pct": cv,
    })


def draw_intervals(setup: ModelProblem, xs: np.ndarray, level: float = 0.95) -> pd.DataFrame:
    """``parameter, lower, upper``: the central ``level`` interval of each reported parameter
    (natural units, as ``estimates_table``) over the unconstrained draws ``xs`` (``(n, p)``),
    from their percentiles: the interval PsN's ``sir`` reports from its resamples."""
    names, _ = _reported(setup.parameters, jnp.asarray(xs[0]))
    values = np.asarray(jax.vmap(lambda x: _reported(setup.parameters, x)[1])(jnp.asarray(xs)))
    tail = 50.0 * (1.0 - level)
    return pd.DataFrame({"parameter": names, "lower": np.percentile(values, tail, axis=0),
                         "upper": np.percentile(values, 100.0 - tail, axis=0)})


def conditional_covariances(h: np.ndarray) -> np.ndarray:
    """Hᵢ⁻¹ per patient (``(n, k, k)``), NaN for a patient whose Hᵢ is not finite or not
    positive definite (its solve failed at the estimate): reported as unknown, never a crash."""
    h = np.asarray(h, dtype=float)
    out = np.full_like(h, np.nan)
    finite = np.all(np.isfinite(h), axis=(1, 2))
    for i in np.flatnonzero(finite):
        if np.linalg.eigvalsh(0.5 * (h[i] + h[i].T))[0] > 0:
            out[i] = np.linalg.inv(h[i])
    return out


def individual_table(setup: ModelProblem, outer: OuterResult, ids) -> pd.DataFrame:
    """One row per patient: EBEs η̂ and their conditional sds (√diag Hᵢ⁻¹), the individual
    parameters, OFVᵢ and whether the inner problem converged."""
    etas = setup.parameters.etas
    cond = conditional_covariances(outer.half_hessian)
    table = {"ID": np.asarray(ids)}
    for j, name in enumerate(etas):
        table[f"eta_{name}"] = outer.eta[:, j]
        table[f"sd_eta_{name}"] = np.sqrt(np.maximum(cond[:, j, j], 0.0))
    values = setup.parameters.individual(jnp.asarray(outer.x), jnp.asarray(outer.eta), setup.data.covariates)
    for name in setup.varying:
        table[name] = np.asarray(values[name])
    table["ofv"] = outer.patient_ofv
    table["inner_converged"] = outer.inner_converged
    return pd.DataFrame(table)


def shrinkage(setup: ModelProblem, outer: OuterResult) -> dict:
    """η-shrinkage per random effect, % (1 − sd(η̂)/ω; Savic & Karlsson 2009)."""
    omega = np.asarray(setup.parameters.omega_matrix(jnp.asarray(outer.x)))
    return {name: float(100 * (1 - np.std(outer.eta[:, j], ddof=1) / math.sqrt(omega[j, j])))
            for j, name in enumerate(setup.parameters.etas)}


def residuals_table(setup: ModelProblem, outer: OuterResult, population, dataset) -> pd.DataFrame:
    """Per observation: PRED (η = 0), IPRED (η̂), IWRES = (DV − IPRED)/√V(η̂) and CWRES, on the
    likelihood's scale (log for log-normal outputs). CWRES (Hooker et al. 2007 Pharm Res
    24:2187, NONMEM's FOCE definition): the patient's residuals around E[y] = f(η̂) − Gη̂,
    decorrelated by the Cholesky factor of Cov[y] = GΩGᵀ + diag V(η̂), G = ∂f/∂η at η̂. BLQ rows
    get no residuals."""
    problem, data = setup.problem, setup.data
    x = jnp.asarray(outer.x)
    eta = jnp.asarray(outer.eta)
    k = eta.shape[1]
    covariates = data.covariates

    def f_of(e):
        psi = jax.vmap(problem.psi, in_axes=(None, 0, 0))(x, e, covariates)
        return problem.predict(psi)[0]

    ipred = f_of(eta)
    pred = f_of(jnp.zeros_like(eta))
    g = jax.jacfwd(lambda d: f_of(eta + d))(jnp.zeros(k))  # (n, n_obs, k): shifts every patient
    variance = jax.vmap(problem.variance, in_axes=(None, 0, 0))(x, ipred, data.output)
    omega = problem.omega(x)
    rows = np.asarray(data.is_data & ~data.censored)
    y = np.asarray(data.value)
    ipred, pred, g, variance = (np.asarray(a) for a in (ipred, pred, g, variance))
    iwres = np.where(rows, (y - ipred) / np.sqrt(np.where(rows, variance, 1.0)), np.nan)
    cwres = np.full(y.shape, np.nan)
    for i in range(y.shape[0]):
        r = rows[i]
        if not r.any():
            continue
        gi = g[i][r]
        cov = gi @ np.asarray(omega) @ gi.T + np.diag(variance[i][r])
        mean = ipred[i][r] - gi @ np.asarray(outer.eta[i])
        cwres[i, np.flatnonzero(r)] = np.linalg.solve(np.linalg.cholesky(cov), y[i][r] - mean)
    obs_rows = np.asarray(population.obs_rows)
    table = dataset.table
    keep = np.asarray(data.is_data) & (obs_rows >= 0)
    patient, slot = np.nonzero(keep)
    source = obs_rows[patient, slot]
    log_rows = setup.log_rows
    natural = lambda a: np.where(log_rows, np.exp(a), a)  # noqa: E731
    return pd.DataFrame({
        "ID": table["ID"].to_numpy()[source], "TIME": table["TIME"].to_numpy(dtype=float)[source],
        "DVID": table["DVID"].to_numpy()[source] if "DVID" in table else 1,
        "DV": table["DV"].to_numpy(dtype=float)[source],
        "PRED": natural(pred)[patient, slot], "IPRED": natural(ipred)[patient, slot],
        "IWRES": iwres[patient, slot], "CWRES": cwres[patient, slot],
        "BLQ": np.asarray(data.censored)[patient, slot].astype(int),
    })


# An IIV sd below this on the η scale (1% CV for a log-normal parameter) is a variance at its
# boundary, 0: the data do not support that random effect (NONMEM: "PARAMETER ESTIMATE IS NEAR
# ITS BOUNDARY"). Its SE from the delta method is then meaningless, and so is the covariance step.
BOUNDARY_SD = 0.01


def variances_at_boundary(natural: dict, floor_sd: float = BOUNDARY_SD) -> dict:
    """``{name: sd}`` of the estimated IIV sds (``omega_<P>`` of ``parameters.natural``) below
    ``floor_sd``."""
    return {name: float(value) for name, value in natural.items()
            if name.startswith("omega_") and float(value) < floor_sd}


def judge_boundary(covariance, boundary: dict):
    """The covariance step as reported: failed, naming the random effects, when a variance is at
    its boundary (``variances_at_boundary``); unchanged otherwise."""
    if covariance is None or not covariance.ok or not boundary:
        return covariance
    names = ", ".join(f"omega2_{n[len('omega_'):]} (sd {sd:.2g})" for n, sd in boundary.items())
    etas = [n[len("omega_"):] for n in boundary]
    return dataclasses.replace(
        covariance, ok=False, covariance=None,
        message=f"not valid: {names} at the boundary 0 (sd < {BOUNDARY_SD:g}): the data do not support "
                f"the random effect of {etas}; take it out of [model] random_effects and fit again")


def name_flat_direction(covariance, names: list[str], x):
    """The covariance step as reported: where R is not positive definite, its message names the
    estimates along R's flattest direction (eigenvector of its smallest eigenvalue, the
    elements of magnitude ≥ 0.3) with their values on the unconstrained scale, so that the
    user sees which parameter the data do not inform (measured on the 120-patient ITP trial
    with a random effect on FT: logit IMAX_PC at -28.6, IMAX_PC 4e-13); unchanged otherwise."""
    if covariance is None or covariance.ok or covariance.r is None or covariance.r_min_eigenvalue is None \
            or covariance.r_min_eigenvalue > 0:
        return covariance
    _, vectors = np.linalg.eigh(covariance.r)
    weakest = vectors[:, 0]
    order = [j for j in np.argsort(-np.abs(weakest)) if abs(weakest[j]) >= 0.3]
    listed = ", ".join(f"{names[j]} (unconstrained {float(x[j]):.3g}, weight {abs(float(weakest[j])):.2f})"
                       for j in order)
    return dataclasses.replace(covariance, message=f"{covariance.message}; R's flattest direction is mostly "
                                                   f"{listed}: a value far out on its scale (e.g. a logit "
                                                   "below -10) is a parameter at a bound of its range")


def fit_population(model, observed, population, dataset, *, method: str = "focei",
                   settings: OuterSettings = OuterSettings(), progress=None) -> PopulationFit:
    """FOCE-I or Laplace fit of ``model`` (``build_model``) to its data, from the spec's start.

    Raises ``ItpPdError`` before any fitting for an unsolvable start (naming the patients).
    """
    from ..errors import SolverError

    setup = problem_from_model(model, observed, method)
    x0 = setup.parameters.start
    eta0 = np.zeros((model.n_patients, len(setup.parameters.etas)))
    _, status = setup.predictions(x0, eta0)
    if np.any(status != 0):
        bad = [population.ids[i] for i in np.flatnonzero(status != 0)[:10]]
        raise SolverError(f"the model cannot be solved at the starting estimates for patient(s) ID {bad}; "
                          "check doses and units, or start nearer (the spec's prior medians and values)")
    outer = minimise(setup.problem, setup.data, x0, eta0, settings, progress=progress)
    bad = ~np.isfinite(np.asarray(outer.patient_ofv)) | ~np.all(np.isfinite(np.asarray(outer.patient_gradient)), axis=1)
    if bad.any():  # which patients, so that the user can look at their records
        ids = [population.ids[i] for i in np.flatnonzero(bad)[:10]]
        outer.message += (f"; OFV or its gradient is not finite for {int(bad.sum())} patient(s): ID {ids}"
                          f"{' ...' if bad.sum() > 10 else ''}")
    boundary = variances_at_boundary(setup.parameters.natural(outer.x))
    outer.covariance = judge_boundary(outer.covariance, boundary)
    outer.covariance = name_flat_direction(outer.covariance, setup.parameters.names, outer.x)
    n_obs = int(np.asarray(setup.data.is_data).sum())
    p = len(x0)
    constant = ofv_constant(setup.data)
    cov = outer.covariance
    correlation_condition = None
    if cov is not None and cov.ok:
        sd = np.sqrt(np.diagonal(cov.covariance))
        correlation = cov.covariance / np.outer(sd, sd)
        eig = np.linalg.eigvalsh(correlation)
        correlation_condition = float(eig.max() / eig.min()) if eig.min() > 0 else float("inf")
    summary = {
        "method": method,
        "ofv": outer.ofv,
        "ofv_with_constant": outer.ofv + constant,
        "ofv_note": "ofv is -2 log L without the constant n*log(2*pi) (what NONMEM prints); "
                    "ofv_with_constant includes it",
        "aic": outer.ofv + constant + 2 * p,
        "bic": outer.ofv + constant + p * math.log(n_obs),
        "converged": bool(outer.converged),
        "convergence_message": outer.message + (
            f"; but the covariance step failed ({cov.message})" if outer.converged and cov is not None and not cov.ok
            else ""),
        "max_abs_gradient": float(np.max(np.abs(outer.gradient))) if outer.gradient.size else 0.0,
        # The optimum's distance from the estimate in its standard errors (outer.newton_distance).
        "newton_distance_se": outer.newton_distance if np.isfinite(outer.newton_distance) else None,
        "outer_iterations": outer.iterations,
        "objective_evaluations": outer.evaluations,
        "model_solves": outer.solves,
        "inner_failures": int((~outer.inner_converged).sum()),
        "estimated_parameters": p,
        "observations": n_obs,
        "patients": int(model.n_patients),
        "covariance_step": {
            "ok": bool(cov.ok) if cov is not None else False,
            "kind": cov.kind if cov is not None else "none",
            "message": cov.message if cov is not None else "not run",
            "condition_number": correlation_condition,
            "r_min_eigenvalue": cov.r_min_eigenvalue if cov is not None else None,
        },
        "variances_at_boundary": {"omega2_" + n[len("omega_"):]: sd**2 for n, sd in boundary.items()},
        "eta_shrinkage_pct": shrinkage(setup, outer),
        "run_s": round(outer.run_s, 3),
    }
    return PopulationFit(method, outer, setup, estimates_table(setup, outer),
                         individual_table(setup, outer, population.ids),
                         residuals_table(setup, outer, population, dataset), summary)


def parameter_draws(fit: PopulationFit, n_draws: int, *, key) -> np.ndarray:
    """Draws of the unconstrained vector from the asymptotic normal N(x̂, covariance step),
    ``(n_draws, p)``; the estimate alone when the covariance step failed."""
    cov = fit.outer.covariance
    if cov is None or not cov.ok:
        return np.asarray(fit.outer.x)[None]
    chol = np.linalg.cholesky(cov.covariance)
    z = np.asarray(jax.random.normal(key, (n_draws, len(fit.outer.x)), dtype=float))
    return np.asarray(fit.outer.x)[None] + z @ chol.T


def latent_samples(fit: PopulationFit, xs: np.ndarray) -> dict:
    """The NumPyro model's latent sites at each draw ``xs`` (``(n_draws, p)``), with every
    patient's η held at its EBE: ``pop_``, ``beta_``, ``omega_``, ``sigma_`` sites and the
    standardised ``z_`` (or ``corr_chol_IIV`` and ``z_IIV`` for a correlated block) that give
    back η̂ under each draw's Ω. Fixed parameters have no site, as in the model."""
    parameters = fit.setup.parameters
    etas, block = parameters.etas, parameters.correlated
    eta_hat = jnp.asarray(fit.outer.eta)

    def one(x):
        natural = parameters.natural(x)
        out = {name: value for name, value in natural.items() if not name.startswith("corr_")}
        omega = parameters.omega_matrix(x)
        sd = jnp.sqrt(jnp.diagonal(omega))
        for j, name in enumerate(etas):
            if name not in block:
                out[f"z_{name}"] = eta_hat[:, j] / sd[j]
        if block:
            where = jnp.array([etas.index(n) for n in block])
            sub = omega[where][:, where]
            sub_sd = sd[where]
            chol = jnp.linalg.cholesky(sub / jnp.outer(sub_sd, sub_sd))
            out["corr_chol_IIV"] = chol
            standardised = eta_hat[:, where] / sub_sd
            out["z_IIV"] = jax.scipy.linalg.solve_triangular(chol, standardised.T, lower=True).T
        return out

    return jax.vmap(one)(jnp.asarray(xs))
