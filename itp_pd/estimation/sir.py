"""Sampling importance resampling (SIR) of the population parameters, as PsN's ``sir``
(Dosne et al. 2016 J Pharmacokinet Pharmacodyn 43:583).

Proposals come from the asymptotic normal of the estimate (the covariance step), on the
unconstrained scale; each gets the importance ratio

    IRₖ = exp(−½ (OFV(xₖ) − OFV(x̂))) / exp(−½ (xₖ − x̂)ᵀ Σ⁻¹ (xₖ − x̂)),

the likelihood over the proposal density, both relative to the estimate. ``resamples`` of the
proposals are then drawn without replacement with probabilities ∝ IR (PsN's default). The
importance-sampling effective sample size (Σ IR)² / Σ IR² says how well the normal proposal
covered the likelihood: near the number of samples when the normal approximation is good.
Each proposal costs one inner optimisation and one OFV (no gradient).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from .marginal import _per_patient, expand, find_modes, has_blq, patient_ofv


@functools.partial(jax.jit, static_argnames=("problem", "method", "blq"))
def _ofv(problem, x, eta, data, method, blq):
    # FOCE-I's Hᵢ needs first derivatives only, unless BLQ rows bring their exact Hessian.
    order = 1 if method == "focei" and not blq else 2
    expansion, status = expand(problem, x, eta, data, order=order)
    ofv, _ = _per_patient(patient_ofv, problem, x, eta, data, expansion, method, blq)
    return jnp.where(jnp.all(status == 0), jnp.sum(ofv), jnp.inf)


def objective_value(problem, data, x, eta0, settings) -> tuple[float, np.ndarray, bool]:
    """OFV at ``x`` with every mode re-found from ``eta0``: ``(ofv, modes, inner converged)``."""
    inner = find_modes(problem, x, eta0, data, tol=settings.inner_tol, max_iterations=settings.inner_iterations,
                       decrement_tol=settings.inner_decrement, noise=settings.inner_noise)
    value = float(_ofv(problem, jnp.asarray(x), jnp.asarray(inner.eta), data, problem.method, has_blq(data)))
    return value, inner.eta, bool(inner.converged.all())


@dataclass
class SirResult:
    """Resampled parameter vectors and how well the proposal fitted."""

    draws: np.ndarray  # (resamples, p), unconstrained
    ess: float
    samples: int
    resamples: int
    failed: int  # proposals whose OFV was not finite or whose inner problem failed (weight 0)


def sample_importance_resample(problem, data, x_hat, ofv_hat, eta_hat, covariance, settings, *, samples: int,
                               resamples: int, key) -> SirResult:
    """SIR around ``x_hat`` (``covariance`` from the covariance step); see the module docstring."""
    chol = np.linalg.cholesky(covariance)
    proposal_key, resample_key = jax.random.split(key)
    z = np.asarray(jax.random.normal(proposal_key, (samples, len(x_hat)), dtype=float))
    xs = np.asarray(x_hat)[None] + z @ chol.T
    log_ir = np.full(samples, -np.inf)
    failed = 0
    for k, x in enumerate(xs):
        value, _, ok = objective_value(problem, data, x, eta_hat, settings)
        if not (ok and np.isfinite(value)):
            failed += 1
            continue
        log_ir[k] = -0.5 * (value - ofv_hat) + 0.5 * float(z[k] @ z[k])
    weights = np.exp(log_ir - log_ir.max())
    ess = float(weights.sum() ** 2 / np.sum(weights**2))
    resamples = min(resamples, int(np.count_nonzero(weights)))
    chosen = np.asarray(jax.random.choice(resample_key, samples, (resamples,), replace=False,
                                          p=jnp.asarray(weights / weights.sum())))
    return SirResult(xs[chosen], ess, samples, resamples, failed)
