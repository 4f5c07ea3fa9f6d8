"""The FOCE-I and Laplace marginal objective of a population, its random-effect modes and its
exact gradient.

For patient i with random effects η (``k``), data yᵢⱼ, predictions fᵢⱼ(η) and residual variances
Vᵢⱼ(η) (on the log scale for log-normal outputs, whose data enter as log y), the −2 log joint
density without its 2π constants is::

    Jᵢ(η) = Σⱼ [log Vᵢⱼ + (yᵢⱼ − fᵢⱼ)²/Vᵢⱼ] − 2 Σ_BLQ log Φ((LLOQᵢⱼ − fᵢⱼ)/√Vᵢⱼ) + ηᵀΩ⁻¹η + log det Ω

η̂ᵢ = argmin Jᵢ (the conditional mode, "EBE"), and the objective (−2 log marginal likelihood,
Laplace approximation; Wang 2007 J Pharmacokinet Pharmacodyn 34:575, eqs. for FOCE-I and
LAPLACIAN)::

    OFVᵢ = Jᵢ(η̂ᵢ) + log det Hᵢ
    FOCE-I:  Hᵢ = Ω⁻¹ + Σⱼ [gᵢⱼgᵢⱼᵀ/Vᵢⱼ + ½ vᵢⱼvᵢⱼᵀ/Vᵢⱼ²] + ½ ∇²_η(BLQ terms)
    Laplace: Hᵢ = ½ ∇²_η Jᵢ(η̂ᵢ)

with gᵢⱼ = ∂fᵢⱼ/∂η and vᵢⱼ = ∂Vᵢⱼ/∂η at η̂ᵢ (the η–ε interaction). This is NONMEM's FOCE-I
objective exactly (the sum of OFVᵢ is what NONMEM prints, without Σ nᵢ log 2π); BLQ rows
(M3) have no Gauss–Newton form, so their Hessian is taken exactly, as NONMEM's LAPLACIAN does.

**How derivatives are taken.** Predictions depend on η and on the population vector x only
through a few individual parameters ψᵢ (``m`` of them: log or logit of each estimated or
random parameter). At η̂ᵢ the model is solved once with forward-mode derivatives, giving
f̂ᵢ, ∂f/∂ψ and ∂²f/∂ψ²; every later quantity uses the quadratic Taylor model
f̃ᵢ(x, η) = f̂ᵢ + J δ + ½ δᵀTδ, δ = ψᵢ(x, η) − ψ̂ᵢ, which equals f with its first and second
derivatives at the expansion point. So OFVᵢ, its gradient in x and η, and ∇²Jᵢ are exact
there, and cost small dense algebra, not ODE solves. The gradient of OFV with respect to x
follows the mode by the implicit function theorem (Margossian et al. 2020 NeurIPS; Almquist
et al. 2015 J Pharmacokinet Pharmacodyn 42:191 for the FOCE-I case)::

    dOFVᵢ/dx = ∂ₓOFVᵢ − λᵢᵀ ∂ₓ∇_ηJᵢ,   λᵢ = (∇²_ηJᵢ)⁻¹ ∇_η OFVᵢ

Everything is batched over patients (``vmap``); no matrix of patients × random effects is
ever formed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr

_LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass(frozen=True)
class PatientData:
    """Observations of every patient, padded to ``n_obs`` (leading axis ``n_patients``).

    Attributes:
        value: data on the likelihood's scale (log y for log-normal rows), 0 where not data.
        is_data: the row enters the likelihood.
        censored: the row is BLQ (M3); ``lloq`` its limit on the likelihood's scale.
        output: index of the row's output.
        covariates: per-patient covariates, ``{name: (n_patients,)}``.
    """

    value: jax.Array
    is_data: jax.Array
    censored: jax.Array
    lloq: jax.Array
    output: jax.Array
    covariates: dict

    def _tree(self):
        return {"value": self.value, "is_data": self.is_data, "censored": self.censored, "lloq": self.lloq,
                "output": self.output, "covariates": self.covariates}


jax.tree_util.register_pytree_node(
    PatientData,
    lambda d: ((d.value, d.is_data, d.censored, d.lloq, d.output, d.covariates), None),
    lambda _, leaves: PatientData(*leaves),
)


@dataclass(frozen=True)
class MarginalProblem:
    """What the estimator needs of a model, as pure functions.

    Attributes:
        psi: ``psi(x, eta, covariates)`` → ``(m,)`` individual parameters of one patient
            (``eta``: ``(k,)``; ``covariates``: that patient's scalars).
        predict: ``predict(psi)`` with ``psi`` ``(n_patients, m)`` → ``(f, status)``,
            ``f`` ``(n_patients, n_obs)`` on the likelihood's scale, ``status`` 0 where the
            solve succeeded. Must support ``jax.jvp`` (forward mode).
        variance: ``variance(x, f, output)`` → residual variance of one patient's rows
            ``(n_obs,)`` (on the likelihood's scale).
        omega: ``omega(x)`` → Ω ``(k, k)``.
        method: ``"focei"`` or ``"laplace"``.
    """

    psi: Callable
    predict: Callable
    variance: Callable
    omega: Callable
    method: str = "focei"

    def __hash__(self):
        return id(self)

    def __eq__(self, other):
        return self is other


# -- one patient, on the Taylor model -------------------------------------------------------------
def _surrogate(problem, x, eta, patient, expansion):
    """f̃ of one patient at (x, η), from the expansion ``(f̂, J, T, ψ̂)``."""
    f_hat, jac, hess, psi_hat = expansion
    delta = problem.psi(x, eta, patient["covariates"]) - psi_hat
    f = f_hat + jac @ delta
    if hess is not None:
        f = f + 0.5 * jnp.einsum("oab,a,b->o", hess, delta, delta)
    return f


def _data_terms(problem, x, f, patient):
    """``(uncensored, censored)``: per-row −2 log-likelihood pieces without 2π, masked."""
    variance = problem.variance(x, f, patient["output"])
    is_data, censored = patient["is_data"], patient["censored"] & patient["is_data"]
    observed = is_data & ~censored
    variance = jnp.where(is_data, variance, 1.0)
    residual = jnp.where(observed, patient["value"] - f, 0.0)
    uncensored = jnp.where(observed, jnp.log(variance) + residual**2 / variance, 0.0)
    z = jnp.where(censored, (patient["lloq"] - f) / jnp.sqrt(variance), 0.0)
    blq = jnp.where(censored, -2.0 * log_ndtr(z), 0.0)
    return uncensored, blq, variance


def _prior_terms(problem, x, eta):
    omega = problem.omega(x)
    chol = jnp.linalg.cholesky(omega)
    w = jax.scipy.linalg.solve_triangular(chol, eta, lower=True)
    return jnp.sum(w**2) + 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))


def joint(problem, x, eta, patient, expansion):
    """Jᵢ(η): −2 log p(yᵢ, η) of one patient without 2π constants (module docstring)."""
    f = _surrogate(problem, x, eta, patient, expansion)
    uncensored, blq, _ = _data_terms(problem, x, f, patient)
    return jnp.sum(uncensored) + jnp.sum(blq) + _prior_terms(problem, x, eta)


def _half_hessian(problem, x, eta, patient, expansion, method, blq=True):
    """Hᵢ of the module docstring (FOCE-I's expected information, or half Laplace's Hessian)."""
    if method == "laplace":
        return 0.5 * jax.hessian(lambda e: joint(problem, x, e, patient, expansion))(eta)
    omega_inv = jnp.linalg.inv(problem.omega(x))

    def rows(e):
        f = _surrogate(problem, x, e, patient, expansion)
        return f, problem.variance(x, f, patient["output"])

    g, v = jax.jacfwd(rows)(eta)
    _, _, variance = _data_terms(problem, x, _surrogate(problem, x, eta, patient, expansion), patient)
    observed = (patient["is_data"] & ~patient["censored"])[:, None]
    g = jnp.where(observed, g, 0.0)
    v = jnp.where(observed, v, 0.0)
    information = (g / variance[:, None]).T @ g + 0.5 * (v / variance[:, None] ** 2).T @ v

    def censored_part(e):
        f = _surrogate(problem, x, e, patient, expansion)
        return jnp.sum(_data_terms(problem, x, f, patient)[1])

    if not blq:  # static: no BLQ row in the data, so no term to differentiate (compiles faster)
        return omega_inv + information
    return omega_inv + information + 0.5 * jax.hessian(censored_part)(eta)


def patient_ofv(problem, x, eta, patient, expansion, method, blq=True):
    """``(OFVᵢ, Hᵢ)`` at (x, η) (η the mode); OFVᵢ without 2π constants."""
    h = _half_hessian(problem, x, eta, patient, expansion, method, blq)
    sign, logdet = jnp.linalg.slogdet(h)
    return joint(problem, x, eta, patient, expansion) + jnp.where(sign > 0, logdet, jnp.inf), h


def patient_gradient(problem, x, eta, patient, expansion, method, third, blq=True):
    """``(OFVᵢ, dOFVᵢ/dx, Hᵢ)``: the total derivative, the mode followed by implicit differentiation.

    ``third`` (``(m,)``) is ∇_ψ Σⱼ cⱼ tr(M ∂²fⱼ/∂ψ²) from ``_third_order``: the part of
    ∇ log det Hᵢ that needs third derivatives of the predictions, which the quadratic Taylor
    model lacks (zero for FOCE-I without BLQ rows, whose Hᵢ holds first derivatives only).
    """
    (ofv, h), (d_x, d_eta) = jax.value_and_grad(patient_ofv, argnums=(1, 2), has_aux=True)(
        problem, x, eta, patient, expansion, method, blq)
    covariates = patient["covariates"]
    d_x = d_x + 0.5 * jax.jacfwd(problem.psi, argnums=0)(x, eta, covariates).T @ third
    d_eta = d_eta + 0.5 * jax.jacfwd(problem.psi, argnums=1)(x, eta, covariates).T @ third
    a = jax.hessian(joint, argnums=2)(problem, x, eta, patient, expansion)
    lam = jnp.linalg.solve(a, d_eta)
    correction = jax.grad(
        lambda xx: jnp.dot(jax.lax.stop_gradient(lam), jax.grad(joint, argnums=2)(problem, xx, eta, patient, expansion))
    )(x)
    return ofv, d_x - correction, h


def _third_order_weights(problem, x, eta, patient, expansion, method, blq=True):
    """``(c, W)`` of one patient: cⱼ = ∂ℓⱼ/∂fⱼ of the rows whose ∂²f enters Hᵢ (every row for
    Laplace, the BLQ rows for FOCE-I), and W with WWᵀ = M = E Hᵢ⁻¹ Eᵀ, E = ∂ψ/∂η."""
    f_hat = expansion[0]

    def rows(f):
        uncensored, blq, _ = _data_terms(problem, x, f, patient)
        return jnp.sum(blq) + (jnp.sum(uncensored) if method == "laplace" else 0.0)

    c = jax.grad(rows)(f_hat)
    h = _half_hessian(problem, x, eta, patient, expansion, method, blq)
    e = jax.jacfwd(problem.psi, argnums=1)(x, eta, patient["covariates"])
    m = e @ jnp.linalg.solve(h, e.T)
    values, vectors = jnp.linalg.eigh(0.5 * (m + m.T))
    return c, vectors * jnp.sqrt(jnp.maximum(values, 0.0))


def _third_order(problem, psi_hat, c, w):
    """∇_ψ Σⱼ cⱼ Σᵣ ∂²fⱼ/∂wᵣ² per patient, ``(n_patients, m)``: ``m²`` third-order forward-mode
    directions through the model (each patient along its own wᵣ)."""
    def predict(psi):
        return problem.predict(psi)[0]

    def weighted_second(delta):
        psi = psi_hat + delta

        def along(direction):
            first = lambda p: jax.jvp(predict, (p,), (direction,))[1]  # noqa: E731
            return jax.jvp(first, (psi,), (direction,))[1]

        second = jax.vmap(along, in_axes=2)(w)  # (m, n, n_obs)
        return jnp.sum(c[None] * second, axis=(0, 2))

    return jax.jacfwd(weighted_second)(jnp.zeros(psi_hat.shape[1], dtype=psi_hat.dtype))


# -- every patient ------------------------------------------------------------------------------
def expand(problem, x, eta, data, *, order: int):
    """Predictions at η and their derivatives in ψ (``order`` 1: Jacobian; 2: and Hessian).

    Returns ``(expansion, status)``; ``expansion = (f̂, J, T or None, ψ̂)`` batched over patients.
    """
    psi_hat = jax.vmap(problem.psi, in_axes=(None, 0, 0))(x, eta, data.covariates)
    m = psi_hat.shape[1]

    def shifted(delta):
        f, status = problem.predict(psi_hat + delta)
        return f, status

    zero = jnp.zeros(m, dtype=psi_hat.dtype)
    f, status = shifted(zero)
    first = jax.jacfwd(lambda d: shifted(d)[0])
    jac = first(zero)  # (n, n_obs, m): ψ shifts every patient at once; patients are independent
    hess = jax.jacfwd(first)(zero) if order == 2 else None
    return (f, jac, hess, psi_hat), status


def _per_patient(fn, problem, x, eta, data, expansion, *args):
    tree = data._tree()
    return jax.vmap(lambda e, p, ex: fn(problem, x, e, p, ex, *args), in_axes=(0, 0, 0))(eta, tree, expansion)


def evaluate(problem, x, eta, data, method, third_order=None):
    """Per patient: OFVᵢ, dOFVᵢ/dx, Hᵢ (whose inverse is the conditional covariance of η)
    and the solver status, at the modes ``eta``.

    One forward-mode solve with second derivatives (``m(m+1)`` tangent directions), then
    dense algebra per patient; where Hᵢ holds second derivatives of the predictions (Laplace,
    or BLQ rows), a second solve with ``m²`` third-order directions (``_third_order``).
    ``third_order``: static; default from the method and whether ``data`` has BLQ rows (it
    must then be given when ``data`` is traced).
    """
    if third_order is None:
        third_order = method == "laplace" or has_blq(data)
    return _evaluate(problem, x, eta, data, method, third_order, has_blq(data))


def has_blq(data) -> bool:
    """Whether any data row is BLQ (M3), on the host: a static choice of what to compile."""
    return bool(np.any(np.asarray(data.censored) & np.asarray(data.is_data)))


@functools.partial(jax.jit, static_argnames=("problem", "method", "third_order", "blq"))
def _evaluate(problem, x, eta, data, method, third_order, blq=True):
    expansion, status = expand(problem, x, eta, data, order=2)
    if third_order:
        c, w = _per_patient(_third_order_weights, problem, x, eta, data, expansion, method, blq)
        third = _third_order(problem, expansion[3], c, w)
    else:
        third = jnp.zeros_like(expansion[3])
    tree = data._tree()
    ofv, grad, h = jax.vmap(lambda e, p, ex, t: patient_gradient(problem, x, e, p, ex, method, t, blq))(
        eta, tree, expansion, third)
    return ofv, grad, h, status


@functools.partial(jax.jit, static_argnames=("problem", "blq"))
def _inner_state(problem, x, eta, data, blq=True):
    """Jᵢ, ∇Jᵢ and the Gauss–Newton half-Hessian of every patient at ``eta``, one solve."""
    expansion, status = expand(problem, x, eta, data, order=1)

    def one(pr, xx, e, p, ex):
        value, grad = jax.value_and_grad(joint, argnums=2)(pr, xx, e, p, ex)
        return value, grad, _half_hessian(pr, xx, e, p, ex, "focei", blq)

    value, grad, h = _per_patient(one, problem, x, eta, data, expansion)
    finite = jnp.isfinite(value) & (status == 0)
    return jnp.where(finite, value, jnp.inf), grad, h, status


@dataclass
class InnerResult:
    """Modes of every patient's random effects.

    Attributes:
        eta: η̂, ``(n_patients, k)``.
        converged: per patient, the gradient fell below the tolerance.
        iterations: Newton iterations taken.
        gradient: the largest |∂Jᵢ/∂η| at the end, per patient.
    """

    eta: np.ndarray
    converged: np.ndarray
    iterations: int
    gradient: np.ndarray


def find_modes(problem, x, eta0, data, *, tol: float = 1e-6, max_iterations: int = 50,
               decrement_tol: float = 0.0) -> InnerResult:
    """η̂ᵢ = argmin Jᵢ for every patient at once: damped Gauss–Newton (Levenberg–Marquardt).

    Each iteration is one batched solve with first derivatives. A step is kept for a patient
    only if it lowers that patient's Jᵢ; otherwise its damping rises tenfold. Converged:
    max |∂Jᵢ/∂η| < ``tol`` (in −2 log-likelihood units per unit of η), or the Newton decrement
    ¼ ∇Jᵢᵀ Hᵢ⁻¹ ∇Jᵢ (the decrease of Jᵢ a further full step would bring) below
    ``decrement_tol``: with an adaptive ODE solver Jᵢ is smooth only to the solver's tolerance,
    so a gradient test alone can ask for more digits than the predictions have.
    """
    x = jnp.asarray(x)
    eta = jnp.asarray(eta0)
    blq = has_blq(data)
    value, grad, h, status = _inner_state(problem, x, eta, data, blq)
    damping = jnp.full(eta.shape[0], 1e-3)
    k = eta.shape[1]
    eye = jnp.eye(k)
    iterations = 0
    def converged(grad, h, value):
        decrement = 0.25 * jnp.sum(grad * jnp.linalg.solve(h, grad[..., None])[..., 0], axis=1)
        return ((jnp.max(jnp.abs(grad), axis=1) < tol) | (decrement < decrement_tol)) & jnp.isfinite(value)

    for iterations in range(1, max_iterations + 1):
        done = converged(grad, h, value)
        if bool(jnp.all(done)):
            iterations -= 1
            break
        scaled = h + damping[:, None, None] * (jnp.abs(jnp.diagonal(h, axis1=1, axis2=2))[:, :, None] * eye + eye)
        step = -jnp.linalg.solve(scaled, 0.5 * grad[..., None])[..., 0]
        step = jnp.where(done[:, None], 0.0, step)
        trial = eta + step
        t_value, t_grad, t_h, t_status = _inner_state(problem, x, trial, data, blq)
        # Near the mode a Newton step changes Jᵢ by less than its rounding; keep such steps
        # (the gradient, not the value, is the convergence test).
        better = (t_value <= value + 1e-13 * (1.0 + jnp.abs(value))) & jnp.isfinite(t_value) & ~done
        eta = jnp.where(better[:, None], trial, eta)
        value = jnp.where(better, t_value, value)
        grad = jnp.where(better[:, None], t_grad, grad)
        h = jnp.where(better[:, None, None], t_h, h)
        damping = jnp.where(better, jnp.maximum(damping * 0.2, 1e-9), jnp.minimum(damping * 10.0, 1e12))
    gmax = np.asarray(jnp.max(jnp.abs(grad), axis=1))
    return InnerResult(np.asarray(eta), np.asarray(converged(grad, h, value)), iterations, gmax)


def ofv_constant(data) -> float:
    """Σ nᵢ log 2π over the uncensored data rows: the constant NONMEM leaves out of its OFV."""
    rows = np.asarray(data.is_data) & ~np.asarray(data.censored)
    return float(rows.sum()) * _LOG_2PI
