"""The hierarchical NumPyro model: one function for prior simulation, fitting and prediction.

``build_model(spec, dataset)`` returns a model function whose sample sites are named the way a
pharmacometrician reads them:

- ``pop_<P>``: population (typical) value of every estimated parameter, from its prior;
- ``omega_<P>``: IIV standard deviation (on the parameter's IIV scale), from its prior, or fixed;
- ``z_<P>``: standard-normal individual deviations (non-centred), shape ``(n_patients,)``;
  ``eta_<P> = omega_<P>·z_<P>`` is recorded as a deterministic site;
- ``beta_<P>_<COV>``: estimated covariate exponents;
- ``sigma_<OUT>`` (or ``sigma_add_<OUT>``/``sigma_prop_<OUT>`` for a combined error model);
- ``obs``: every observation row, ``(n_patients, n_obs)``, with ``ResidualError`` (M3 for BLQ
  rows) masked on the distribution, so pointwise log-likelihoods are exact;
- ``prediction`` and ``solver_failures`` (deterministic).

A failed ODE solve makes the log density −∞ (the proposal is rejected and counted), never an
exception. Fixed parameters (``estimate = false`` in the spec, or fixed by a fit recipe with
``spec.with_fixed``) enter at their value without a sample site.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from ..data import Dataset
from ..engine import population_from_dataset, simulate_population
from ..errors import SpecError
from ..spec.individual import individual_value
from ..structural import model_from_spec
from .observed import observed_data
from .residual import ResidualError, residual_sd


def _sigma_sites(observation):
    """``(field, site name, value, prior)`` for each sigma of an observation."""
    single = len(observation.sigmas) == 1
    for field, value, prior in observation.sigmas:
        name = f"sigma_{observation.name}" if single else f"{field}_{observation.name}"
        yield field, name, value, prior


def _check_outputs(spec, structural, observed):
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


def build_model(
    spec,
    dataset: Dataset,
    *,
    structural=None,
    random_effects: Collection[str] | None = None,
    chunk_size: int | None = None,
):
    """The NumPyro model of ``dataset`` under ``spec``.

    Args:
        spec: ``ModelSpec`` (which parameters are estimated, priors, IIV, covariates,
            residual error per output).
        dataset: checked NONMEM-format data (``Dataset.from_table`` or ``read_nonmem``).
        structural: the structural model; default ``model_from_spec(spec)``.
        random_effects: parameters that get an eta; default every parameter with IIV.
        chunk_size: passed to ``simulate_population``.

    Returns:
        ``(model, population, observed)``: the model function ``model(obs=...)`` (call with
        ``obs=observed.value`` to condition, ``obs=None`` to simulate), the padded event grids
        and the observed arrays. The function closes over static structure only; data enter
        as arrays, so a second dataset of the same padded shape reuses the compiled program.
    """
    structural = structural or model_from_spec(spec)
    population = population_from_dataset(dataset, structural)
    observed = observed_data(dataset, population)
    _check_outputs(spec, structural, observed)
    n = population.n_patients

    covariate_table = dataset.patient_covariates() if dataset.covariates else None
    covariates: Mapping[str, np.ndarray] = (
        {c: covariate_table[c].to_numpy(dtype=float) for c in covariate_table.columns if c != "ID"}
        if covariate_table is not None else {}
    )
    needed = sorted({(e.covariate, p.name) for p in spec.parameters for e in p.covariates if e.covariate not in covariates})
    if needed:
        raise SpecError(
            "the spec's covariate effects need columns the dataset lacks (or that vary within a "
            "patient): " + ", ".join(f"{c} (for {name})" for c, name in needed)
            + "; add them to the dataset, constant within each patient"
        )
    with_iiv = [p for p in spec.parameters if p.iiv is not None]
    etas = [p.name for p in with_iiv] if random_effects is None else list(random_effects)
    unknown = sorted(set(etas) - {p.name for p in with_iiv})
    if unknown:
        raise SpecError(
            f"random_effects {unknown} have no IIV in the spec; give them [parameters.<P>].iiv "
            "or leave them out"
        )
    observations = [o for o in spec.observations if o.dvid - 1 < len(structural.outputs)]
    is_data = jnp.asarray(observed.is_data)
    output = jnp.asarray(observed.output)
    censored = jnp.asarray(observed.censored)
    lloq = jnp.asarray(observed.lloq)
    log_scale = jnp.zeros(output.shape, dtype=bool)
    for o in observations:
        if o.error == "lognormal":
            log_scale = log_scale | (output == o.dvid - 1)

    def model(obs=None):
        params = {}
        for p in spec.parameters:
            typical = numpyro.sample(f"pop_{p.name}", p.prior.to_numpyro()) if p.estimate else p.value
            exponents = {
                e.covariate: numpyro.sample(f"beta_{p.name}_{e.covariate}", e.exponent_prior.to_numpyro())
                for e in p.covariates if e.estimate_exponent
            }
            eta = None
            if p.name in etas:
                omega = (
                    numpyro.sample(f"omega_{p.name}", p.iiv.prior.to_numpyro())
                    if p.iiv.prior is not None else p.iiv.sd
                )
                z = numpyro.sample(f"z_{p.name}", dist.Normal(0.0, 1.0).expand([n]))
                eta = numpyro.deterministic(f"eta_{p.name}", omega * z)
            value = individual_value(p, typical, eta, covariates, exponents=exponents)
            params[p.name] = jnp.broadcast_to(value, (n,))

        simulation = simulate_population(structural, params, population, chunk_size=chunk_size)
        failed = simulation.status != 0
        numpyro.deterministic("solver_failures", jnp.sum(failed))
        # A failed patient's predictions are replaced by a harmless stand-in so that no NaN
        # reaches the gradient; the factor below rejects the whole proposal anyway.
        prediction = jnp.where(failed[:, None] | ~is_data, 1.0, simulation.predictions)
        numpyro.deterministic("prediction", simulation.predictions)
        numpyro.factor("solver_failed", jnp.where(jnp.any(failed), -jnp.inf, 0.0))

        sd = jnp.ones_like(prediction)
        for o in observations:
            sigmas = {
                field: numpyro.sample(name, prior.to_numpyro()) if prior is not None else value
                for field, name, value, prior in _sigma_sites(o)
            }
            rows = is_data & (output == o.dvid - 1)
            sd = jnp.where(rows, residual_sd(o.error, prediction, **sigmas), sd)
        # Rows that are not data get a unit sd and a value equal to their stand-in prediction.
        value = None if obs is None else jnp.where(is_data, obs, 1.0)
        numpyro.sample(
            "obs",
            ResidualError(prediction, sd, log_scale, censored & is_data, jnp.where(censored, lloq, 1.0)).mask(is_data),
            obs=value,
        )

    return model, population, observed
