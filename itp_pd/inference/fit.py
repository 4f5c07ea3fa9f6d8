"""``fit(recipe)``: dataset + spec + method → posterior, summary, diagnostics, manifest.

A pure function of the recipe and the files it names (checked by sha256), so any scheduler
(a shell loop, Ray, a cluster array job) can run it; ``write_fit`` stores the result.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..spec import load_spec, read_values
from ..stats.model import SOLVER_FAILURES, build_model
from ..structural import SolverConfig, model_from_spec
from ..devices import on_device
from ..engine import patient_mesh
from .artefacts import diagnostics, manifest, summary_table, to_inference_data, write_fit
from .recipe import FitRecipe, check_against_spec, check_data_against_spec, load_recipe
from .samplers import Draws, _deterministic, run_nuts, run_optimiser

MARGINAL_METHODS = ("focei", "laplace")
RHAT_LIMIT = 1.01


@dataclass
class FitResult:
    """Everything a fit produced (``write_fit`` stores all but ``draws``)."""

    recipe: FitRecipe
    idata: az.InferenceData
    summary: pd.DataFrame
    diagnostics: dict
    manifest: dict
    draws: Draws
    tables: dict = dataclasses.field(default_factory=dict)  # name → DataFrame, written as <name>.csv

    @property
    def converged(self) -> bool:
        """The method's convergence checks passed (``diagnostics["converged"]``)."""
        return bool(self.diagnostics.get("converged"))


def recipe_spec(recipe: FitRecipe, spec=None):
    """The recipe's model spec (or ``spec``), with its ``values`` file and ``estimate`` list
    applied (all others fixed)."""
    spec = load_spec(recipe.spec_path) if spec is None else spec
    check_against_spec(recipe, spec)  # a wrong name is the recipe's problem, not the spec's
    if recipe.values_path is not None:
        spec = spec.with_values(*read_values(recipe.values_path))
    if recipe.estimate is None:
        return spec
    others = [p.name for p in spec.parameters if p.estimate and p.name not in recipe.estimate]
    return spec.with_fixed(others).with_estimated(recipe.estimate)


def recipe_structural(recipe: FitRecipe, spec):
    """The spec's structural model with the recipe's solver settings."""
    structural = model_from_spec(spec)
    if not recipe.solver:
        return structural
    solver = SolverConfig(**{**dataclasses.asdict(structural.solver), **dict(recipe.solver)})
    return dataclasses.replace(structural, solver_config=solver)


def fit(recipe: FitRecipe | str | Path, *, progress: bool = True, dataset=None, spec=None) -> FitResult:
    """Fit a recipe by NUTS, SVI or MAP.

    Args:
        recipe: a ``FitRecipe`` or the path of its TOML.
        progress: print progress (NumPyro's bar for NUTS, a line per 5% for SVI/MAP) to stderr.
        dataset: an already-read ``Dataset`` to fit instead of reading ``recipe.data_path``
            (simulation studies); the manifest then records no data hash.
        spec: a ``ModelSpec`` to use instead of loading ``recipe.spec_path`` (e.g. one with
            calibrated values, ``ModelSpec.with_values``); the recipe's ``estimate`` applies.

    Returns:
        ``FitResult``; draws of a NUTS fit are ``(chains, draws)``, of SVI ``(1, draws)``, of
        MAP a single draw.
    """
    if not isinstance(recipe, FitRecipe):
        recipe = load_recipe(recipe)
    spec = recipe_spec(recipe, spec)
    structural = recipe_structural(recipe, spec)
    if dataset is None:
        dataset = recipe.read_data()  # with the recipe's [data] units, sep, ignore, drop
    else:
        recipe = dataclasses.replace(recipe, data_sha256=None, data_path="<in memory>")
    check_data_against_spec(recipe, spec, dataset)  # names the data and spec files
    model, population, observed = build_model(spec, dataset, structural=structural,
                                              random_effects=recipe.random_effects, correlated=recipe.correlated)
    if recipe.method in MARGINAL_METHODS:
        with on_device(recipe.device, batch=model.n_patients) as device:
            return _fit_marginal(recipe, spec, model, population, observed, dataset, progress, device)
    failures_before = SOLVER_FAILURES.evaluations
    # The batch a device sees is every patient of every vectorised chain.
    batch = model.n_patients * (recipe.nuts.chains if recipe.method == "nuts" else 1)
    with on_device(recipe.device, batch=batch) as device:
        model, chain_method = spread_over_devices(model, recipe, jax.devices(device.platform))
        draws, output_key = _run_method(recipe, model, observed, progress, chain_method)
        idata = to_inference_data(draws, model, observed, population, dataset, key=output_key)
    summary = summary_table(idata)
    report = diagnostics(draws, summary, solver_failures=SOLVER_FAILURES.evaluations - failures_before,
                         device=device)
    report.update(sampling_convergence(recipe.method, report, draws))
    return FitResult(recipe, idata, summary, report, manifest(recipe, spec, seed=recipe.seed, device=device), draws)


