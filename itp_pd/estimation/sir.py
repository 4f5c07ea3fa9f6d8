"""Sampling importance resampling (SIR) of the population parameters, as PsN's ``sir``
(Dosne et al. 2016 J Pharmacokinet Pharmacodyn 43:583).

Proposals come from the asymptotic normal of the estimate (the covariance step), on the
unconstrained scale; each gets the importance ratio

    IRₖ = exp(−½ (OFV(xₖ) − OFV(x̂))) / exp(−½ (xₖ − x̂)ᵀ Σ⁻¹ (xₖ − x̂)),

the likelihood over the proposal density, both relative to the estimate. ``resamples`` of the
proposals are then drawn without replacement with probabilities ∝ IR (PsN's default). The
importance-sampling effective sample size (Σ IR)² / Σ IR² says how well the normal proposal
covered the likelihood: near the number of samples when the normal approximation is good.
Each proposal costs one inner optimisation, whose last solve gives its OFV (the fit's own
evaluation, ``modes_and_evaluation``). The modes start from
those at the estimate moved by their derivative dη̂/dx (``outer.predicted_shift``, off by
O(Δx²)), and are found to the search's loose tolerance (``search_inner_decrement``), which
the weights do not need tighter: a mode off by δ moves OFVᵢ by O(δ) through log det Hᵢ (not
stationary at the mode), measured on the PK example 1.5 SE from the estimate at 6e-5 for the
40 patients against the tight modes, a factor exp(3e-5) on a weight. The cost per proposal
on the demo's fit: ``benchmarks/fit.py --sir-samples``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from .marginal import modes_and_evaluation
from .outer import predicted_shift


def objective_value(problem, data, x, eta0, settings, *, decrement_tol=None,
                    warm: bool = False) -> tuple[float, np.ndarray, bool]:
    """OFV at ``x`` with every mode re-found from ``eta0``: ``(ofv, modes, inner converged)``;
    the modes to ``decrement_tol`` (default ``settings.inner_decrement``). The OFV is the fit's
    own (``modes_and_evaluation``, as each BFGS evaluation); ``warm``: ``eta0`` is already near
    the modes (moved by dη̂/dx), so Newton's iterations start at once, without Gauss–Newton's.
    Measured on the demo's fit, from the estimate's modes unmoved, two Gauss–Newton iterations
    then exact Newton took about 9 s a proposal; warm, about one Newton iteration."""
    decrement_tol = settings.inner_decrement if decrement_tol is None else decrement_tol
    inner = modes_and_evaluation(problem, x, eta0, data, problem.method, tol=settings.inner_tol,
                                 max_iterations=settings.inner_iterations, decrement_tol=decrement_tol,
                                 noise=settings.inner_noise, gauss_newton_iterations=0 if warm else 2)
    evaluation, status = inner.evaluation
    value = float(np.sum(np.asarray(evaluation.ofv)))
    ok = bool(np.all(np.asarray(status) == 0)) and np.isfinite(value)
    return (value if ok else float("inf")), inner.eta, bool(inner.converged.all())


@dataclass
class SirResult:
    """Resampled parameter vectors and how well the proposal fitted."""

    draws: np.ndarray  # (resamples, p), unconstrained
    ess: float
    samples: int
    resamples: int
    failed: int  # proposals whose OFV was not finite or whose inner problem failed (weight 0)
    run_s: float = 0.0  # wall time of the proposals' OFVs and the resampling


def sample_importance_resample(problem, data, x_hat, ofv_hat, eta_hat, covariance, settings, *, samples: int,
                               resamples: int, key, sensitivity=None) -> SirResult:
    """SIR around ``x_hat`` (``covariance`` from the covariance step); see the module docstring.
    ``sensitivity``: dη̂/dx at ``x_hat`` (``OuterResult.sensitivity``), for the modes' starts;
    without it they start from ``eta_hat``."""
    started = time.perf_counter()
    chol = np.linalg.cholesky(covariance)
    proposal_key, resample_key = jax.random.split(key)
    z = np.asarray(jax.random.normal(proposal_key, (samples, len(x_hat)), dtype=float))
    xs = np.asarray(x_hat)[None] + z @ chol.T
    log_ir = np.full(samples, -np.inf)
    failed = 0
    eta_hat, x_hat = np.asarray(eta_hat, dtype=float), np.asarray(x_hat, dtype=float)
    for k, x in enumerate(xs):
        start = eta_hat
        if sensitivity is not None:
            start = eta_hat + predicted_shift(problem, x, x_hat, sensitivity)
        value, _, ok = objective_value(problem, data, x, start, settings, warm=sensitivity is not None,
                                       decrement_tol=max(settings.search_inner_decrement, settings.inner_decrement))
        if not (ok and np.isfinite(value)):
            failed += 1
            continue
        log_ir[k] = -0.5 * (value - ofv_hat) + 0.5 * float(z[k] @ z[k])
    weights = np.exp(log_ir - log_ir.max())
    ess = float(weights.sum() ** 2 / np.sum(weights**2))
    resamples = min(resamples, int(np.count_nonzero(weights)))
    chosen = np.asarray(jax.random.choice(resample_key, samples, (resamples,), replace=False,
                                          p=jnp.asarray(weights / weights.sum())))
    return SirResult(xs[chosen], ess, samples, resamples, failed, time.perf_counter() - started)
