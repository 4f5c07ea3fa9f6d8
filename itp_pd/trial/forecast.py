"""Individual forecasts: one patient's posterior from their first counts, then each regimen.

Given one patient's NONMEM rows (baseline and first weeks of platelet counts, with the doses
they received) and population draws (a fitted posterior, or the default population), the
patient's posterior is found by sampling importance resampling (SIR), a standard Bayesian
forecasting method that needs no gradients and no tuning:

1. candidates: ``n_candidates`` parameter sets, spread evenly over the population draws, each
   with the patient's own covariates and a fresh draw of every random effect (the prior of
   this patient given the population; no eligibility redraw, the data decide);
2. weights: the likelihood of the patient's observed counts under each candidate (the spec's
   residual error, BLQ rows by M3, the same observation distribution a fit uses);
3. resampling: ``n_samples`` candidates drawn in proportion to their weights.

The effective sample size ``ess = (Σw)²/Σw²`` says how well the candidates covered the
posterior; below ``min_ess`` the candidates are topped up (doubling) up to ``max_candidates``.
Each posterior sample is then simulated under every candidate arm from day 0 (the first
treatment) at the design's visits, measured with residual error, and scored: the response
probabilities are the shares of posterior samples that respond. To forecast a change of
course (say iguratimod added at week 4), write it as an arm whose regimens start later
(``regimens.iguratimod(..., start_day=28)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..data import Dataset
from ..engine import population_from_dataset, simulate_population
from ..errors import DatasetError
from ..stats.model import build_model
from ..stats.residual import residual_sd
from .endpoints import compute_endpoints, relapsed_by
from .measurement import simulate_measurements
from .population import PopulationDraws, numpy_seed
from .virtual_trial import (
    TWELVE_MONTHS,
    TrialDesign,
    arm_templates,
    as_arms,
    grid_sizes,
    repeat_patient,
    trial_structural,
)
from .virtual_population import sample_patients


@dataclass(frozen=True)
class Forecast:
    """A patient's forecast (see the module docstring).

    Attributes:
        patient_id: the patient's ID.
        table: one row per arm: probabilities of OR, CR and SR, of relapse by 12 months, and
            the median time to response among the samples that respond (days).
        visits: forecast visit days; platelets: arm → ``(n_samples, n_visits)`` predicted
            counts (10⁹/L) of the posterior samples.
        parameters: name → ``(n_samples,)`` posterior samples of the individual parameters.
        ess: effective sample size of the importance weights; n_candidates: candidates used.
        observed: the patient's observed counts (TIME, DV) for plots.
    """

    patient_id: float
    table: pd.DataFrame
    visits: np.ndarray
    platelets: dict
    parameters: dict
    ess: float
    n_candidates: int
    observed: pd.DataFrame


def _patient_rows(dataset: Dataset, patient_id) -> Dataset:
    ids = dataset.patients()
    if patient_id not in ids:
        raise DatasetError([f"patient ID {patient_id!r} is not in the dataset; its IDs are "
                            f"{', '.join(f'{i:g}' for i in ids[:20])}{' ...' if len(ids) > 20 else ''}"])
    mine = (dataset.table["ID"] == patient_id).to_numpy()
    table = dataset.table[mine].reset_index(drop=True)
    return Dataset(table, dataset.units, dataset.covariates, np.asarray(dataset.source_rows)[mine])


def _candidates(source: PopulationDraws, n: int, covariates: dict, seed: int):
    """``n`` parameter sets spread evenly over the draws; the draw of each, and the sigmas."""
    per_draw = np.diff(np.linspace(0, n, source.n_draws + 1).round().astype(int))
    params, draws = [], []
    for draw, count in enumerate(per_draw):
        if count == 0:
            continue
        typical, omega, exponents = source.values(draw)
        p, _ = sample_patients(source.spec, int(count), seed=[seed, draw, n],
                               typical=typical, omega=omega, exponents=exponents,
                               covariates={k: np.full(count, v) for k, v in covariates.items()},
                               entry_platelets=None)
        params.append(p)
        draws.append(np.full(count, draw))
    return {k: np.concatenate([p[k] for p in params]) for k in params[0]}, np.concatenate(draws)


def _log_likelihood(source, hierarchical, observed, structural, population, params, draws, batch):
    """Log-likelihood of the patient's data under each candidate, ``(n,)``; −inf if unsolved.

    The fit's own observation distribution (``HierarchicalModel.observation_distribution``:
    residual error, M3 for BLQ rows, padding masked), broadcast over the candidates. The
    candidates are simulated ``batch`` at a time: the forecasts' batch size, so one compiled
    program serves both.
    """
    predictions, status = [], []
    for start in range(0, len(draws), batch):
        index = np.minimum(np.arange(start, start + batch), len(draws) - 1)
        result = simulate_population(structural, {k: jnp.asarray(v[index]) for k, v in params.items()},
                                     repeat_patient(population, batch))
        keep = min(batch, len(draws) - start)
        predictions.append(np.asarray(result.predictions)[:keep])
        status.append(np.asarray(result.status)[:keep])
    solved = np.concatenate(status) == 0
    prediction = np.where(solved[:, None], np.concatenate(predictions), 1.0)
    data = hierarchical.data
    sd = np.ones_like(prediction)
    for o in hierarchical.observations:
        rows = np.asarray(data["is_data"] & (data["output"] == o.dvid - 1))
        sigmas = {f: source.sigma(o.name, f)[draws][:, None] for f, _, _ in o.sigmas}
        sd = np.where(rows, np.asarray(residual_sd(o.error, np.where(rows, prediction, 1.0), **sigmas)), sd)
    distribution = hierarchical.observation_distribution(jnp.asarray(prediction), jnp.asarray(sd))
    loglik = np.asarray(distribution.log_prob(jnp.asarray(observed.value))).sum(axis=-1)
    return np.where(solved, loglik, -np.inf)


def forecast_patient(
    source: PopulationDraws,
    dataset: Dataset,
    patient_id,
    arms,
    *,
    key,
    design: TrialDesign | None = None,
    n_candidates: int = 4000,
    n_samples: int = 400,
    min_ess: float = 100.0,
    max_candidates: int = 32000,
    structural=None,
) -> Forecast:
    """Forecast one patient's platelets and response under each arm (see the module docstring).

    Args:
        source: population draws (``posterior_population``/``fitted_population``/``prior_population``).
        dataset: a NONMEM-format dataset holding the patient (``read_nonmem``); the patient's
            observed rows (EVID 0, MDV 0) condition the forecast, BLQ rows by M3.
        patient_id: the patient's ID.
        arms: candidate arms (as ``simulate_trial`` takes them).
        key: JAX PRNG key (same key, same forecast).
        design: visits and follow-up of the forecast (default: the trial's, 52 weeks).
        n_candidates, max_candidates: importance-sampling candidates, first and at most.
        n_samples: posterior samples kept (resampled) and simulated under each arm.
        min_ess: effective sample size to reach before stopping the top-ups.
        structural: structural model (default: the spec's with ``TRIAL_SOLVER``).

    Returns:
        ``Forecast``.

    Raises:
        DatasetError: the ID is not in the dataset, the patient has no observed count, or a
            covariate the spec needs is missing.
    """
    design = TrialDesign() if design is None else design
    arms = as_arms(arms)
    structural = trial_structural(source.spec, structural)
    patient = _patient_rows(dataset, patient_id)
    if patient.observations().empty:
        raise DatasetError([f"patient {patient_id:g} has no observed counts (EVID 0, MDV 0) to condition on"])
    needed = sorted({e.covariate for p in source.spec.parameters for e in p.covariates})
    missing = [c for c in needed if c not in patient.table]
    if missing:
        raise DatasetError([f"patient {patient_id:g}: the spec needs covariates {missing}; add "
                            f"{'a column' if len(missing) == 1 else 'columns'} {', '.join(missing)} to the dataset"])
    covariates = {c: float(patient.table[c].iloc[0]) for c in needed}
    covariates.setdefault("BSA", float(patient.table["BSA"].iloc[0]) if "BSA" in patient.table else np.nan)
    # Every simulation below (the patient's history, each arm) gets the same padded sizes and
    # batch, so the whole forecast compiles one program.
    visits = design.visit_days()
    history_sizes = grid_sizes(population_from_dataset(patient, structural))
    templates = arm_templates(structural, arms, visits, at_least=history_sizes)
    per_m2 = [name for name, template in templates.items() if template.needs_bsa]
    if per_m2 and not np.isfinite(covariates["BSA"]):
        raise DatasetError([f"patient {patient_id:g} has no BSA, and arms {per_m2} dose per m²; add a BSA "
                            "column (m²) to the dataset or choose fixed-dose arms"])
    sizes = next(iter(templates.values())).sizes if templates else history_sizes
    hierarchical, population, observed = build_model(source.spec, patient, structural=structural, sizes=sizes)
    seed = numpy_seed(key)

    n = n_candidates
    while True:
        params, draws = _candidates(source, n, covariates, seed)
        loglik = _log_likelihood(source, hierarchical, observed, structural, population, params, draws, n_samples)
        finite = np.isfinite(loglik)
        weights = np.exp(loglik - loglik[finite].max()) if finite.any() else np.zeros_like(loglik)
        ess = float(weights.sum() ** 2 / np.sum(weights**2)) if weights.sum() > 0 else 0.0
        if ess >= min_ess or 2 * n > max_candidates:
            break
        n *= 2
    if ess == 0.0:
        raise DatasetError([f"patient {patient_id:g}: no candidate could be solved or explain the counts; "
                            "check the patient's units and doses"])
    rng = np.random.default_rng([seed, 1])
    # Systematic resampling: lower variance than multinomial for the same weights.
    positions = (rng.random() + np.arange(n_samples)) / n_samples
    chosen = np.minimum(np.searchsorted(np.cumsum(weights) / weights.sum(), positions), len(weights) - 1)
    samples = {k: v[chosen] for k, v in params.items()}
    sample_draws = draws[chosen]

    # Without per-m² doses BSA does not enter the grid; any finite stand-in gives the same doses.
    bsa = np.full(n_samples, covariates["BSA"] if np.isfinite(covariates["BSA"]) else 1.0)
    rows, platelets = [], {}
    for name, template in templates.items():
        result = simulate_population(structural, {k: jnp.asarray(v) for k, v in samples.items()},
                                     template.population(bsa))
        predicted = template.values(result.predictions)
        platelets[name] = predicted
        measured = np.stack([
            simulate_measurements(predicted[i], source.observation("PLT", sample_draws[i]),
                                  np.random.default_rng([seed, 2, i]))
            for i in range(n_samples)
        ])
        ok = np.asarray(result.status) == 0
        endpoints = compute_endpoints(np.broadcast_to(visits, measured.shape), np.where(ok[:, None], measured, 0.0),
                                      samples["PLT0"], horizon=min(7.0 * design.follow_up_weeks, TWELVE_MONTHS))
        ttr = np.asarray(endpoints.time_to_response)
        rows.append(dict(
            arm=name,
            # numpy means: np.mean of a JAX bool array would dispatch to jnp.mean (float32).
            overall_response=np.asarray(endpoints.overall_response).mean(),
            complete_response=np.asarray(endpoints.complete_response).mean(),
            sustained_response=np.asarray(endpoints.sustained_response).mean(),
            relapse_by_12_months=np.asarray(relapsed_by(endpoints, TWELVE_MONTHS)).mean(),
            median_time_to_response=float(np.nanmedian(ttr)) if np.isfinite(ttr).any() else np.nan,
            solver_failures=int((~ok).sum()),
        ))
    observed = patient.observations()[["TIME", "DV"]].reset_index(drop=True)
    return Forecast(patient_id=patient_id, table=pd.DataFrame(rows), visits=visits, platelets=platelets,
                    parameters=samples, ess=ess, n_candidates=len(draws), observed=observed)
