"""What a fit leaves behind: ArviZ InferenceData, a summary table, diagnostics and a manifest.

``write_fit`` puts them in ``fits/<name>/``::

    posterior.nc        ArviZ InferenceData (NetCDF): posterior, sample_stats, log_likelihood,
                        posterior_predictive, observed_data, constant_data; dims ``patient``
                        (patient IDs) and ``obs`` (a patient's observation rows, padded)
    summary.csv         per population parameter: mean, sd, 5% and 95% quantiles, bulk/tail
                        ESS, R-hat
    diagnostics.json    divergences, max R-hat, min ESS, solver failures, times, device
    manifest.json       package versions, data/spec/recipe hashes, seed, command line; the
                        recipe, data, spec and values files by their paths relative to the
                        fit folder (so they still resolve after the folder is renamed into
                        place, or a project is moved whole)
    losses.csv          SVI and MAP: the loss (negative ELBO or log density) per step;
                        FOCE-I and Laplace: the OFV per outer iteration
    estimates.csv       FOCE-I and Laplace: parameter, estimate, se, rse_pct, lower95, upper95,
                        unit, cv_pct (natural units; Ω as variances); with SIR also
                        sir_lower95, sir_upper95 (percentiles of the resamples, as PsN's sir)
    individual.csv      FOCE-I and Laplace: EBEs and their conditional sds, individual
                        parameters, OFV per patient
    residuals.csv       FOCE-I and Laplace: PRED, IPRED, IWRES, CWRES per observation

The folder is written under a temporary name and renamed into place, so a fit killed half-way
leaves either the previous complete result or none, never a half-written one.

The observed variable is ``DV`` in the InferenceData (the NumPyro site is ``obs``, a name
xarray cannot give a variable that also names a dimension). Padding entries of ``obs`` (a
patient with fewer rows than the longest) hold NaN in ``observed_data`` and a log-likelihood
of exactly 0; ``constant_data.is_data`` marks the real rows.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

import arviz as az
import jax
import numpy as np
import pandas as pd

from ..output_folder import replaced_atomically
from .recipe import file_sha256

POPULATION_PREFIXES = ("pop_", "omega_", "beta_", "sigma_")
PACKAGES = ("itp-pd", "jax", "jaxlib", "diffrax", "equinox", "numpyro", "optax", "arviz", "numpy", "pandas")


def population_sites(samples) -> list[str]:
    """The population-level sites (typical values, IIV sds, covariate exponents, residual sds)."""
    return sorted(name for name in samples if name.startswith(POPULATION_PREFIXES))


def to_inference_data(draws, model, observed, population, dataset, *, key) -> az.InferenceData:
    """ArviZ InferenceData of a fit, with pointwise log-likelihood and posterior predictive.

    Both come from the recorded ``prediction`` and ``residual_sd`` of each draw through the
    model's own observation distribution, so no ODE is solved again.
    """
    samples = dict(draws.samples)
    prediction = samples.pop("prediction")
    sd = samples.pop("residual_sd")
    distribution = model.observation_distribution(prediction, sd)
    value = np.where(observed.is_data, observed.value, 1.0)
    with jax.numpy_dtype_promotion("standard"):
        log_likelihood = np.asarray(distribution.log_prob(value))
        replicated = np.asarray(distribution.sample(key))
    is_data = observed.is_data
    rows = population.obs_rows
    take = np.where(rows >= 0, rows, 0)
    table = dataset.table
    time = np.where(rows >= 0, table["TIME"].to_numpy(dtype=float)[take], np.nan)
    dvid = np.where(rows >= 0, table["DVID"].to_numpy(dtype=float)[take], np.nan)

    patient_sites = [name for name, v in samples.items()
                     if name.startswith(("z_", "eta_")) and v.ndim == 3 and v.shape[2] == population.n_patients]
    dims = {name: ["patient"] for name in patient_sites}
    dims.update({"DV": ["patient", "obs"], "prediction": ["patient", "obs"], "is_data": ["patient", "obs"],
                 "TIME": ["patient", "obs"], "DVID": ["patient", "obs"]})
    if "z_IIV" in samples:
        dims["z_IIV"] = ["patient", "random_effect"]
    coords = {"patient": np.asarray(population.ids, dtype=float), "obs": np.arange(is_data.shape[1]),
              "random_effect": list(model.correlated)}
    return az.from_dict(
        posterior=samples,
        sample_stats=draws.sample_stats or None,
        log_likelihood={"DV": np.where(is_data, log_likelihood, 0.0)},
        posterior_predictive={"DV": np.where(is_data, replicated, np.nan), "prediction": prediction},
        observed_data={"DV": np.where(is_data, observed.value, np.nan)},
        constant_data={"is_data": is_data, "TIME": time, "DVID": dvid},
        coords=coords,
        dims=dims,
    )


def summary_table(idata: az.InferenceData) -> pd.DataFrame:
    """Mean, sd, 5%/95% quantiles, bulk/tail ESS and R-hat of each population parameter.

    ESS and R-hat are ArviZ's rank-normalised ones (Vehtari et al. 2021); they are NaN for a
    single draw (MAP).
    """
    posterior = idata.posterior
    names = population_sites(posterior.data_vars)
    rows = []
    diagnostics = az.summary(idata, var_names=names, kind="diagnostics", round_to="none") if posterior.sizes["draw"] > 1 else None
    for name in names:
        values = posterior[name].values.reshape(-1)
        row = {"parameter": name, "mean": values.mean(), "sd": values.std(ddof=1) if values.size > 1 else np.nan,
               "q5": np.quantile(values, 0.05), "q95": np.quantile(values, 0.95)}
        for column, source in (("ess_bulk", "ess_bulk"), ("ess_tail", "ess_tail"), ("r_hat", "r_hat")):
            row[column] = float(diagnostics.loc[name, source]) if diagnostics is not None else np.nan
        rows.append(row)
    return pd.DataFrame(rows).set_index("parameter")


def _finite_or_none(value):
    value = float(value)
    return value if np.isfinite(value) else None


def diagnostics(draws, summary: pd.DataFrame, *, solver_failures: int, device=None) -> dict:
    """Convergence and cost figures of a fit (JSON-ready); ``device``: where it ran (default
    JAX's default device)."""
    divergences = int(np.sum(draws.sample_stats["diverging"])) if "diverging" in draws.sample_stats else 0
    chains, n_draws = next(iter(draws.samples.values())).shape[:2]
    return {
        "method": draws.method,
        "chains": int(chains),
        "draws": int(n_draws),
        "divergences": divergences,
        "max_rhat": _finite_or_none(summary["r_hat"].max()),
        "min_ess_bulk": _finite_or_none(summary["ess_bulk"].min()),
        "min_ess_tail": _finite_or_none(summary["ess_tail"].min()),
        "min_bulk_ess_per_s": _finite_or_none(summary["ess_bulk"].min() / draws.run_s) if draws.run_s else None,
        "solver_failures": int(solver_failures),
        "compile_s": round(draws.compile_s, 3),
        "run_s": round(draws.run_s, 3),
        # None also when an optimiser stopped before its first step (no loss recorded).
        "final_loss": _finite_or_none(draws.losses[-1]) if draws.losses is not None and len(draws.losses) else None,
        "device": device_description(device),
    }


def device_description(device=None) -> str:
    """The JAX backend and device kind, e.g. ``cpu: cpu (2 cores)`` or ``gpu: NVIDIA H100``, of
    ``device`` (default: JAX's default device)."""
    device = device or jax.devices()[0]
    detail = f" ({os.cpu_count()} cores)" if device.platform == "cpu" else ""
    return f"{device.platform}: {device.device_kind}{detail}"


def manifest(recipe, spec, *, seed: int, device=None) -> dict:
    """Provenance of a fit: versions, hashes, seed, command line, device."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "recipe": str(recipe.path) if recipe.path else None,
        "recipe_sha256": recipe.sha256,
        "data": str(recipe.data_path),
        "data_sha256": recipe.data_sha256,
        "spec": str(spec.path),
        "spec_sha256": spec.sha256,
        "values": str(recipe.values_path) if recipe.values_path else None,
        "values_sha256": file_sha256(recipe.values_path) if recipe.values_path else None,
        "data_options": recipe.data_options() if hasattr(recipe, "data_options") else {},
        "method": recipe.method,
        "seed": seed,
        "command_line": sys.argv,
        "python": platform.python_version(),
        "packages": versions,
        "device": device_description(device),
        "x64": bool(jax.config.jax_enable_x64),
    }


MANIFEST_PATHS = ("recipe", "data", "spec", "values")


def relative_to_fit_folder(record: dict, directory: str | Path) -> dict:
    """``record`` (a ``manifest``) with its file paths relative to the fit folder ``directory``.

    A fit is written into a staging folder that is renamed into place, and the demo builds
    its whole project in one: absolute paths recorded during the run name folders that no
    longer exist afterwards, while a path relative to the fit folder resolves wherever the
    finished folder ends up, as long as it moves together with its inputs. Entries that are
    not files on disk (an in-memory dataset's ``<simulated>``, None) are kept as they are.
    """
    base = Path(directory).resolve()
    out = dict(record)
    for key in MANIFEST_PATHS:
        value = record.get(key)
        if value and Path(value).is_file():
            out[key] = os.path.relpath(Path(value).resolve(), base)
    return out


def write_fit(result, directory: str | Path) -> Path:
    """Write a fit's artefacts to ``directory`` atomically (see the module docstring)."""
    directory = Path(directory)
    record = relative_to_fit_folder(result.manifest, directory)
    with replaced_atomically(directory) as staging:
        result.idata.to_netcdf(staging / "posterior.nc")
        result.summary.to_csv(staging / "summary.csv", float_format="%.6g")
        (staging / "diagnostics.json").write_text(json.dumps(result.diagnostics, indent=2) + "\n")
        (staging / "manifest.json").write_text(json.dumps(record, indent=2) + "\n")
        losses = result.draws.losses if result.draws is not None else None
        if losses is not None:
            pd.DataFrame({"step": np.arange(1, len(losses) + 1), "loss": losses}).to_csv(
                staging / "losses.csv", index=False, float_format="%.8g")
        for name, table in getattr(result, "tables", {}).items():
            table.to_csv(staging / f"{name}.csv", index=False, float_format="%.8g")
    return directory