def sampling_convergence(method: str, report: dict, draws: Draws) -> dict:
    """``converged`` and why, for NUTS (every R-hat ≤ 1.01 and no divergence), SVI and MAP
    (the loss no longer falling: the mean of the last quarter of steps is not below the mean
    of the quarter before by more than twice its standard error, or by more than 1e-4
    relative)."""
    if method == "nuts":
        rhat, divergences = report["max_rhat"], report["divergences"]
        ok = rhat is not None and rhat <= RHAT_LIMIT and divergences == 0
        why = f"max R-hat {rhat} (limit {RHAT_LIMIT}), {divergences} divergences"
        return {"converged": bool(ok), "convergence_message": ("converged: " if ok else "not converged: ") + why}
    losses = np.asarray(draws.losses if draws.losses is not None else [], dtype=float)
    if losses.size < 8 or not np.all(np.isfinite(losses[-losses.size // 2:])):
        return {"converged": False, "convergence_message": "not converged: too few finite losses to judge"}
    quarter = losses.size // 4
    third, last = losses[-2 * quarter:-quarter], losses[-quarter:]
    drop = float(third.mean() - last.mean())
    noise = 2.0 * float(last.std(ddof=1)) / np.sqrt(last.size)
    ok = drop <= noise or drop <= 1e-4 * abs(float(last.mean()))
    why = (f"mean loss {third.mean():.6g} in the third quarter of the steps, {last.mean():.6g} in the last "
           f"(drop {drop:.3g}; noise {noise:.3g})")
    return {"converged": bool(ok), "convergence_message": ("converged: " if ok else "not converged, the loss is "
                                                           "still falling: ") + why}


def _fit_marginal(recipe, spec, model, population, observed, dataset, progress, device) -> FitResult:
    """FOCE-I or Laplace (``itp_pd.estimation``), then parameter draws from the asymptotic
    normal of the estimate, stored like posterior draws so that reports, virtual trials and
    forecasts use them unchanged."""
    import time

    from ..estimation.outer import OuterSettings
    from ..estimation.population_fit import fit_population, latent_samples, parameter_draws

    settings = recipe.focei
    # The recipe's [focei] section holds the estimator's settings and, besides, the draws'.
    outer_settings = OuterSettings(**{name: getattr(settings, name) for name in OuterSettings.__dataclass_fields__})

    def say(iteration, ofv, gmax):
        if progress:
            print(f"{recipe.method}: iteration {iteration}, OFV {ofv:.4f}, max |gradient| {gmax:.3g}",
                  file=sys.stderr, flush=True)

    started = time.perf_counter()
    result = fit_population(model, observed, population, dataset, method=recipe.method, settings=outer_settings,
                            progress=say)
    draw_key, output_key = jax.random.split(jax.random.PRNGKey(recipe.seed))
    xs = parameter_draws(result, settings.draws, key=draw_key)
    cov = result.outer.covariance
    sir = None
    if settings.sir and cov is not None and cov.ok:
        from ..estimation.sir import sample_importance_resample

        sir = sample_importance_resample(result.setup.problem, result.setup.data, result.outer.x, result.outer.ofv,
                                         result.outer.eta, cov.covariance, outer_settings,
                                         samples=settings.sir_samples, resamples=settings.sir_resamples, key=draw_key,
                                         sensitivity=result.outer.sensitivity)
        xs = sir.draws
    latent = latent_samples(result, xs)
    with jax.numpy_dtype_promotion("standard"):
        derived = _deterministic(model, model.data, jnp.asarray(observed.value), latent, draw_key)
    samples = {k: np.asarray(v)[None] for k, v in {**latent, **derived}.items()}
    draws = Draws(recipe.method, samples, {}, 0.0, time.perf_counter() - started, np.asarray(result.outer.history))
    idata = to_inference_data(draws, model, observed, population, dataset, key=output_key)
    summary = summary_table(idata)
    report = diagnostics(draws, summary, solver_failures=0, device=device)
    report.update(result.summary)
    report["converged"] = bool(result.ok)
    report["draws_from"] = ("sampling importance resampling (SIR) from the asymptotic normal" if sir is not None
                            else "asymptotic normal of the estimate (covariance step)" if len(xs) > 1
                            else "the estimate alone (the covariance step failed)")
    if sir is not None:
        report["sir"] = {"samples": sir.samples, "resamples": sir.resamples, "ess": sir.ess, "failed": sir.failed,
                         "run_s": round(sir.run_s, 3), "s_per_proposal": round(sir.run_s / max(sir.samples, 1), 4)}
    estimates = result.estimates
    if sir is not None and len(xs) > 1:  # PsN's sir intervals: percentiles of the resamples
        from ..estimation.population_fit import draw_intervals

        bounds = draw_intervals(result.setup, xs).set_index("parameter")
        estimates = estimates.assign(sir_lower95=estimates["parameter"].map(bounds["lower"]),
                                     sir_upper95=estimates["parameter"].map(bounds["upper"]))
    tables = {"estimates": estimates, "individual": result.individual, "residuals": result.residuals}
    return FitResult(recipe, idata, summary, report, manifest(recipe, spec, seed=recipe.seed, device=device), draws,
                     tables)


def spread_over_devices(model, recipe: FitRecipe, devices) -> tuple:
    """``(model, chain_method)`` for a fit on ``devices`` (the chosen device and its peers).

    With several devices, NUTS chains go one per device when there are enough devices (they
    need no communication); otherwise the patients' ODE solves are split across the devices
    (``shard_map``), population parameters replicated. One device: unchanged, chains
    vectorised. A model without ODE states (closed-form PK) is never split: its algebra is
    cheaper than the split (``itp_pd.engine.default_patient_mesh``).
    """
    chains = recipe.nuts.chains if recipe.method == "nuts" else 1
    if chains > 1 and len(devices) >= chains:
        return model, "parallel"
    if len(devices) > 1 and model.structural.n_nonlinear_states:
        return model.with_mesh(patient_mesh(devices)), "vectorized"
    return model, "vectorized"


def _run_method(recipe, model, observed, progress, chain_method):
    """The recipe's method on ``model``: ``(draws, key for the output's simulations)``."""
    obs = jnp.asarray(observed.value)
    key = jax.random.PRNGKey(recipe.seed)
    init_key, run_key, output_key = jax.random.split(key, 3)
    if recipe.method == "nuts":
        init_values = None
        compile_before = 0.0
        if recipe.nuts.init != "median":
            settings = recipe.map if recipe.nuts.init == "map" else recipe.svi
            start, guide, params = run_optimiser(model, model.data, obs, recipe.nuts.init, settings,
                                                 key=init_key, progress=progress)
            with jax.numpy_dtype_promotion("standard"):
                init_values = guide.median(params)
            compile_before = start.compile_s
        draws = run_nuts(model, model.data, obs, recipe.nuts, key=run_key, init_values=init_values,
                         progress=progress, chain_method=chain_method)
        draws.compile_s += compile_before
    else:
        settings = recipe.svi if recipe.method == "svi" else recipe.map
        draws, _, _ = run_optimiser(model, model.data, obs, recipe.method, settings, key=run_key,
                                    progress=progress)
    return draws, output_key


def run_recipe(path: str | Path, *, progress: bool = True) -> Path:
    """Fit the recipe at ``path`` and write its artefacts to ``<recipe folder>/<name>/``."""
    result = fit(path, progress=progress)
    return write_fit(result, result.recipe.output_dir)
