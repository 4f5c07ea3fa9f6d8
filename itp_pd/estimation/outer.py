"""The outer problem: minimise the population OFV by BFGS with exact gradients, then the
covariance step.

Each objective evaluation re-finds every patient's mode and returns the exact total gradient
(``marginal.modes_and_evaluation``), so the quasi-Newton method sees a smooth function with a
true gradient rather than NONMEM's finite differences. The search starts from the previous
modes moved by their derivative dη̂/dx (``predicted_shift``): measured on the 40-patient ITP
problem, 2 Newton iterations per evaluation instead of 5 from the previous modes alone.

**The search** (``bfgs``): BFGS started from the BHHH inverse Hessian, each step at most
``max_step`` long in every element of x (log units), and a backtracking line search on the
Armijo condition, first with the modes found loosely (``OuterSettings.search_inner_decrement``),
then again from where that search stopped with the modes to ``inner_decrement``. Not SciPy's BFGS: on the ITP model its line search spent more than six
minutes on one iteration's trial points, with no cap on how far they go.

**Convergence** (both reported): the largest |∂OFV/∂x| on the unconstrained scale below
``gtol`` (in OFV units per unit of log parameter), or the estimate within ``se_tol`` of its
own standard errors of the optimum (``newton_distance``); and every patient's inner problem
converged at the estimate. The second criterion is scale-free and is the one an ODE model
meets: its gradient is exact only to the solver's tolerance, and with 120 patients whose OFVs
are ~10⁴ a gradient of 10⁻³ per log unit is below that noise, while 0.01 standard errors is a
statement about the estimate a pharmacometrician can use. The search also stops, not converged, when a line search cannot
lower the OFV or the OFV changed by less than ``ftol`` (relative) over three iterations: the
gradient is then noise, and the message says so.

**Covariance step** (NONMEM's ``$COV``, on the unconstrained scale, then the delta method):
R = ∇²OFV by central differences of the exact gradient; S = Σᵢ sᵢsᵢᵀ with sᵢ = dOFVᵢ/dx;
covariance R⁻¹SR⁻¹ (the sandwich, NONMEM's default), or 2R⁻¹. With OFV = −2 log L,
−∇² log L = R/2 and Σ∇log Lᵢ∇log Lᵢᵀ = S/4, so the sandwich (R/2)⁻¹(S/4)(R/2)⁻¹ = R⁻¹SR⁻¹.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field

import jax.numpy as jnp
import numpy as np

from .marginal import modes_and_evaluation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OuterSettings:
    """Settings of the FOCE-I/Laplace estimator.

    Attributes:
        max_iterations: BFGS iterations at most.
        gtol: convergence when max |∂OFV/∂x| falls below this (OFV units per unit of x).
        inner_tol: each patient's mode: max |∂Jᵢ/∂η| below this.
        inner_decrement: ... or its Newton decrement (OFV units a further step would gain)
            below this. 1e-9 keeps the modes precise enough for BFGS to meet ``gtol`` (1e-6
            left the PK example's line search at |dOFV/dx| 0.03, "precision loss"); loosen it
            only for a model whose solver tolerance makes the OFV noisier than that.
        search_inner_decrement: the modes' decrement tolerance while BFGS is on its way (the
            search then restarts from where it stopped with ``inner_decrement``, which alone
            decides convergence and serves the covariance step). Far from the optimum the
            gradient needs no ten digits, and the last 1e-6 → 1e-9 costs most where it is
            dearest: on the 120-patient ITP trial one stiff patient took 20 more Newton
            iterations (each as slow as a full solve of the stiffest patients) at
            |∂Jᵢ/∂η| 0.008. A larger value than ``inner_decrement`` turns the first phase on.
        inner_noise: ... or a step rejected although it promised less than this fraction of
            Jᵢ: where Jᵢ is only as smooth as an adaptive ODE solver makes it (about its rtol).
        inner_iterations: (Gauss–)Newton iterations of the inner problem at most, per evaluation.
        covariance: ``"sandwich"`` (R⁻¹SR⁻¹, NONMEM's default), ``"r"`` (2R⁻¹) or ``"none"``.
        fd_step: step of the central differences that give R, on the unconstrained scale.
        max_step: longest BFGS step in any element of x (unconstrained: log units).
        ftol: the search stops when the OFV changed by less than this, relative, in each of
            the last three iterations.
        se_tol: converged also when the estimate is within this many standard errors of the
            optimum by the local quadratic model (``newton_distance``); 0 turns it off.
        hessian_start: BFGS's first inverse Hessian: ``"bhhh"`` ((S/2)⁻¹ of the patients'
            gradients) or ``"differences"`` (forward differences of the exact gradient at the
            start, p more evaluations, eigenvalues made positive). BHHH presumes mean-zero
            scores, true near the optimum only: at the 120-patient ITP trial's start every
            patient's score in log σ had the same sign (mean −64, against ~14 expected), so
            S/2 overstated σ's curvature about a hundredfold and BFGS moved σ by 0.007 in six
            iterations while its gradient stayed at −7,700 (from differences, the default:
            OFV 19,883 → 17,986 in 8 iterations; PK example: the same estimate, 28 evaluations
            against BHHH's 23).
    """

    max_iterations: int = 200
    gtol: float = 1e-3
    inner_tol: float = 1e-6
    inner_decrement: float = 1e-9
    search_inner_decrement: float = 1e-6
    inner_noise: float = 1e-6
    inner_iterations: int = 50
    covariance: str = "sandwich"
    fd_step: float = 1e-4
    max_step: float = 1.0
    ftol: float = 1e-10
    se_tol: float = 0.01
    hessian_start: str = "differences"


@dataclass
class CovarianceStep:
    """The covariance step on the unconstrained scale.

    ``ok`` is False, with ``message`` naming the matrix and why, when R is not positive
    definite or the covariance is not finite; ``covariance`` is then None.
    """

    ok: bool
    message: str
    r: np.ndarray | None = None
    s: np.ndarray | None = None
    covariance: np.ndarray | None = None
    kind: str = "sandwich"
    condition_number: float | None = None
    r_min_eigenvalue: float | None = None


@dataclass
class OuterResult:
    """The estimate and everything needed to judge it."""

    x: np.ndarray
    ofv: float
    gradient: np.ndarray
    patient_ofv: np.ndarray
    patient_gradient: np.ndarray
    eta: np.ndarray
    half_hessian: np.ndarray
    inner_converged: np.ndarray
    converged: bool
    message: str
    iterations: int
    evaluations: int
    solves: int = 0
    history: list = field(default_factory=list)
    covariance: CovarianceStep | None = None
    run_s: float = 0.0
    newton_distance: float = float("inf")
    sensitivity: np.ndarray | None = None  # dη̂ᵢ/dx at x, ``(n_patients, k, p)``: warm starts near x


def predicted_shift(problem, x, x_modes, sensitivity, max_sd: float = 1.0) -> np.ndarray:
    """The modes' first-order move from ``x_modes`` to ``x``, (dη̂/dx)·Δx per patient, shortened
    to at most ``max_sd`` standard deviations of Ω(x): a start for the inner problem that is
    off by O(Δx²) instead of O(Δx), so a warm start needs about one Newton step."""
    shift = np.einsum("nkp,p->nk", sensitivity, x - x_modes)
    chol = np.linalg.cholesky(np.asarray(problem.omega(jnp.asarray(x))))
    sd = np.linalg.norm(np.linalg.solve(chol, shift.T), axis=0)
    shift = shift * np.minimum(1.0, max_sd / np.maximum(sd, 1e-300))[:, None]
    return np.where(np.isfinite(shift), shift, 0.0)


class _Objective:
    """OFV(x) and its gradient, warm-starting each patient's mode from the last evaluation."""

    def __init__(self, problem, data, eta0, settings):
        self.problem, self.data, self.settings = problem, data, settings
        self.eta = np.asarray(eta0, dtype=float)
        self.eta_x = None  # the x at which ``eta`` are the modes, and their derivative there
        self.sensitivity = None
        self.evaluations = 0
        self.solves = 0  # batched model solves: each inner iteration, and each evaluation's expansion
        self.last = None
        self.x0 = None  # the start, for the log
        self.decrement = settings.inner_decrement  # the modes' tolerance now (``minimise``'s phases)
        self.inverse_hessian = None  # BFGS's latest, carried from one phase to the next

    def at(self, x, *, eta=None):
        x = np.asarray(x, dtype=float)
        if eta is None and self.last is not None and np.array_equal(x, self.last[0]):
            return self.last  # SciPy asks again for the point it starts from
        start = self.eta if eta is None else eta
        if eta is None and self.sensitivity is not None:
            start = self.eta + predicted_shift(self.problem, x, self.eta_x, self.sensitivity)
        # A warm start (the previous modes, moved by dη̂/dx) needs no Gauss–Newton phase.
        warm = eta is not None or self.sensitivity is not None
        started = time.perf_counter()
        inner = modes_and_evaluation(self.problem, x, start, self.data, self.problem.method,
                                     tol=self.settings.inner_tol, max_iterations=self.settings.inner_iterations,
                                     decrement_tol=self.decrement, noise=self.settings.inner_noise,
                                     gauss_newton_iterations=0 if warm else 2)
        evaluation, status = inner.evaluation
        ofv, grad, h, sensitivity = evaluation.ofv, evaluation.gradient, evaluation.h, evaluation.sensitivity
        self.evaluations += 1
        self.solves += inner.solves
        ofv, grad = np.asarray(ofv), np.asarray(grad)
        total = float(ofv.sum())
        ok = np.isfinite(total) and np.all(np.asarray(status) == 0) and np.all(np.isfinite(grad))
        if ok:
            self.eta, self.eta_x, self.sensitivity = inner.eta, x, np.asarray(sensitivity)
        self.last = (x, total if ok else np.inf, grad, ofv, inner, np.asarray(h), ok)
        # Per evaluation, for profiling a slow fit (logging at DEBUG): where the time goes.
        distance = float(np.linalg.norm(x - self.x0)) if self.x0 is not None else 0.0
        log.debug("evaluation %d: OFV %.4f, %.1f s, %d inner iterations, %d batched solves, %d modes not converged, "
                  "%d failed solves, |x - x0| %.3g, x %s", self.evaluations, total, time.perf_counter() - started,
                  inner.iterations, inner.solves, int(np.sum(~np.asarray(inner.converged))),
                  int(np.sum(np.asarray(status) != 0)), distance, np.array2string(x, precision=4, max_line_width=400))
        return self.last

    def warm_start(self):
        """The warm start of the next evaluation, to restore after a rejected trial point."""
        return self.eta, self.eta_x, self.sensitivity

    def restore(self, warm_start):
        self.eta, self.eta_x, self.sensitivity = warm_start

    def keep(self):
        """Where the search stands (the warm start and the last evaluation), for ``back``."""
        return self.warm_start(), self.last

    def back(self, kept):
        """Return to ``kept`` after evaluations elsewhere (trial points, differences) without
        evaluating its point again: its result is ``self.last`` once more."""
        warm, self.last = kept
        self.restore(warm)


def bhhh_inverse(patient_gradients) -> np.ndarray:
    """The start of BFGS's inverse Hessian: (S/2)⁻¹, S = Σᵢ sᵢsᵢᵀ of the patients' gradients
    sᵢ = dOFVᵢ/dx (Berndt, Hall, Hall & Hausman 1974). With OFV = −2 log L the expected
    Hessian of the OFV is twice the Fisher information and S estimates four times it, so S/2
    is the Hessian BFGS would otherwise have to learn, one iteration (a full evaluation) at a
    time, from the identity: the ITP model's parameters differ in curvature by orders of
    magnitude. A small ridge keeps it positive definite when a parameter moves no patient's
    OFV."""
    s = np.asarray(patient_gradients, dtype=float).T @ np.asarray(patient_gradients, dtype=float)
    ridge = 1e-8 * max(float(np.trace(s)) / max(s.shape[0], 1), 1e-12)
    inverse = np.linalg.inv(0.25 * (s + s.T) + ridge * np.eye(s.shape[0]))  # (S/2)⁻¹, symmetrised
    return 0.5 * (inverse + inverse.T)


def newton_distance(gradient, patient_gradients, inverse_hessian=None) -> float:
    """How far the optimum is from here in standard errors of the estimate: z with
    z² = ½ gᵀ R⁻¹ g, the Newton step −R⁻¹g measured in the metric of the asymptotic covariance
    2R⁻¹ (R the Hessian of the OFV, g its gradient); z² is also the OFV decrease the Newton
    step predicts. R⁻¹ is taken both as the BHHH (S/2)⁻¹ and, where given, as BFGS's inverse
    Hessian, and the larger z is returned: either alone can be optimistic away from the
    optimum."""
    g = np.asarray(gradient, dtype=float)
    candidates = [bhhh_inverse(patient_gradients)]
    if inverse_hessian is not None:
        candidates.append(np.asarray(inverse_hessian, dtype=float))
    z2 = max(0.5 * float(g @ m @ g) for m in candidates)
    return float(np.sqrt(max(z2, 0.0))) if np.isfinite(z2) else float("inf")


@dataclass
class _Search:
    x: np.ndarray
    iterations: int
    success: bool
    message: str
    distance: float = float("inf")  # newton_distance at x


def bfgs(objective, x0, settings: OuterSettings, callback=None, inverse_hessian=None) -> _Search:
    """Minimise ``objective`` (``_Objective``) from ``x0``; see the module docstring.

    ``callback(iteration, ofv, max_abs_gradient)`` after each iteration. ``inverse_hessian``:
    the start of BFGS's inverse Hessian (default BHHH's); the latest one is left in
    ``objective.inverse_hessian``."""
    x = np.asarray(x0, dtype=float)
    _, f, patient_gradients, _, _, _, ok = objective.at(x)
    if not ok:
        return _Search(x, 0, False, "the objective is not finite at the start")
    g = patient_gradients.sum(axis=0)
    h = bhhh_inverse(patient_gradients) if inverse_hessian is None else np.asarray(inverse_hessian, dtype=float)
    small_changes = 0
    distance = newton_distance(g, patient_gradients, h)  # at x: kept up to date at each step below
    for iteration in range(1, settings.max_iterations + 1):
        if np.max(np.abs(g)) < settings.gtol:
            return _Search(x, iteration - 1, True, "gradient criterion met", distance)
        if distance < settings.se_tol:
            return _Search(x, iteration - 1, True, f"the optimum is {distance:.2g} standard errors away "
                                                   f"(se_tol {settings.se_tol:g})", distance)
        direction = -h @ g
        if not g @ direction < 0:  # lost positive definiteness: start again from BHHH
            h = bhhh_inverse(patient_gradients)
            direction = -h @ g
        slope = float(g @ direction)
        alpha = min(1.0, settings.max_step / float(np.max(np.abs(direction))))
        here = objective.keep()
        while True:
            objective.back(here)
            _, f_trial, trial_gradients, _, inner, _, ok = objective.at(x + alpha * direction)
            # A patient whose mode was not found has no valid gradient (its implicit
            # derivative is taken at a point that is not a mode): such a point is not taken.
            ok = ok and bool(np.all(inner.converged))
            if ok and f_trial <= f + 1e-4 * alpha * slope:
                break
            # Backtrack: the minimum of the quadratic through f, the slope and f_trial, kept
            # within [0.1, 0.5] of the step (half the step where f_trial is not finite).
            shrink = 0.5
            if ok:
                shrink = float(np.clip(-slope * alpha / (2.0 * (f_trial - f - slope * alpha)), 0.1, 0.5))
            alpha *= shrink
            if alpha * float(np.max(np.abs(direction))) < 1e-10:
                objective.back(here)
                return _Search(x, iteration - 1, False, "the line search could not lower the OFV "
                                                        "(the gradient is not a descent direction at the "
                                                        "objective's precision)", distance)
        step = alpha * direction
        g_trial = trial_gradients.sum(axis=0)
        change = g_trial - g
        curvature = float(change @ step)
        if curvature > 1e-12 * float(np.linalg.norm(change) * np.linalg.norm(step)):
            rho = 1.0 / curvature
            v = np.eye(x.size) - rho * np.outer(step, change)
            h = v @ h @ v.T + rho * np.outer(step, step)
        objective.inverse_hessian = h
        small_changes = small_changes + 1 if f - f_trial <= settings.ftol * (1.0 + abs(f)) else 0
        x, f, g, patient_gradients = x + step, f_trial, g_trial, trial_gradients
        if callback is not None:
            callback(iteration, f, float(np.max(np.abs(g))))
        distance = newton_distance(g, patient_gradients, h)
        if small_changes >= 3 and np.max(np.abs(g)) >= settings.gtol and distance >= settings.se_tol:
            return _Search(x, iteration, False, f"the OFV changed by less than {settings.ftol:g} (relative) in "
                                                "each of the last 3 iterations", distance)
    if np.max(np.abs(g)) < settings.gtol:
        return _Search(x, settings.max_iterations, True, "gradient criterion met", distance)
    if distance < settings.se_tol:
        return _Search(x, settings.max_iterations, True, f"the optimum is {distance:.2g} standard errors away "
                                                         f"(se_tol {settings.se_tol:g})", distance)
    return _Search(x, settings.max_iterations, False, f"{settings.max_iterations} iterations (max_iterations)",
                   distance)


def minimise(problem, data, x0, eta0, settings: OuterSettings = OuterSettings(), *, progress=None) -> OuterResult:
    """Minimise the OFV over the unconstrained population vector from ``x0``.

    ``progress(iteration, ofv, max_abs_gradient)``, when given, is called after every BFGS
    iteration.
    """
    started = time.perf_counter()
    objective = _Objective(problem, data, eta0, settings)
    history = []

    def callback(iteration, ofv, max_abs_gradient):
        history.append(ofv)
        if progress is not None:
            progress(iteration, ofv, max_abs_gradient)

    objective.x0 = np.asarray(x0, dtype=float)
    x, iterations = objective.x0, 0
    loose = settings.search_inner_decrement > settings.inner_decrement
    if loose:
        objective.decrement = settings.search_inner_decrement
    start = None
    if settings.hessian_start == "differences":
        *_, inner, _, ok = objective.at(x)
        here = objective.keep()
        r, _ = gradient_differences(objective, x, inner.eta, settings.fd_step, central=False) if ok else (None, 0)
        if r is not None and np.all(np.isfinite(r)):
            start = positive_inverse(r)
        objective.back(here)  # BFGS starts from x's evaluation, not a repeat of it
    if loose:
        # Phase 1: loose modes on the way (OuterSettings.search_inner_decrement).
        search = bfgs(objective, x, settings, callback, start)
        start = objective.inverse_hessian if objective.inverse_hessian is not None else start
        log.debug("search with loose modes: %s after %d iterations", search.message, search.iterations)
        x, iterations = search.x, search.iterations
        objective.decrement, objective.last = settings.inner_decrement, None  # re-find every mode tightly
    # Phase 2 (or the only one): the modes to inner_decrement; this search's verdict is the fit's.
    # max_iterations counts both phases (with none left it still evaluates x and judges it).
    result = bfgs(objective, x, dataclasses.replace(settings, max_iterations=settings.max_iterations - iterations),
                  callback, start)
    result.iterations += iterations
    if not result.success and result.message.endswith("(max_iterations)"):  # the budget of both phases
        result.message = f"{settings.max_iterations} iterations (max_iterations)"
    x, total, grad, ofv, inner, h, ok = objective.at(result.x)
    sensitivity = objective.sensitivity if ok else None  # before the covariance step moves it
    gradient = grad.sum(axis=0)
    gmax = float(np.max(np.abs(gradient))) if gradient.size else 0.0
    inner_ok = bool(np.all(inner.converged))
    # The criterion the search met at result.x (the final evaluation repeats its point).
    met = gmax < settings.gtol or result.distance < settings.se_tol
    converged = bool(ok and inner_ok and met)
    if not ok:
        failed = int(np.sum(np.asarray(inner.evaluation[1]) != 0)) if inner.evaluation is not None else 0
        why = (f"{failed} patient(s)' ODE solves failed there; a solve that exceeds [model] solver max_steps "
               "fails: raise it, or start nearer" if failed else
               "every solve succeeded, so a patient's OFV or its gradient is not finite at its mode")
        message = f"not converged: the objective is not finite at the final estimate ({why})"
    elif not inner_ok:
        message = (f"the random-effect mode of {int((~inner.converged).sum())} patient(s) did not converge "
                   f"(largest |dJ/deta| {float(inner.gradient.max()):.3g} > {settings.inner_tol:g})")
    elif converged:
        met_by = "the gradient criterion" if gmax < settings.gtol else "the standard-error criterion"
        message = (f"converged ({met_by}): max |dOFV/dx| = {gmax:.3g} (gtol {settings.gtol:g}), the optimum "
                   f"{result.distance:.2g} standard errors away (se_tol {settings.se_tol:g})")
    else:
        message = (f"not converged: max |dOFV/dx| = {gmax:.3g} > gtol {settings.gtol:g} and the optimum "
                   f"{result.distance:.2g} standard errors away > se_tol {settings.se_tol:g}; {result.message}")
    out = OuterResult(x=x, ofv=total, gradient=gradient, patient_ofv=ofv, patient_gradient=grad, eta=inner.eta,
                      half_hessian=h, inner_converged=inner.converged, converged=converged, message=message,
                      iterations=int(result.iterations), evaluations=objective.evaluations, history=history,
                      newton_distance=float(result.distance), sensitivity=sensitivity)
    if settings.covariance != "none" and ok:
        out.covariance = covariance_step(objective, out, settings)
    out.run_s = time.perf_counter() - started
    out.evaluations = objective.evaluations
    out.solves = objective.solves
    return out


def gradient_differences(objective, x, eta, fd_step, *, central: bool):
    """``(R, None)``: ∇²OFV at ``x`` by differences of the exact gradient (central, or forward
    from the gradient at ``x``, ``objective.last``), symmetrised; ``(None, j)`` where the
    objective is not finite along element j. ``eta``: the modes at ``x``."""
    p = x.size
    r = np.zeros((p, p))
    # Each point's modes start from those at x moved by dη̂/dx (off by O(h²), not O(h)):
    # most patients are then converged at the first solve.
    sensitivity = objective.sensitivity if np.array_equal(objective.eta_x, x) else None
    base = objective.last[2].sum(axis=0) if not central else None
    for j in range(p):
        step = np.zeros(p)
        step[j] = fd_step
        grads = []
        for sign in (1.0, -1.0) if central else (1.0,):
            start = eta
            if sensitivity is not None:
                start = eta + predicted_shift(objective.problem, x + sign * step, x, sensitivity)
            _, total, grad, _, _, _, ok = objective.at(x + sign * step, eta=start)
            if not ok:
                return None, j
            grads.append(grad.sum(axis=0))
        r[:, j] = (grads[0] - grads[1]) / (2.0 * fd_step) if central else (grads[0] - base) / fd_step
    return 0.5 * (r + r.T), None


def positive_inverse(r) -> np.ndarray:
    """R⁻¹ with R's eigenvalues replaced by their magnitudes, floored at 1e-8 of the largest:
    a Newton-like start for BFGS where R, far from the optimum, is not positive definite."""
    values, vectors = np.linalg.eigh(0.5 * (r + r.T))
    values = np.maximum(np.abs(values), 1e-8 * np.max(np.abs(values)))
    return (vectors / values) @ vectors.T


def covariance_step(objective, result: OuterResult, settings: OuterSettings) -> CovarianceStep:
    """R by central differences of the exact gradient, S from the per-patient gradients."""
    x = result.x
    r, failed = gradient_differences(objective, x, result.eta, settings.fd_step, central=True)
    if r is None:
        return CovarianceStep(False, f"R matrix: the objective is not finite at x ± h along "
                                     f"element {failed} (an ODE solve failed)", kind=settings.covariance)
    r = 0.5 * (r + r.T)
    s = result.patient_gradient.T @ result.patient_gradient
    eigenvalues = np.linalg.eigvalsh(r)
    smallest = float(eigenvalues.min())
    condition = float(eigenvalues.max() / smallest) if smallest > 0 else float("inf")
    if smallest <= 0:
        return CovarianceStep(False, f"R matrix is not positive definite (smallest eigenvalue {smallest:.3g}): "
                                     "the estimate is not a minimum or a parameter is not identifiable",
                              r=r, s=s, kind=settings.covariance, condition_number=condition,
                              r_min_eigenvalue=smallest)
    r_inv = np.linalg.inv(r)
    covariance = r_inv @ s @ r_inv if settings.covariance == "sandwich" else 2.0 * r_inv
    if not np.all(np.isfinite(covariance)) or np.any(np.diagonal(covariance) <= 0):
        return CovarianceStep(False, "the covariance matrix is not finite or has a non-positive variance "
                                     "(S matrix singular?)", r=r, s=s, kind=settings.covariance,
                              condition_number=condition, r_min_eigenvalue=smallest)
    return CovarianceStep(True, "ok", r=r, s=s, covariance=covariance, kind=settings.covariance,
                          condition_number=condition, r_min_eigenvalue=smallest)
