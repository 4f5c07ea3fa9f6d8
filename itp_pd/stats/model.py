"""The hierarchical NumPyro model: one function for prior simulation, fitting and prediction.

``build_model(spec, dataset)`` returns a model function whose sample sites are named the way a
pharmacometrician reads them:

- ``pop_<P>``: population (typical) value of every estimated parameter, from its prior;
- ``omega_<P>``: IIV standard deviation (on the parameter's IIV scale), from its prior, or fixed;
- ``z_<P>``: standard-normal individual deviations (non-centred), shape ``(n_patients,)``;
  ``eta_<P> = omega_<P>·z_<P>`` is recorded as a deterministic site;
- ``beta_<P>_<COV>``: estimated covariate exponents;
- ``corr_chol_IIV`` (optional): Cholesky factor of the correlation of a block of etas, with an
  LKJ prior; ``corr_IIV`` is recorded as a deterministic site;
- ``sigma_<OUT>`` (or ``sigma_add_<OUT>``/``sigma_prop_<OUT>`` for a combined error model), for
  each output that has measurements in the dataset;
- ``obs``: every observation row, ``(n_patients, n_obs)``, with ``ResidualError`` (M3 for BLQ
  rows) masked on the distribution, so pointwise log-likelihoods are exact;
- ``prediction`` and ``solver_failures`` (deterministic).

Data enter the model function as arguments (``model(obs, data=...)``; ``model_data`` builds
them), so a second dataset of the same padded shape runs in the same compiled program.

A failed ODE solve makes the log density −∞ (the proposal is rejected and counted), never an
exception. Fixed parameters (``estimate = false`` in the spec, or fixed by a fit recipe with
``spec.with_fixed``) enter at their value without a sample site.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from ..data import Dataset
from ..engine import Population, population_from_dataset, simulate_population
from ..errors import SpecError
from ..spec.individual import individual_value
from ..structural import model_from_spec
from .observed import ObservedData, observed_data
from .residual import ResidualError, residual_sd


def sigma_sites(observation):
    """``(field, site name, value, prior)`` for each sigma of an observation."""
    single = len(observation.sigmas) == 1
    for field, value, prior in observation.sigmas:
        name = f"sigma_{observation.name}" if single else f"{field}_{observation.name}"
        yield field, name, value, prior


class SolverFailureTally:
    """Counts log-density evaluations in which an ODE solve failed, across every fit.

    The model reports each evaluation's failed patients with ``jax.debug.callback``, so the
    count is real even inside compiled NUTS trajectories (where a rejected proposal leaves no
    trace in the draws). Read it as a difference: ``before = TALLY.count; ...; TALLY.count -
    before``.
    """

    def __init__(self):
        self.evaluations = 0
        self.patients = 0

    def record(self, failed_patients):
        failed = np.asarray(failed_patients).reshape(-1)
        self.evaluations += int(np.count_nonzero(failed))
        self.patients += int(failed.sum())


SOLVER_FAILURES = SolverFailureTally()
LKJ_CONCENTRATION = 2.0  # mild shrinkage towards no correlation (Lewandowski et al. 2009)


def _present_outputs(spec, structural, observed):
    """DVIDs with measurements; refuses those the spec gives no residual error."""
    declared = {o.dvid for o in spec.observations}
    present = {int(d) for d in np.unique(observed.output[observed.is_data]) + 1}
    missing = sorted(present - declared)
    if missing:
        names = [structural.outputs[d - 1] for d in missing]
        raise SpecError(
            f"the dataset has measurements of DVID {missing} ({', '.join(names)}) but the spec "
            f"declares no residual error for them; add [observations.{names[0]}] to the spec, "
            "or drop those rows"
        )
    return present


def _covariate_columns(spec, dataset) -> dict[str, np.ndarray]:
    """Per-patient covariates the spec's effects need, ``(n_patients,)`` each."""
    table = dataset.patient_covariates() if dataset.covariates else None
    available = {c: table[c].to_numpy(dtype=float) for c in table.columns if c != "ID"} if table is not None else {}
    needed = sorted({(e.covariate, p.name) for p in spec.parameters for e in p.covariates})
    absent = [(c, name) for c, name in needed if c not in available]
    if absent:
        raise SpecError(
            "the spec's covariate effects need columns the dataset lacks (or that vary within a "
            "patient): " + ", ".join(f"{c} (for {name})" for c, name in absent)
            + "; add them to the dataset, constant within each patient"
        )
    return {c: available[c] for c, _ in needed}


