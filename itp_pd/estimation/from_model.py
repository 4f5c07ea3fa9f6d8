"""A ``MarginalProblem`` from a hierarchical model: the spec's individual-parameter formula, the
engine's solver (in forward mode) and the spec's residual error, without NumPyro or priors.

The individual parameters ψ the predictions are differentiated in are those that depend on the
estimates: every estimated parameter, every parameter with a random effect, every parameter
with an estimated covariate exponent; ψ = log P (logit P for a logit-scale IIV). The others
are fixed per patient (their covariate effects included) and computed once.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import expit, logit

from ..engine import simulate_grid
from ..errors import SpecError
from ..stats.residual import residual_sd
from .marginal import MarginalProblem, PatientData
from .parameters import PopulationParameters

_TINY = 1e-300


@dataclasses.dataclass(frozen=True)
class ModelProblem:
    """Everything the FOCE-I/Laplace driver needs of one model and dataset."""

    problem: MarginalProblem
    data: PatientData
    parameters: PopulationParameters
    varying: tuple[str, ...]
    log_rows: np.ndarray  # (n_patients, n_obs) rows whose error model is log-normal
    model: object

    def predictions(self, x, eta):
        """``(f, status)`` on the natural scale at ``x`` and ``eta`` (``(n_patients, k)``)."""
        psi = jax.vmap(self.problem.psi, in_axes=(None, 0, 0))(jnp.asarray(x), jnp.asarray(eta), self.data.covariates)
        f, status = self.problem.predict(psi)
        return np.where(self.log_rows, np.exp(np.asarray(f)), np.asarray(f)), np.asarray(status)


def _log_rows(model) -> np.ndarray:
    output = np.asarray(model.data["output"])
    rows = np.zeros(output.shape, dtype=bool)
    for o in model.observations:
        if o.error == "lognormal":
            rows |= output == o.dvid - 1
    return rows


def problem_from_model(model, observed, method: str, *, mesh=None) -> ModelProblem:
    """The FOCE-I (``method="focei"``) or Laplace problem of ``model`` (``build_model``) and
    its ``observed`` data.

    ``mesh``: how the patients' solves are split across devices, as ``simulate_population``'s
    (``"auto"``: every core where an entry point made one device per core; default ``None``:
    one device). One device by default because split across the 2-core CPU's two devices the
    120-patient ITP problem deadlocked, intermittently, in the gather of the sharded
    simulation (every thread asleep, one device waiting for the other; XLA aborts the process
    after a minute); a split FOCE-I evaluation of the 40-patient ITP problem took 2.9 s against
    5.7 s on one device, so ``"auto"`` is twice as fast where it does not deadlock."""
    if model.mesh is not None:
        raise SpecError("FOCE-I/Laplace splits patients across devices itself (mesh=); build the model "
                        "without a mesh")
    spec = model.spec
    for name in model.etas:
        if not spec.parameter(name).iiv.sd > 0:
            raise SpecError(f"parameters.{name}.iiv.sd is {spec.parameter(name).iiv.sd}: a random effect needs a "
                            "positive starting omega (a singular Omega cannot start the fit); give it sd > 0 or "
                            "leave it out of random_effects")
    parameters = PopulationParameters.of(model)
    estimated_exponent = {e.parameter for e in parameters.entries if e.kind == "beta"}
    varying = tuple(p.name for p in spec.parameters
                    if p.estimate or p.name in model.etas or p.name in estimated_exponent)
    logit_scale = tuple(spec.parameter(n).iiv is not None and spec.parameter(n).iiv.scale == "logit" for n in varying)
    covariates = {c: jnp.asarray(v) for c, v in model.data["covariates"].items()}
    n, k = model.n_patients, len(model.etas)
    x0 = jnp.asarray(parameters.start)
    fixed = {name: value for name, value in
             parameters.individual(x0, jnp.zeros((n, k)), covariates).items() if name not in varying}
    structural = model.structural
    # Steps inside the explicit solver's stability region: without them forward-mode
    # derivatives of stiff patients can be wrong by orders of magnitude (SolverConfig.stable_step).
    stable_step = 0.85 if structural.solver.stable_step is None else structural.solver.stable_step
    structural = dataclasses.replace(structural, solver_config=dataclasses.replace(
        structural.solver, differentiation="forward", stable_step=stable_step))
    population = model.population
    n_ode = structural.n_nonlinear_states
    # Under vmap a batch steps until its stiffest patient is done, and a severe patient needs
    # tens of times the median's steps; solving the patients in chunks of similar stiffness
    # (simulate_grid sorts them) lets only the stiffest chunk pay for them. Measured on the
    # 120-patient ITP trial at the prior medians: chunks of 30 took 28 s against 37 s for one
    # batch of 120 per solve with second derivatives (median of 3), with the same OFV to 5e-11.
    chunk_size = model.chunk_size
    if chunk_size is None and n_ode and n >= 32:
        chunk_size = -(-n // 4)
    log_rows = _log_rows(model)
    log_rows_j = jnp.asarray(log_rows)

    def psi(x, eta, cov):
        values = parameters.individual(x, eta[None, :], {c: v[None] for c, v in cov.items()})
        return jnp.stack([logit(values[name][0]) if is_logit else jnp.log(values[name][0])
                          for name, is_logit in zip(varying, logit_scale)])

    def predict(psi_all, index=None):
        # index: the patients psi_all belongs to (traced), or None for every patient.
        params = dict(fixed) if index is None else {name: value[index] for name, value in fixed.items()}
        grid = population.grid if index is None else jax.tree.map(lambda leaf: leaf[index], population.grid)
        rows = log_rows_j if index is None else log_rows_j[index]
        for j, (name, is_logit) in enumerate(zip(varying, logit_scale)):
            params[name] = expit(psi_all[:, j]) if is_logit else jnp.exp(psi_all[:, j])
        simulation = simulate_grid(structural, params, grid, chunk_size=chunk_size, mesh=mesh)
        failed = simulation.status != 0
        f = jnp.where(failed[:, None], 1.0, simulation.predictions)
        f = jnp.where(rows, jnp.log(jnp.maximum(f, _TINY)), f)
        return f, simulation.status

    observations = model.observations

    def variance(x, f, output):
        sigmas = parameters.sigmas(x)
        v = jnp.ones_like(f)
        for o in observations:
            rows = output == o.dvid - 1
            sd = residual_sd(o.error, f, **sigmas[o.name])
            v = jnp.where(rows, sd**2, v)
        return v

    # Re-solving only the patients whose modes still move pays where solves are ODE solves.
    # Sizes n/4 and n/16: measured on the 120-patient ITP trial, after two full iterations
    # 4-19 patients still moved, and 1-4 for the last ten or more.
    subset = None
    if n_ode and n >= 32:
        subset = tuple(sorted({-(-n // 4), -(-n // 16)}, reverse=True))
    problem = MarginalProblem(psi, predict, variance, parameters.omega_matrix, method, subset=subset)
    value = np.asarray(observed.value, dtype=float)
    is_data = np.asarray(observed.is_data)
    lloq = np.asarray(observed.lloq, dtype=float)
    value = np.where(is_data & log_rows, np.log(np.where(value > 0, value, 1.0)), value)
    lloq = np.where(log_rows & np.asarray(observed.censored), np.log(np.where(lloq > 0, lloq, 1.0)), lloq)
    data = PatientData(jnp.asarray(np.where(is_data, value, 0.0)), jnp.asarray(is_data),
                       jnp.asarray(np.asarray(observed.censored) & is_data), jnp.asarray(lloq),
                       jnp.asarray(observed.output), covariates)
    return ModelProblem(problem, data, parameters, varying, log_rows, model)
