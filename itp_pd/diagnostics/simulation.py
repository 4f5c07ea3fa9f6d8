"""Simulations a report needs: replicate datasets (new patients) and population predictions.

Both go through the fitted NumPyro model itself (``numpyro.infer.Predictive``), so there is no
second simulation path that can drift from what was fitted (design.md §1):

- **replicates** take population-level draws from the posterior (``pop_``, ``omega_``,
  ``beta_``, ``sigma_``, the IIV correlation), new standard-normal patient deviations ``z_*``
  and new residual errors: the predictive distribution of the observations of a new trial with the same design
  — what the visual predictive check and the NPD compare the data with;
- **population predictions** (PRED) set every eta to 0 at the posterior medians.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from numpyro.infer import Predictive

from ..inference import population_sites
from ..trial.population import numpy_seed

def population_level_sites(posterior) -> list[str]:
    """Names of the population-level latent sites of a posterior (no etas, no deterministics):
    the fit's population parameters and, when estimated, the Cholesky factor of the IIV
    correlation."""
    return population_sites(posterior.data_vars) + [name for name in ("corr_chol_IIV",) if name in posterior]


def flat_draws(posterior, names) -> dict[str, np.ndarray]:
    """``name → (chain·draw, ...)`` arrays."""
    out = {}
    for name in names:
        values = posterior[name].values
        out[name] = values.reshape(-1, *values.shape[2:])
    return out


def _z_shapes(posterior) -> dict[str, tuple]:
    """Shape of one draw of each standard-normal patient deviation ``z_*``."""
    return {name: tuple(posterior[name].shape[2:]) for name in posterior.data_vars if name.startswith("z_")}


@dataclass
class Replicates:
    """Replicate trials simulated from the posterior predictive distribution.

    Attributes:
        dv: simulated observations, ``(n_replicates, n_patients, n_obs)`` (uncensored: a BLQ
            rule is applied by whoever compares them with data).
        prediction: the matching model predictions (no residual error), same shape.
        failed: ``(n_replicates,)`` patients whose solve failed in each replicate.
    """

    dv: np.ndarray
    prediction: np.ndarray
    failed: np.ndarray


BATCH = 10  # draws per compiled call: bounds memory; PRED pads to it to share the program
_PROGRAMS: dict = {}


def _program(model):
    """One compiled simulation per fitted model (``HierarchicalModel`` hashes by structure)."""
    if model not in _PROGRAMS:
        @jax.jit
        def simulate(key, samples, data):
            predictive = Predictive(model, posterior_samples=samples, batch_ndims=1,
                                    return_sites=["obs", "prediction", "solver_failures"])
            return predictive(key, obs=None, data=data)

        _PROGRAMS[model] = simulate
    return _PROGRAMS[model]


def simulate_replicates(fit, n_replicates: int, *, key, batch: int = BATCH, progress=None) -> Replicates:
    """``n_replicates`` new trials of the fitted design, each from one posterior draw.

    Draws are taken without replacement when the posterior has enough (with replacement
    otherwise, e.g. MAP's single draw). They run ``batch`` at a time in one compiled program
    (the last batch is padded), which bounds memory and lets ``progress(done)`` report.
    """
    posterior = fit.idata.posterior
    draws = flat_draws(posterior, population_level_sites(posterior))
    available = next(iter(draws.values())).shape[0] if draws else 1
    rng = np.random.default_rng(numpy_seed(key))
    pick = rng.choice(available, size=n_replicates, replace=n_replicates > available)
    batch = min(batch, n_replicates)
    n_batches = -(-n_replicates // batch)
    pick = np.concatenate([pick, np.repeat(pick[-1:], n_batches * batch - n_replicates)])
    # New patients: standard-normal z (the model's own prior for them), drawn here so that
    # replicates and PRED (z = 0) share one compiled program.
    draws.update({name: rng.standard_normal((len(pick), *shape)) for name, shape in _z_shapes(posterior).items()})
    pick_z = np.arange(len(pick))
    simulate = _program(fit.model)
    keys = jax.random.split(key, n_batches)
    dv, prediction, failed = [], [], []
    with jax.numpy_dtype_promotion("standard"):
        for b in range(n_batches):
            chosen = pick[b * batch:(b + 1) * batch]
            rows = pick_z[b * batch:(b + 1) * batch]
            out = simulate(keys[b], {name: jnp.asarray(v[rows] if name.startswith("z_") else v[chosen])
                                     for name, v in draws.items()}, fit.model.data)
            dv.append(np.asarray(out["obs"]))
            prediction.append(np.asarray(out["prediction"]))
            failed.append(np.asarray(out["solver_failures"]))
            if progress is not None:
                progress(min((b + 1) * batch, n_replicates))
    return Replicates(np.concatenate(dv)[:n_replicates], np.concatenate(prediction)[:n_replicates],
                      np.concatenate(failed)[:n_replicates])


def population_predictions(fit) -> np.ndarray:
    """PRED: the model at the posterior medians of the population parameters with every eta
    0 (covariates still apply), ``(n_patients, n_obs)``."""
    posterior = fit.idata.posterior
    samples = {name: np.repeat(np.median(v, axis=0)[None], BATCH, axis=0) for name, v in
               flat_draws(posterior, population_level_sites(posterior)).items()}
    samples.update({name: np.zeros((BATCH, *shape)) for name, shape in _z_shapes(posterior).items()})
    with jax.numpy_dtype_promotion("standard"):
        out = _program(fit.model)(jax.random.PRNGKey(0), {k: jnp.asarray(v) for k, v in samples.items()},
                                  fit.model.data)
    return np.asarray(out["prediction"])[0]


def individual_predictions(fit, quantiles=(0.05, 0.5, 0.95)) -> np.ndarray:
    """IPRED band: quantiles over posterior draws of each patient's prediction,
    ``(len(quantiles), n_patients, n_obs)`` (MAP: the single draw, repeated)."""
    prediction = fit.idata.posterior_predictive["prediction"].values
    prediction = prediction.reshape(-1, *prediction.shape[2:])
    return np.quantile(prediction, quantiles, axis=0)


def observation_rows(fit) -> pd.DataFrame:
    """One row per fitted observation, with where it sits in the padded arrays.

    Columns: ``patient`` and ``slot`` (indices into ``(n_patients, n_obs)`` arrays), ``ID``,
    ``TIME`` (days), ``output`` (name), ``DV`` (internal unit), ``BLQ`` (censored, M3),
    ``LLOQ`` (limit of censored rows, NaN elsewhere), ``ARM`` (the dataset's ARM covariate at
    that row, or ``"all"`` when there is none).
    """
    observed, population, dataset = fit.observed, fit.population, fit.dataset
    patient, slot = np.nonzero(observed.is_data)
    rows = population.obs_rows[patient, slot]
    table = dataset.table
    outputs = fit.model.structural.outputs
    frame = pd.DataFrame({
        "patient": patient,
        "slot": slot,
        "ID": np.asarray(population.ids)[patient],
        "TIME": table["TIME"].to_numpy(dtype=float)[rows],
        "output": [outputs[int(k)] for k in observed.output[patient, slot]],
        "DV": observed.value[patient, slot],
        "BLQ": observed.censored[patient, slot],
        "LLOQ": np.where(observed.censored[patient, slot], observed.lloq[patient, slot], np.nan),
    })
    if "ARM" in table.columns:
        arm = table["ARM"].to_numpy()[rows]
        frame["ARM"] = [f"ARM {a:g}" if np.isfinite(a) else "ARM missing" for a in arm.astype(float)]
    else:
        frame["ARM"] = "all"
    return frame