def model_data(spec, dataset: Dataset, structural, *, sizes=None) -> tuple[dict, Population, ObservedData]:
    """The arrays a model function reads: event grids, observations and covariates.

    ``sizes``: padded ``(n_events, n_segments, n_obs)`` to force (``population_from_dataset``),
    so that other programs of the same shapes can share one compilation.

    Returns:
        ``(data, population, observed)``: ``data`` is a pytree of arrays (``grid``,
        ``is_data``, ``output``, ``censored``, ``lloq``, ``covariates``) to pass as
        ``model(obs, data=data)``; datasets with the same padded shapes give the same shapes.
    """
    population = population_from_dataset(dataset, structural, sizes=sizes)
    observed = observed_data(dataset, population)
    data = {
        "grid": population.grid,
        "is_data": jnp.asarray(observed.is_data),
        "output": jnp.asarray(observed.output),
        "censored": jnp.asarray(observed.censored),
        "lloq": jnp.asarray(observed.lloq),
        "covariates": {c: jnp.asarray(v) for c, v in _covariate_columns(spec, dataset).items()},
    }
    return data, population, observed


def _sample_etas(spec, names, correlated, n):
    """``eta_<P>`` for each parameter with a random effect (non-centred)."""
    etas = {}
    for name in names:
        p = spec.parameter(name)
        omega = numpyro.sample(f"omega_{name}", p.iiv.prior.to_numpyro()) if p.iiv.prior is not None else p.iiv.sd
        if name in correlated:
            etas[name] = omega
        else:
            z = numpyro.sample(f"z_{name}", dist.Normal(0.0, 1.0).expand([n]))
            etas[name] = numpyro.deterministic(f"eta_{name}", omega * z)
    if correlated:
        k = len(correlated)
        chol = numpyro.sample("corr_chol_IIV", dist.LKJCholesky(k, concentration=LKJ_CONCENTRATION))
        numpyro.deterministic("corr_IIV", chol @ chol.T)
        z = numpyro.sample("z_IIV", dist.Normal(0.0, 1.0).expand([n, k]).to_event(1))
        omegas = jnp.stack([jnp.asarray(etas[name], dtype=float) for name in correlated])
        block = (z @ chol.T) * omegas
        for j, name in enumerate(correlated):
            etas[name] = numpyro.deterministic(f"eta_{name}", block[:, j])
    return etas


class HierarchicalModel:
    """A NumPyro model function with its static structure (built by ``build_model``).

    Call it as ``model(obs=None, data=None)``. Equal (and hashing equal) for the same spec,
    structural model, random-effect structure, outputs and data shapes, so compiled programs
    can be cached on it and reused for another dataset of the same padded shape.
    """

    def __init__(self, spec, structural, etas, correlated, observations, data, population, chunk_size,
                 mesh=None):
        self.spec, self.structural = spec, structural
        self.etas, self.correlated = tuple(etas), tuple(correlated)
        self.observations = tuple(observations)
        self.data, self.population = data, population
        self.chunk_size, self.mesh = chunk_size, mesh
        shapes = tuple((jnp.shape(leaf), str(jnp.result_type(leaf))) for leaf in jax.tree.leaves(data))
        self._key = (spec, structural, self.etas, self.correlated, self.observations, shapes, chunk_size,
                     population.n_patients, mesh)

    def __eq__(self, other):
        return isinstance(other, HierarchicalModel) and self._key == other._key

    def __hash__(self):
        return hash(self._key)

    @property
    def n_patients(self) -> int:
        return self.population.n_patients

    def with_mesh(self, mesh) -> HierarchicalModel:
        """The same model with its patients' solves split across ``mesh`` (``patient_mesh``)."""
        return HierarchicalModel(self.spec, self.structural, self.etas, self.correlated, self.observations,
                                 self.data, self.population, self.chunk_size, mesh)

    def __call__(self, obs=None, data=None):
        data = self.data if data is None else data
        n = self.n_patients
        eta = _sample_etas(self.spec, self.etas, self.correlated, n)
        params = {}
        for p in self.spec.parameters:
            typical = numpyro.sample(f"pop_{p.name}", p.prior.to_numpyro()) if p.estimate else p.value
            exponents = {
                e.covariate: numpyro.sample(f"beta_{p.name}_{e.covariate}", e.exponent_prior.to_numpyro())
                for e in p.covariates if e.estimate_exponent
            }
            value = individual_value(p, typical, eta.get(p.name), data["covariates"], exponents=exponents)
            params[p.name] = jnp.broadcast_to(value, (n,))

        simulation = simulate_population(self.structural, params,
                                         dataclasses.replace(self.population, grid=data["grid"]),
                                         chunk_size=self.chunk_size, mesh=self.mesh)
        failed = simulation.status != 0
        numpyro.deterministic("solver_failures", jnp.sum(failed))
        jax.debug.callback(SOLVER_FAILURES.record, jnp.sum(failed))
        # A failed patient's predictions are replaced by a harmless stand-in so that no NaN
        # reaches the gradient; the factor below rejects the whole proposal anyway.
        prediction = jnp.where(failed[:, None], 1.0, simulation.predictions)
        numpyro.deterministic("prediction", simulation.predictions)
        numpyro.factor("solver_failed", jnp.where(jnp.any(failed), -jnp.inf, 0.0))

        sd = jnp.ones_like(prediction)
        for o in self.observations:
            sigmas = {
                name_field: numpyro.sample(name, prior.to_numpyro()) if prior is not None else value
                for name_field, name, value, prior in sigma_sites(o)
            }
            rows = data["is_data"] & (data["output"] == o.dvid - 1)
            sd = jnp.where(rows, residual_sd(o.error, jnp.where(rows, prediction, 1.0), **sigmas), sd)
        numpyro.deterministic("residual_sd", sd)
        is_data = data["is_data"]
        value = None if obs is None else jnp.where(is_data, obs, 1.0)
        numpyro.sample("obs", self.observation_distribution(prediction, sd, data), obs=value)

    def observation_distribution(self, prediction, sd, data=None):
        """The distribution of ``obs`` given predictions and residual sds (broadcasting over
        leading draw axes), masked to the data rows.

        Rows that are not data get a stand-in prediction of 1 with unit sd, so that nothing
        non-finite is evaluated there; the mask makes their log-density exactly 0.
        """
        data = self.data if data is None else data
        is_data, output = data["is_data"], data["output"]
        log_scale = jnp.zeros(output.shape, dtype=bool)
        for o in self.observations:
            if o.error == "lognormal":
                log_scale = log_scale | (output == o.dvid - 1)
        censored = data["censored"] & is_data
        prediction = jnp.where(is_data, prediction, 1.0)
        return ResidualError(prediction, jnp.where(is_data, sd, 1.0), log_scale, censored,
                             jnp.where(censored, data["lloq"], 1.0)).mask(is_data)


