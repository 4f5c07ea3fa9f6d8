"""Where virtual patients come from: draws of population values, from a prior or a posterior.

A virtual trial separates two kinds of uncertainty. *Parameter uncertainty* is what we do not
know about the population (typical values, between-patient sds, residual error): one
``PopulationDraws`` entry per posterior (or prior) draw. *Between-patient variability* is who
happens to be enrolled: new virtual patients are sampled for every draw
(``sample_patients``). A trial simulated from ``PopulationDraws`` crosses the two.

Two sources:

- ``prior_population``: the calibrated default virtual population (``models/itp_v1.toml`` with
  ``fits/itp_v1_calibration.toml``), whose unknown drug effects (by default iguratimod's four
  effect sizes, which no published trial has measured in ITP) are drawn from the spec's priors.
- ``posterior_population``: the population sites of a fitted posterior (``pop_<P>``,
  ``omega_<P>``, ``beta_<P>_<COV>``, sigmas); everything the fit did not estimate stays at the
  fitted spec's value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np

from ..errors import ItpPdError
from ..spec import load_spec
from ..stats.model import sigma_sites
from .calibration import CALIBRATION_FILE, load_calibration

DEFAULT_SPEC = Path(__file__).parents[2] / "models" / "itp_v1.toml"
# Iguratimod's effect sizes: sized from RA and Sjögren's studies, never measured in ITP
# (science.md §3), so the default population carries them as prior uncertainty.
IGURATIMOD_EFFECTS = ("IMAX_PC", "IMAX_TH1", "IMAX_TH17", "EMAX_TREG")


@dataclass(frozen=True)
class PopulationDraws:
    """Draws of population values, each a population to sample virtual patients from.

    Attributes:
        spec: the model spec; values not listed below are its values.
        typical: parameter → ``(n_draws,)`` typical values (spec units).
        omega: parameter → ``(n_draws,)`` between-patient sds (on the IIV scale).
        exponents: parameter → covariate → ``(n_draws,)`` covariate exponents.
        sigmas: ``(observation name, field)`` → ``(n_draws,)`` residual-error parameters.
        n_draws: number of draws.
        description: where the draws came from (for tables and plots).
    """

    spec: object
    n_draws: int
    typical: Mapping[str, np.ndarray] = field(default_factory=dict)
    omega: Mapping[str, np.ndarray] = field(default_factory=dict)
    exponents: Mapping[str, Mapping[str, np.ndarray]] = field(default_factory=dict)
    sigmas: Mapping[tuple[str, str], np.ndarray] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self):
        arrays = [*self.typical.values(), *self.omega.values(), *self.sigmas.values(),
                  *(v for e in self.exponents.values() for v in e.values())]
        for array in arrays:
            if np.shape(array) != (self.n_draws,):
                raise ValueError(f"every draw array must have shape ({self.n_draws},); got {np.shape(array)}")

    def values(self, draw: int) -> tuple[dict, dict, dict]:
        """``(typical, omega, exponents)`` of one draw, as ``sample_patients`` takes them."""
        typical = {name: float(v[draw]) for name, v in self.typical.items()}
        omega = {name: float(v[draw]) for name, v in self.omega.items()}
        exponents = {name: {cov: float(v[draw]) for cov, v in e.items()} for name, e in self.exponents.items()}
        return typical, omega, exponents

    def sigma(self, name: str, field: str) -> np.ndarray:
        """``(n_draws,)`` values of one residual-error parameter (``sigma_prop``, ...) of
        observation ``name``: the draws where estimated, else the spec's value repeated."""
        if (name, field) in self.sigmas:
            return np.asarray(self.sigmas[(name, field)], dtype=float)
        return np.full(self.n_draws, self.observation(name, 0).sigma(field))

    def observation(self, name: str, draw: int):
        """The spec's observation ``name`` with this draw's residual-error parameters."""
        for observation in self.spec.observations:
            if observation.name == name:
                sigmas = tuple((f, float(self.sigmas[(name, f)][draw]) if (name, f) in self.sigmas else value, prior)
                               for f, value, prior in observation.sigmas)
                return dataclasses.replace(observation, sigmas=sigmas)
        raise KeyError(f"spec {self.spec.name} declares no observation {name!r}")


def numpy_seed(key) -> int:
    """A numpy seed from a JAX key (the two libraries' streams stay separate)."""
    return int(jax.random.randint(key, (), 0, np.iinfo(np.int32).max))


