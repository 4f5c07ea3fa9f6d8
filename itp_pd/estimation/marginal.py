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
derivatives at the expansion point (the second wherever one direction is a random effect's,
which is all that any quantity below uses: ``expand``). So OFVᵢ, its gradient in x and η, and ∇²Jᵢ are exact
there, and cost small dense algebra, not ODE solves. The gradient of OFV with respect to x
follows the mode by the implicit function theorem (Margossian et al. 2020 NeurIPS; Almquist
et al. 2015 J Pharmacokinet Pharmacodyn 42:191 for the FOCE-I case)::

    dOFVᵢ/dx = ∂ₓOFVᵢ − λᵢᵀ ∂ₓ∇_ηJᵢ,   λᵢ = (∇²_ηJᵢ)⁻¹ ∇_η OFVᵢ

Everything is batched over patients (``vmap``); no matrix of patients × random effects is
ever formed.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr

_LOG_2PI = float(np.log(2.0 * np.pi))
log = logging.getLogger(__name__)


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
        subset: batch sizes, largest first (e.g. ``(30, 8)``); where set, ``predict(psi,
            index)`` also solves just the patients ``index`` (traced, one of these sizes), and
            the inner search re-solves only the patients whose modes still move, in the
            smallest size that holds them, once they fit in one: on the 120-patient ITP trial
            the last 13 of 19 Newton iterations from η = 0 moved 1–19 patients, and each full
            iteration re-solved all 120. Each size is one more compiled program.
    """

    psi: Callable
    predict: Callable
    variance: Callable
    omega: Callable
    method: str = "focei"
    subset: tuple[int, ...] | None = None

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


def _focei_root(problem, x, eta, patient, expansion):
    """A with AᵀA = FOCE-I's Hᵢ without BLQ terms: the stacked rows [Lᵀ; gⱼᵀ/√Vⱼ; vⱼᵀ/(√2 Vⱼ)]
    (LLᵀ = Ω⁻¹), ``(k + 2 n_obs, k)``.

    log det Hᵢ is taken from the QR of A, not from Hᵢ: forming AᵀA squares A's condition
    number. On the ITP model one patient's ∂log f/∂η made Hᵢ ~1e19 along one direction and
    ~10 (Ω⁻¹) across it, beyond float64's 1e16, so ``slogdet(Hᵢ)`` saw a matrix that is not
    positive definite; A's own condition number (~1e9) is harmless.
    """
    def rows(e):
        f = _surrogate(problem, x, e, patient, expansion)
        return f, problem.variance(x, f, patient["output"])

    g, v = jax.jacfwd(rows)(eta)
    _, _, variance = _data_terms(problem, x, _surrogate(problem, x, eta, patient, expansion), patient)
    observed = (patient["is_data"] & ~patient["censored"])[:, None]
    g = jnp.where(observed, g / jnp.sqrt(variance)[:, None], 0.0)
    v = jnp.where(observed, v / (jnp.sqrt(2.0) * variance[:, None]), 0.0)
    omega_inv = jnp.linalg.inv(problem.omega(x))
    root = jnp.linalg.cholesky(0.5 * (omega_inv + omega_inv.T)).T
    return jnp.concatenate([root, g, v], axis=0)


def _censored_half_hessian(problem, x, eta, patient, expansion):
    """½ ∇²_η of the BLQ (M3) terms, which have no Gauss–Newton form."""
    def censored_part(e):
        f = _surrogate(problem, x, e, patient, expansion)
        return jnp.sum(_data_terms(problem, x, f, patient)[1])

    return 0.5 * jax.hessian(censored_part)(eta)


def _half_hessian(problem, x, eta, patient, expansion, method, blq=True):
    """Hᵢ of the module docstring (FOCE-I's expected information, or half Laplace's Hessian)."""
    if method == "laplace":
        return 0.5 * jax.hessian(lambda e: joint(problem, x, e, patient, expansion))(eta)
    a = _focei_root(problem, x, eta, patient, expansion)
    h = a.T @ a
    if not blq:  # static: no BLQ row in the data, so no term to differentiate (compiles faster)
        return h
    return h + _censored_half_hessian(problem, x, eta, patient, expansion)


def _log_det(h):
    sign, logdet = jnp.linalg.slogdet(h)
    return jnp.where(sign > 0, logdet, jnp.inf)


def patient_ofv(problem, x, eta, patient, expansion, method, blq=True):
    """``(OFVᵢ, Hᵢ)`` at (x, η) (η the mode); OFVᵢ without 2π constants.

    For FOCE-I without BLQ rows log det Hᵢ comes from the QR of Hᵢ's square root
    (``_focei_root``); where Hᵢ holds second derivatives (Laplace, BLQ rows) it has none, and
    ``slogdet`` is used (+inf where Hᵢ is not positive definite)."""
    value = joint(problem, x, eta, patient, expansion)
    if method == "focei" and not blq:
        a = _focei_root(problem, x, eta, patient, expansion)
        r = jnp.linalg.qr(a, mode="r")
        return value + 2.0 * jnp.sum(jnp.log(jnp.abs(jnp.diagonal(r)))), a.T @ a
    h = _half_hessian(problem, x, eta, patient, expansion, method, blq)
    return value + _log_det(h), h


class Evaluation(NamedTuple):
    """One patient's (or, batched, every patient's) objective at (x, η) and its derivatives.

    ``ofv``: OFVᵢ (η taken as the mode); ``gradient``: dOFVᵢ/dx, the mode followed by implicit
    differentiation; ``h``: Hᵢ; ``sensitivity``: dη̂ᵢ/dx ``(k, p)``; ``joint``, ``joint_gradient``,
    ``joint_half_hessian``: Jᵢ, ∇_ηJᵢ and ½∇²_ηJᵢ (exact), for the inner search.
    """

    ofv: jax.Array
    gradient: jax.Array
    h: jax.Array
    sensitivity: jax.Array
    joint: jax.Array
    joint_gradient: jax.Array
    joint_half_hessian: jax.Array


def patient_gradient(problem, x, eta, patient, expansion, method, third, blq=True) -> Evaluation:
    """The ``Evaluation`` of one patient at (x, η): the total derivative of OFVᵢ, the mode
    followed by implicit differentiation, and the mode's own derivative.

    ``third`` (``(m,)``) is ∇_ψ Σⱼ cⱼ tr(M ∂²fⱼ/∂ψ²) from ``_third_order``: the part of
    ∇ log det Hᵢ that needs third derivatives of the predictions, which the quadratic Taylor
    model lacks (zero for FOCE-I without BLQ rows, whose Hᵢ holds first derivatives only).
    """
    (ofv, h), (d_x, d_eta) = jax.value_and_grad(patient_ofv, argnums=(1, 2), has_aux=True)(
        problem, x, eta, patient, expansion, method, blq)
    covariates = patient["covariates"]
    d_x = d_x + 0.5 * jax.jacfwd(problem.psi, argnums=0)(x, eta, covariates).T @ third
    d_eta = d_eta + 0.5 * jax.jacfwd(problem.psi, argnums=1)(x, eta, covariates).T @ third
    value, eta_grad = jax.value_and_grad(joint, argnums=2)(problem, x, eta, patient, expansion)
    a = jax.hessian(joint, argnums=2)(problem, x, eta, patient, expansion)
    cross = jax.jacfwd(lambda xx: jax.grad(joint, argnums=2)(problem, xx, eta, patient, expansion))(x)  # (k, p)
    lam = jnp.linalg.solve(a, d_eta)
    # dη̂/dx = −(∇²_ηJ)⁻¹ ∂ₓ∇_ηJ: how the mode moves with x, which predicts the next modes.
    return Evaluation(ofv, d_x - cross.T @ lam, h, -jnp.linalg.solve(a, cross), value, eta_grad, 0.5 * a)


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


def _third_order(problem, psi_hat, c, w, index=None):
    """∇_ψ Σⱼ cⱼ Σᵣ ∂²fⱼ/∂wᵣ² per patient, ``(n_patients, m)``: ``m²`` third-order forward-mode
    directions through the model (each patient along its own wᵣ)."""
    def predict(psi):
        return _predict(problem, psi, index)[0]

    def weighted_second(delta):
        psi = psi_hat + delta

        def along(direction):
            first = lambda p: jax.jvp(predict, (p,), (direction,))[1]  # noqa: E731
            return jax.jvp(first, (psi,), (direction,))[1]

        second = jax.vmap(along, in_axes=2)(w)  # (m, n, n_obs)
        return jnp.sum(c[None] * second, axis=(0, 2))

    return jax.jacfwd(weighted_second)(jnp.zeros(psi_hat.shape[1], dtype=psi_hat.dtype))


# -- every patient ------------------------------------------------------------------------------
def _predict(problem, psi, index):
    return problem.predict(psi) if index is None else problem.predict(psi, index)


def _take(data, index):
    """The patients ``index`` of ``data`` (``None``: all of them)."""
    return data if index is None else jax.tree.map(lambda leaf: leaf[index], data)


def expand(problem, x, eta, data, *, order: int, index=None):
    """Predictions at η and their derivatives in ψ (``order`` 1: Jacobian; 2: and Hessian).

    Returns ``(expansion, status)``; ``expansion = (f̂, J, T or None, ψ̂)`` batched over patients.
    ``index``: ``data`` and ``eta`` are the patients ``index`` of the problem (``subset``).

    One solve gives everything (the primal rides along as ``has_aux``). With ``order`` 2, T is
    exact wherever one of its two directions lies in the span of the random effects,
    E = ∂ψ/∂η, and zero on the block of directions outside it (``_restricted_hessian``): every
    quantity of the objective, its gradient in x and the mode's sensitivity differentiates f
    at least once in η (through ∂f/∂η, or ∇²_ηJ), so that block is never used, and skipping it
    costs 1 + k + m + mk forward-mode lanes instead of 1 + 2m + m² (ITP model, m = 4, k = 3:
    20 instead of 25, and one solve instead of the three that f̂, J and T took apart).
    """
    psi_hat = jax.vmap(problem.psi, in_axes=(None, 0, 0))(x, eta, data.covariates)
    m = psi_hat.shape[1]
    zero = jnp.zeros(m, dtype=psi_hat.dtype)

    def solve(delta):  # ψ̂ + δ for every patient: patients are independent, so one δ shifts all
        f, status = _predict(problem, psi_hat + delta, index)
        return f, (f, status)

    if order == 1:
        jac, (f, status) = jax.jacfwd(solve, has_aux=True)(zero)
        return (f, jac, None, psi_hat), status
    e = jax.vmap(jax.jacfwd(problem.psi, argnums=1), in_axes=(None, 0, 0))(x, eta, data.covariates)  # (n, m, k)

    def along_eta(delta):
        def solve_eta(a):
            return solve(delta + jnp.einsum("nmk,k->nm", e, a))

        je, (f, status) = jax.jacfwd(solve_eta, has_aux=True)(jnp.zeros(e.shape[2], dtype=psi_hat.dtype))
        return (f, je), (f, status)

    (jac, tje), (f, status) = jax.jacfwd(along_eta, has_aux=True)(zero)
    # tje[n, o, k, a] = ∂(J E)ₖ/∂ψₐ = (T E)ₐₖ
    return (f, jac, _restricted_hessian(jnp.swapaxes(tje, 2, 3), e), psi_hat), status


def _restricted_hessian(te, e):
    """The symmetric T̃ with T̃(u, v) = T(u, v) whenever u or v lies in span E, and zero on
    the directions orthogonal to it, from TE (``(n, n_obs, m, k)``) and E (``(n, m, k)``):
    T̃ = TE·E⁺ + (TE·E⁺)ᵀ − E⁺ᵀ(EᵀTE)E⁺, E⁺ = (EᵀE)⁻¹Eᵀ. (For u = Ea: uᵀT̃v = aᵀEᵀTv, since
    E⁺E = I; for u, v ⟂ span E every term vanishes.)"""
    pinv = jnp.linalg.solve(jnp.einsum("nak,nal->nkl", e, e), jnp.swapaxes(e, 1, 2))  # (n, k, m)
    a = jnp.einsum("noak,nkb->noab", te, pinv)
    ete = jnp.einsum("nak,noal->nokl", e, te)
    return a + jnp.swapaxes(a, 2, 3) - jnp.einsum("nka,nokl,nlb->noab", pinv, ete, pinv)


def _per_patient(fn, problem, x, eta, data, expansion, *args):
    tree = data._tree()
    return jax.vmap(lambda e, p, ex: fn(problem, x, e, p, ex, *args), in_axes=(0, 0, 0))(eta, tree, expansion)


def evaluate(problem, x, eta, data, method, third_order=None, *, sensitivity=False):
    """Per patient: OFVᵢ, dOFVᵢ/dx, Hᵢ (whose inverse is the conditional covariance of η)
    and the solver status, at the modes ``eta``; with ``sensitivity``, also dη̂ᵢ/dx
    (``(n_patients, k, p)``).

    One forward-mode solve with second derivatives (``k + m + mk`` tangent directions, ``expand``), then
    dense algebra per patient; where Hᵢ holds second derivatives of the predictions (Laplace,
    or BLQ rows), a second solve with ``m²`` third-order directions (``_third_order``).
    ``third_order``: static; default from the method and whether ``data`` has BLQ rows (it
    must then be given when ``data`` is traced).
    """
    if third_order is None:
        third_order = method == "laplace" or has_blq(data)
    out, status = _evaluate(problem, x, eta, data, method, third_order, has_blq(data))
    if sensitivity:
        return out.ofv, out.gradient, out.h, status, out.sensitivity
    return out.ofv, out.gradient, out.h, status


def has_blq(data) -> bool:
    """Whether any data row is BLQ (M3), on the host: a static choice of what to compile."""
    return bool(np.any(np.asarray(data.censored) & np.asarray(data.is_data)))


@functools.partial(jax.jit, static_argnames=("problem", "method", "third_order", "blq"))
def _evaluate(problem, x, eta, data, method, third_order, blq=True, index=None):
    # index: eta are the patients ``index`` of data (MarginalProblem.subset), else every one.
    data = _take(data, index)
    expansion, status = expand(problem, x, eta, data, order=2, index=index)
    if third_order:
        c, w = _per_patient(_third_order_weights, problem, x, eta, data, expansion, method, blq)
        third = _third_order(problem, expansion[3], c, w, index)
    else:
        third = jnp.zeros_like(expansion[3])
    tree = data._tree()
    out = jax.vmap(lambda e, p, ex, t: patient_gradient(problem, x, e, p, ex, method, t, blq))(
        eta, tree, expansion, third)
    return out, status


def _where_positive(exact, fallback):
    """``exact`` (one k×k half-Hessian) where it is positive definite, else ``fallback``."""
    positive = jnp.linalg.eigvalsh(exact)[0] > 1e-8 * jnp.max(jnp.abs(jnp.diagonal(fallback)))
    return jnp.where(positive, exact, fallback)


@functools.partial(jax.jit, static_argnames=("problem", "blq", "newton"))
def _inner_state(problem, x, eta, data, blq=True, newton=False, index=None):
    """Jᵢ, ∇Jᵢ and the half-Hessian of every patient at ``eta``, one solve: Gauss–Newton's
    (first derivatives), or with ``newton`` the exact one where it is positive definite
    (second derivatives; Gauss–Newton's elsewhere). ``index``: ``eta`` are those patients."""
    data = _take(data, index)
    expansion, status = expand(problem, x, eta, data, order=2 if newton else 1, index=index)

    def one(pr, xx, e, p, ex):
        value, grad = jax.value_and_grad(joint, argnums=2)(pr, xx, e, p, ex)
        gauss_newton = _half_hessian(pr, xx, e, p, ex, "focei", blq)
        if not newton:
            return value, grad, gauss_newton
        return value, grad, _where_positive(_half_hessian(pr, xx, e, p, ex, "laplace", blq), gauss_newton)

    value, grad, h = _per_patient(one, problem, x, eta, data, expansion)
    finite = jnp.isfinite(value) & (status == 0)
    return jnp.where(finite, value, jnp.inf), grad, h, status


@dataclass
class InnerResult:
    """Modes of every patient's random effects.

    Attributes:
        eta: η̂, ``(n_patients, k)``.
        converged: per patient, the gradient fell below the tolerance (or the search reached
            the solver's noise, see ``find_modes``).
        iterations: Newton iterations taken (each one batched solve).
        gradient: the largest |∂Jᵢ/∂η| at the end, per patient.
        evaluation: with ``modes_and_evaluation``, the ``Evaluation`` at η̂ and the solver
            status, ``(Evaluation, status)``; else None.
        solves: batched model solves made.
    """

    eta: np.ndarray
    converged: np.ndarray
    iterations: int
    gradient: np.ndarray
    evaluation: tuple | None = None
    solves: int = 0


@dataclass
class _Search:
    """The state of the damped Newton search of every patient (``_search``)."""

    eta: jax.Array
    value: jax.Array
    grad: jax.Array
    h: jax.Array  # half the Hessian model of J
    payload: object  # whatever the state function returns besides, per patient
    damping: jax.Array
    nu: jax.Array
    stalled: jax.Array
    iterations: int = 0
    converged: jax.Array | None = None  # set when the search ends

    def decrement(self):
        return 0.25 * jnp.sum(self.grad * jnp.linalg.solve(self.h, self.grad[..., None])[..., 0], axis=1)


def _start(state, eta):
    value, grad, h, payload = state(eta)
    n = eta.shape[0]
    return _Search(eta, value, grad, h, payload, jnp.full(n, 1e-3), jnp.full(n, 2.0), jnp.zeros(n, dtype=bool))


def _select(better, new, old):
    """Per patient (leading axis), ``new`` where ``better`` else ``old``, over a pytree."""
    return jax.tree.map(lambda a, b: jnp.where(better.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), new, old)


def _active_index(active, sizes):
    """The patients still searching, padded to the smallest of ``sizes`` that holds them by
    repeating the first (their results are written twice, identically); None when none holds
    them (solve them all)."""
    where = np.flatnonzero(active)
    fitting = [size for size in (sizes or ()) if where.size <= size < active.size]
    if not fitting or where.size == 0:
        return None
    size = min(fitting)
    return jnp.asarray(np.concatenate([where, np.full(size - where.size, where[0])]))


def _trial_state(state, search, trial, active, sizes):
    """``state(trial)`` of every patient, or, when few still search, of those only (the others
    keep their current state, which the search will not use: they are done)."""
    index = _active_index(active, sizes)
    if index is None:
        return state(trial)
    sub = state(trial[index], index=index)
    current = (search.value, search.grad, search.h, search.payload)
    return jax.tree.map(lambda full, part: full.at[index].set(part), current, tuple(sub))


GIVE_UP_DAMPING = 1e10  # Levenberg–Marquardt damping beyond which a patient's search stops (``_search``)


def _search(state, search, chol, *, tol, decrement_tol, noise, max_iterations, max_step_sd, subset=None):
    """Levenberg–Marquardt iterations of every patient from ``search`` (``find_modes``) with
    the state function ``state(eta, index=None) -> (J, ∇J, ½ Hessian model, payload)``, at most
    ``max_iterations`` of them; returns the final ``_Search``. ``subset``: batch sizes; once the
    patients still searching fit in one, ``state`` is asked for those only
    (``MarginalProblem.subset``)."""
    k = search.eta.shape[1]
    eye = jnp.eye(k)

    def converged(s):
        return (((jnp.max(jnp.abs(s.grad), axis=1) < tol) | (s.decrement() < decrement_tol) | s.stalled)
                & jnp.isfinite(s.value))

    active, tail = [], np.array([], dtype=int)
    for _ in range(max_iterations):
        done = converged(search)
        # A patient whose damping passed GIVE_UP_DAMPING takes steps 1e-10 of Newton's and still
        # cannot lower Jᵢ: its derivatives are wrong there (seen on the ITP model: |∂Jᵢ/∂η| 6e4,
        # μ 1e15, 40 iterations). It stops, not converged, instead of running to max_iterations.
        stopped = done | (search.damping >= GIVE_UP_DAMPING)
        still = ~np.asarray(stopped)  # one transfer to the host per iteration
        active.append(int(still.sum()))
        if active[-1] == 0:
            break
        tail = np.flatnonzero(still)  # the patients of the last iteration: the slowest
        h = search.h
        scaled = h + search.damping[:, None, None] * (jnp.abs(jnp.diagonal(h, axis1=1, axis2=2))[:, :, None] * eye + eye)
        step = -jnp.linalg.solve(scaled, 0.5 * search.grad[..., None])[..., 0]
        sd = jnp.linalg.norm(jax.scipy.linalg.solve_triangular(chol, step.T, lower=True), axis=0)
        step = step * jnp.minimum(1.0, max_step_sd / jnp.maximum(sd, 1e-300))[:, None]
        step = jnp.where(stopped[:, None], 0.0, step)
        # J(η + s) ≈ J + ∇Jᵀs + sᵀHs (H is half the Hessian model of J).
        predicted = -(jnp.sum(search.grad * step, axis=1) + jnp.einsum("na,nab,nb->n", step, h, step))
        trial = search.eta + step
        t_value, t_grad, t_h, t_payload = _trial_state(state, search, trial, still, subset)
        value = search.value
        # Near the mode a Newton step changes Jᵢ by less than its rounding; keep such steps
        # (the gradient, not the value, is the convergence test).
        better = (t_value <= value + 1e-13 * (1.0 + jnp.abs(value))) & jnp.isfinite(t_value) & ~stopped
        rho = (value - t_value) / jnp.maximum(predicted, 1e-300)
        shrink = jnp.maximum(1.0 / 3.0, 1.0 - (2.0 * jnp.clip(rho, 0.0, 1.0) - 1.0) ** 3)
        # ... but a step that gained less than 1e-4 of what the model promised is a failure for
        # the damping and the noise rule alike, kept or not (the usual trust-region threshold):
        # else a patient whose derivatives are wrong, with steps too short to change Jᵢ, stays
        # "successful" while Nielsen's factor (2 at ρ = 0) lets its damping creep up.
        failed = ~better | (rho < 1e-4)
        search = _Search(
            eta=_select(better, trial, search.eta), value=_select(better, t_value, value),
            grad=_select(better, t_grad, search.grad), h=_select(better, t_h, h),
            payload=_select(better, t_payload, search.payload),
            damping=jnp.minimum(jnp.where(failed, search.damping * search.nu,
                                          jnp.maximum(search.damping * shrink, 1e-12)), 1e12),
            nu=jnp.where(failed, search.nu * 2.0, 2.0),
            # The noise rule: a failed step, while the undamped Newton step would gain less than
            # the noise of Jᵢ, means the mode is found as precisely as Jᵢ allows. (A failure
            # with a large decrement is a wrong model of Jᵢ: more damping, and in the end
            # GIVE_UP_DAMPING, not convergence.)
            stalled=search.stalled | (failed & ~stopped & (search.decrement() < noise * (1.0 + jnp.abs(value)))),
            iterations=search.iterations + 1)
    search.converged = converged(search)
    if log.isEnabledFor(logging.DEBUG):
        log.debug("inner search: patients not yet converged before each iteration %s; the last ones (index: J, "
                  "max |dJ/deta|, damping): %s", active,
                  {int(i): (float(search.value[i]), float(jnp.max(jnp.abs(search.grad[i]))), float(search.damping[i]))
                   for i in tail[:3]})
    return search


def _inner_states(problem, x, data, blq, newton):
    """``_inner_state`` as the state function of ``_search`` (status as its payload)."""
    return functools.partial(_inner_state, problem, x, data=data, blq=blq, newton=newton)


def find_modes(problem, x, eta0, data, *, tol: float = 1e-6, max_iterations: int = 50,
               decrement_tol: float = 0.0, noise: float = 1e-6, gauss_newton_iterations: int = 2,
               max_step_sd: float = 2.0) -> InnerResult:
    """η̂ᵢ = argmin Jᵢ for every patient at once: damped Newton (Levenberg–Marquardt).

    The first ``gauss_newton_iterations`` iterations use the Gauss–Newton Hessian (one batched
    solve with first derivatives each), the later ones the exact Hessian where it is positive
    definite (second derivatives, about 4× the cost): Gauss–Newton alone converges only
    linearly where the residuals times the predictions' curvature matter, and on the ITP model
    left a third of the patients unconverged after 50 iterations (steps overshooting 2× for
    many iterations), while exact Newton converged every one in 13 from η = 0.

    A step is kept for a patient only if it lowers that patient's Jᵢ. The damping μ follows
    Nielsen's rule (Madsen, Nielsen & Tingleff 2004, *Methods for non-linear least squares
    problems*, §3.2): after a kept step μ ← μ·max(⅓, 1 − (2ρ − 1)³), ρ the actual over the
    predicted decrease; after a rejected one μ ← μ·ν, ν ← 2ν. A step is shortened to at most
    ``max_step_sd`` standard deviations of Ω (‖L⁻¹Δη‖, LLᵀ = Ω), so a start far from the mode
    cannot throw a patient into a region where the model is extreme.

    Converged: max |∂Jᵢ/∂η| < ``tol`` (in −2 log-likelihood units per unit of η), or the Newton
    decrement ¼ ∇Jᵢᵀ Hᵢ⁻¹ ∇Jᵢ (the decrease of Jᵢ a further full step would bring) below
    ``decrement_tol``, or a step failing (gaining less than 1e-4 of its promise) while that
    decrement is below ``noise``·(1 + |Jᵢ|): with an adaptive ODE solver Jᵢ is smooth only to
    about the solver's relative tolerance (measured on the ITP model at rtol 1e-6: changes of
    6e-7·|Jᵢ| against the local model), so the mode is then as precise as the predictions
    allow. A patient whose damping passes ``GIVE_UP_DAMPING`` (1e10) stops, not converged: its
    steps no longer lower Jᵢ although a Newton step promises more than the noise, so its
    derivatives are wrong there, and the caller must not use it.
    """
    return _modes(problem, x, eta0, data, None, tol=tol, max_iterations=max_iterations, decrement_tol=decrement_tol,
                  noise=noise, gauss_newton_iterations=gauss_newton_iterations, max_step_sd=max_step_sd)


def modes_and_evaluation(problem, x, eta0, data, method, *, tol: float = 1e-6, max_iterations: int = 50,
                         decrement_tol: float = 0.0, noise: float = 1e-6, gauss_newton_iterations: int = 2,
                         max_step_sd: float = 2.0) -> InnerResult:
    """``find_modes``, with the exact-Hessian iterations taken on ``evaluate``'s expansion, so
    that the objective and its gradient at η̂ come with the last iteration instead of one more
    solve with second derivatives (``InnerResult.evaluation``). From a start that is already
    close (the modes predicted by ``dη̂/dx``), ``gauss_newton_iterations=0`` makes an
    evaluation cost two such solves: one at the start, one after a Newton step."""
    return _modes(problem, x, eta0, data, method, tol=tol, max_iterations=max_iterations, decrement_tol=decrement_tol,
                  noise=noise, gauss_newton_iterations=gauss_newton_iterations, max_step_sd=max_step_sd)


def _modes(problem, x, eta0, data, method, *, tol, max_iterations, decrement_tol, noise, gauss_newton_iterations,
           max_step_sd):
    x = jnp.asarray(x)
    blq = has_blq(data)
    chol = jnp.linalg.cholesky(problem.omega(x))
    settings = dict(tol=tol, decrement_tol=decrement_tol, noise=noise, max_step_sd=max_step_sd,
                    subset=problem.subset)
    eta, iterations, solves = jnp.asarray(eta0), 0, 0
    if gauss_newton_iterations > 0:
        gauss_newton = _inner_states(problem, x, data, blq, False)
        search = _search(gauss_newton, _start(gauss_newton, eta), chol,
                         max_iterations=min(gauss_newton_iterations, max_iterations), **settings)
        eta, iterations, solves = search.eta, search.iterations, search.iterations + 1
        if method is None and bool(jnp.all(search.converged)):
            return InnerResult(np.asarray(search.eta), np.asarray(search.converged), iterations,
                               np.asarray(jnp.max(jnp.abs(search.grad), axis=1)), None, solves)
    if method is None:
        state = _inner_states(problem, x, data, blq, True)
    else:
        third_order = method == "laplace" or blq

        def state(eta, index=None):
            out, status = _evaluate(problem, x, eta, data, method, third_order, blq, index)
            finite = jnp.isfinite(out.joint) & (status == 0)
            hm = jax.vmap(_where_positive)(out.joint_half_hessian, out.h)
            return jnp.where(finite, out.joint, jnp.inf), out.joint_gradient, hm, (out, status)

    search = _search(state, _start(state, eta), chol, max_iterations=max_iterations - iterations, **settings)
    gmax = np.asarray(jnp.max(jnp.abs(search.grad), axis=1))
    return InnerResult(np.asarray(search.eta), np.asarray(search.converged), iterations + search.iterations, gmax,
                       search.payload if method is not None else None, solves + 1 + search.iterations)


def ofv_constant(data) -> float:
    """Σ nᵢ log 2π over the uncensored data rows: the constant NONMEM leaves out of its OFV."""
    rows = np.asarray(data.is_data) & ~np.asarray(data.censored)
    return float(rows.sum()) * _LOG_2PI