def build_model(
    spec,
    dataset: Dataset,
    *,
    structural=None,
    random_effects: Collection[str] | None = None,
    correlated: Sequence[str] = (),
    chunk_size: int | None = None,
    sizes: tuple[int, int, int] | None = None,
    mesh=None,
):
    """The NumPyro model of ``dataset`` under ``spec``.

    Args:
        spec: ``ModelSpec`` (which parameters are estimated, priors, IIV, covariates,
            residual error per output).
        dataset: checked NONMEM-format data (``Dataset.from_table`` or ``read_nonmem``).
        structural: the structural model; default ``model_from_spec(spec)``.
        random_effects: parameters that get an eta; default every parameter with IIV.
        correlated: random effects whose etas are correlated (one block, LKJ prior on the
            correlation); the others are independent.
        chunk_size: passed to ``simulate_population``.
        sizes: padded ``(n_events, n_segments, n_obs)`` to force (default: bucketed to fit).
        mesh: ``itp_pd.engine.patient_mesh(devices)`` to split the patients' ODE solves across
            several devices (``shard_map``); population parameters are replicated on every
            device, and the log-likelihood of each device's patients is summed across devices.

    Returns:
        ``(model, population, observed)``: the ``HierarchicalModel`` ``model(obs=None, data=None)``
        (``obs=observed.value`` to condition, ``None`` to simulate; ``data`` from
        ``model_data`` for another dataset of the same padded shape, default this one's), the
        padded event grids and the observed arrays. The function closes over static
        structure only, so passing ``data`` as an argument reuses the compiled program.
    """
    structural = structural or model_from_spec(spec)
    default_data, population, observed = model_data(spec, dataset, structural, sizes=sizes)
    present = _present_outputs(spec, structural, observed)

    with_iiv = [p.name for p in spec.parameters if p.iiv is not None]
    etas = with_iiv if random_effects is None else list(random_effects)
    unknown = sorted(set(etas) - set(with_iiv))
    if unknown:
        raise SpecError(
            f"random_effects {unknown} have no IIV in the spec; give them [parameters.<P>].iiv "
            "or leave them out"
        )
    correlated = tuple(correlated)
    if set(correlated) - set(etas) or len(correlated) == 1:
        raise SpecError(
            f"correlated {list(correlated)} must name two or more of the random effects {etas}; "
            "list the parameters whose etas share a block"
        )
    observations = [o for o in spec.observations if o.dvid in present]
    model = HierarchicalModel(spec, structural, etas, correlated, observations, default_data, population, chunk_size,
                              mesh)
    return model, population, observed