def prior_population(
    spec=None,
    n_draws: int = 100,
    *,
    key,
    uncertain: Sequence[str] = IGURATIMOD_EFFECTS,
    calibration: Path | None = CALIBRATION_FILE,
) -> PopulationDraws:
    """The default virtual population, with prior uncertainty on ``uncertain`` parameters.

    Args:
        spec: model spec (default ``models/itp_v1.toml``); its values, overridden by the
            calibration file's, are every draw's population values.
        n_draws: number of draws of the uncertain parameters.
        key: JAX PRNG key for the prior draws.
        uncertain: parameters drawn from their spec priors in each draw (each must have one);
            ``()`` gives ``n_draws`` copies of one fixed population (between-patient
            variability only).
        calibration: calibration file to apply (``None``: the spec's values as they are).

    Raises:
        SpecError / ItpPdError: an uncertain parameter without a prior, or an unknown name.
    """
    spec = load_spec(DEFAULT_SPEC) if spec is None else spec
    if calibration is not None:
        typical, omega = load_calibration(calibration)
        spec = spec.with_values(typical, omega)
    draws = {}
    keys = jax.random.split(key, max(len(uncertain), 1))
    for name, subkey in zip(uncertain, keys):
        if name not in spec.parameter_names:
            raise ItpPdError(f"uncertain parameter {name!r} is not in spec {spec.name}; "
                             f"choose from {', '.join(spec.parameter_names)}")
        prior = spec.parameter(name).prior
        if prior is None:
            raise ItpPdError(f"uncertain parameter {name!r} has no prior in spec {spec.name}; "
                             "give it a prior there or leave it out of uncertain")
        draws[name] = np.asarray(prior.to_numpyro().sample(subkey, (n_draws,)), dtype=float)
    label = f"prior: {spec.name} default population" + (f", uncertain {', '.join(uncertain)}" if uncertain else "")
    return PopulationDraws(spec, n_draws, typical=draws, description=label)


def posterior_population(idata, spec, n_draws: int | None = None, *, key=None,
                         description: str = "posterior") -> PopulationDraws:
    """Population draws from a fitted posterior (ArviZ InferenceData of ``itp_pd.inference``).

    Args:
        idata: the fit's InferenceData (``FitResult.idata`` or ``fits/<name>/posterior.nc``).
        spec: the spec the fit used (``itp_pd.inference.recipe_spec(recipe)``): it supplies
            every value the fit did not estimate.
        n_draws: how many posterior draws to use, chosen at random without replacement by
            ``key``; None uses all, in chain-then-draw order.
        key: JAX PRNG key (needed when ``n_draws`` is given).

    Raises:
        ItpPdError: a correlated IIV block (``corr_IIV``), which virtual patients do not
            support yet, or more draws asked for than the posterior holds.
    """
    posterior = idata.posterior
    if "corr_IIV" in posterior:
        raise ItpPdError("the posterior has correlated random effects (corr_IIV); virtual trials "
                         "sample independent effects only. Refit without [model] correlated.")
    stacked = {name: np.asarray(posterior[name].values).reshape(-1, *posterior[name].shape[2:])
               for name in posterior.data_vars}
    total = len(next(iter(stacked.values())))
    if n_draws is None:
        index = np.arange(total)
    else:
        if n_draws > total:
            raise ItpPdError(f"asked for {n_draws} posterior draws; the posterior holds {total}. "
                             f"Use n_draws <= {total}.")
        if key is None:
            raise ItpPdError("posterior_population: give key= to choose n_draws draws at random")
        index = np.sort(np.random.default_rng(numpy_seed(key)).choice(total, n_draws, replace=False))
    pick = {name: values[index] for name, values in stacked.items() if values.ndim == 1}
    typical, omega, exponents, sigmas = {}, {}, {}, {}
    for p in spec.parameters:
        if f"pop_{p.name}" in pick:
            typical[p.name] = pick[f"pop_{p.name}"]
        if f"omega_{p.name}" in pick:
            omega[p.name] = pick[f"omega_{p.name}"]
        for e in p.covariates:
            if f"beta_{p.name}_{e.covariate}" in pick:
                exponents.setdefault(p.name, {})[e.covariate] = pick[f"beta_{p.name}_{e.covariate}"]
    for o in spec.observations:
        for f, site, _, _ in sigma_sites(o):
            if site in pick:
                sigmas[(o.name, f)] = pick[site]
    return PopulationDraws(spec, len(index), typical=typical, omega=omega, exponents=exponents,
                           sigmas=sigmas, description=description)


def fitted_population(fit, n_draws: int | None = None, *, key=None) -> PopulationDraws:
    """Population draws of a finished fit: a ``FitResult``, or the path of its recipe (its
    posterior is read from ``fits/<name>/posterior.nc``)."""
    import arviz as az

    from ..inference import load_recipe, recipe_spec

    if hasattr(fit, "idata"):
        return posterior_population(fit.idata, recipe_spec(fit.recipe), n_draws, key=key,
                                    description=f"posterior: {fit.recipe.name}")
    recipe = load_recipe(fit, check_data=False)
    path = recipe.output_dir / "posterior.nc"
    if not path.is_file():
        raise ItpPdError(f"no posterior at {path}; run `itp-pd fit {fit}` first")
    return posterior_population(az.from_netcdf(path), recipe_spec(recipe), n_draws, key=key,
                                description=f"posterior: {recipe.name}")


def population_source(fit=None, n_draws: int = 100, *, key) -> PopulationDraws:
    """The default population prior, or the posterior of a finished fit when ``fit`` (a recipe
    path or ``FitResult``) is given: what entry points offer as ``--fit``."""
    if fit is None:
        return prior_population(n_draws=n_draws, key=key)
    return fitted_population(fit, n_draws, key=key)
