"""Virtual trials: population draws × newly sampled patients × arms → endpoint tables.

``simulate_trial(source, arms, design, key=...)`` answers "what if we gave it differently?"
with both kinds of uncertainty kept apart (see ``population.py``): for each draw of population
values, ``design.n_per_arm`` new virtual patients are sampled (eligibility, BSA and age from the
design); every arm is given to *the same* patients, measured with the same residual-error draws
(common random numbers), so differences between arms are differences of treatment, not of
enrolment, and arms that share a regimen give identical results. Endpoints (OR, CR, SR, time to
response, relapse) are computed on measured counts at the design's visits, as a trial would.

Memory stays bounded: arms are simulated one batch of at most ``batch_patients`` patients at a
time, and every batch has the same padded shape (one compiled program per arm). Each arm's
event grid is built once, for two template patients, and scaled by each patient's BSA: doses
are linear in BSA (a dose is either a fixed amount or an amount per m²).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..dosing import Arm
from ..engine import Population, simulate_population
from ..errors import ItpPdError
from ..structural import SolverConfig, model_from_spec
from .design import trial_visits
from .endpoints import Endpoints, compute_endpoints, relapsed_by
from .measurement import simulate_measurements
from .population import PopulationDraws, numpy_seed
from .regimens import make_arm
from .simulate_arm import prepare_arm
from .virtual_population import BSA_MEAN, BSA_RANGE, BSA_SD, ENTRY_PLATELETS, sample_patients

# Endpoints are read from counts measured with ~20% error, so the solver need not be as tight
# as a fit's: on 2,000 patients × 2 arms (4 prior draws) bosh3 at rtol 1e-4 moved predictions by
# at most 0.9% and flipped 2 OR, 1 CR, 0 SR and 2 relapse flags against rtol 1e-6, at about half
# the cost of the combination arm (benchmarks/simulate.py). rtol 1e-3 moved them 5%.
TRIAL_SOLVER = SolverConfig(solver="bosh3", rtol=1e-4, atol=1e-7)
AGE_MEAN, AGE_SD = 45.0, 14.0  # years; adult ITP trial populations [weak]
SIX_MONTHS, TWELVE_MONTHS = 182.5, 365.0  # days

# Patients per simulated batch: wide enough to fill a GPU, small enough to bound memory (a
# batch of 2,048 one-year combination-arm patients holds ~0.5 GB of solver state on the CPU).
BATCH_PATIENTS = 2048

# Endpoint columns of a trial table, and which direction is better for ``compare``.
ENDPOINTS = {
    "overall_response": "higher",
    "complete_response": "higher",
    "sustained_response": "higher",
    "median_time_to_response": "lower",
    "relapse_by_6_months": "lower",
    "relapse_by_12_months": "lower",
}


@dataclass(frozen=True)
class TrialDesign:
    """Who is enrolled, how many, and when they are seen.

    Attributes:
        n_per_arm: virtual patients per arm and draw.
        follow_up_weeks: follow-up from the first dose (weeks); OR and CR count within
            ``min(follow-up, 1 year)``.
        visits: visit days; default ``trial_visits(follow_up_weeks)`` (weekly to week 8, then
            every 2 and 4 weeks).
        entry_platelets: eligibility, baseline count below this (10⁹/L); NCT07057778: 30.
        age_range: eligible ages (years), drawn from a normal (mean 45, sd 14 [weak])
            truncated to the range; ``AGE`` is available to specs as a covariate.
        bsa_mean, bsa_sd, bsa_range: body-surface area distribution (m²), clipped to the range.
    """

    n_per_arm: int = 60
    follow_up_weeks: float = 52.0
    visits: tuple[float, ...] | None = None
    entry_platelets: float = ENTRY_PLATELETS
    age_range: tuple[float, float] = (18.0, 70.0)
    bsa_mean: float = BSA_MEAN
    bsa_sd: float = BSA_SD
    bsa_range: tuple[float, float] = BSA_RANGE

    def __post_init__(self):
        if int(self.n_per_arm) != self.n_per_arm or self.n_per_arm < 1:
            raise ValueError(f"n_per_arm must be a positive whole number of patients, got {self.n_per_arm}")
        if self.visits is not None:
            visits = np.asarray(self.visits, dtype=float)
            if visits.ndim != 1 or visits.size < 2 or np.any(np.diff(visits) <= 0):
                raise ValueError("visits must be at least two increasing days, e.g. (0, 7, 14, 28)")

    def visit_days(self) -> np.ndarray:
        return trial_visits(self.follow_up_weeks) if self.visits is None else np.asarray(self.visits, dtype=float)

    def sample_covariates(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        """``BSA`` (m²) and ``AGE`` (years) of ``n`` eligible patients."""
        bsa = np.clip(rng.normal(self.bsa_mean, self.bsa_sd, n), *self.bsa_range)
        low, high = self.age_range
        age = rng.normal(AGE_MEAN, AGE_SD, n)
        while (outside := (age < low) | (age > high)).any():
            age[outside] = rng.normal(AGE_MEAN, AGE_SD, outside.sum())
        return {"BSA": bsa, "AGE": age}


@dataclass(frozen=True)
class TrialResult:
    """What ``simulate_trial`` returns.

    Attributes:
        table: one row per draw × arm: ``draw, arm, patients`` and the ``ENDPOINTS`` columns
            (rates as fractions; relapse as a fraction of responders; median time in days),
            and ``solver_failures`` (patients whose solve failed; counted as non-responders).
        patients: per-patient endpoints, name → ``(n_draws, n_arms, n_per_arm)``
            (``overall_response``, ``complete_response``, ``sustained_response``,
            ``time_to_response``, ``relapse``, ``time_to_relapse``), plus ``baseline``
            (10⁹/L, ``(n_draws, n_per_arm)``).
        arms: arm names, in the order of the arm axis.
        visits: visit days.
        platelets: predicted counts ``(n_draws, n_arms, n_per_arm, n_visits)`` (10⁹/L) when
            trajectories were asked for, else None; ``measured`` likewise, with residual error.
        source, design: where the population draws came from, and the design.
    """

    table: pd.DataFrame
    patients: Mapping[str, np.ndarray]
    arms: tuple[str, ...]
    visits: np.ndarray
    source: str
    design: TrialDesign
    platelets: np.ndarray | None = None
    measured: np.ndarray | None = None

    @property
    def n_draws(self) -> int:
        return int(self.table["draw"].max()) + 1

    def arm_index(self, arm: str) -> int:
        if arm not in self.arms:
            raise KeyError(f"no arm {arm!r} in this trial; its arms are {list(self.arms)}")
        return self.arms.index(arm)

    def response_over_time(self, days) -> np.ndarray:
        """Fraction of patients with a confirmed OR by each day: ``(n_draws, n_arms, len(days))``."""
        ttr = self.patients["time_to_response"][..., None]
        return np.mean(np.nan_to_num(ttr, nan=np.inf) <= np.asarray(days, dtype=float), axis=-2)


def as_arms(arms) -> dict[str, Arm]:
    """Arms given as a mapping name → Arm or text, or a sequence of names (``make_arm``) or Arms."""
    if isinstance(arms, Mapping):
        return {name: arm if isinstance(arm, Arm) else make_arm(arm, name=name) for name, arm in arms.items()}
    result = {}
    for arm in arms:
        arm = arm if isinstance(arm, Arm) else make_arm(arm)
        if arm.name in result:
            raise ValueError(f"arm {arm.name!r} is listed twice; give each arm a distinct name")
        result[arm.name] = arm
    return result


def repeat_patient(population: Population, n: int, patient: int = 0) -> Population:
    """``n`` copies of one patient of ``population`` (same records), for ``n`` parameter sets."""
    def tile(leaf):
        return jnp.broadcast_to(leaf[patient], (n, *leaf.shape[1:]))

    return Population(grid=jax.tree.map(tile, population.grid), ids=tuple(range(1, n + 1)),
                      obs_rows=np.broadcast_to(population.obs_rows[patient], (n, population.obs_rows.shape[1])),
                      obs_is_data=np.broadcast_to(population.obs_is_data[patient], (n, population.obs_is_data.shape[1])))


def grid_sizes(population: Population) -> tuple[int, int, int]:
    """Padded ``(n_events, n_segments, n_obs)`` of a population's grids."""
    grid = population.grid
    return grid.times.shape[-1], grid.breakpoints.shape[-1], grid.obs_event.shape[-1]


def arm_templates(model, arms: Mapping[str, Arm], visits, *, at_least=(0, 0, 0),
                  outputs=("PLT",)) -> dict[str, ArmTemplate]:
    """One template per arm, all padded to the same sizes (at least ``at_least``), so that every
    arm runs the same compiled program: one compilation instead of one per arm. ``outputs``:
    the model outputs observed at every visit."""
    natural = [ArmTemplate(model, arm, visits, outputs=outputs).sizes for arm in arms.values()]
    sizes = tuple(int(max(column)) for column in zip(at_least, *natural))
    return {name: ArmTemplate(model, arm, visits, outputs=outputs, sizes=sizes) for name, arm in arms.items()}


def trial_structural(spec, structural=None):
    """The structural model trials use: ``structural``, or the spec's with ``TRIAL_SOLVER``."""
    if structural is not None:
        return structural
    structural = model_from_spec(spec)
    if hasattr(structural, "solver_config"):
        structural = dataclasses.replace(structural, solver_config=TRIAL_SOLVER)
    return structural


class ArmTemplate:
    """One arm's event grid, built once and reused for any batch of patients.

    The grid is built for two template patients with BSA 1 and 2 m²; a patient with BSA b
    gets amounts and rates ``g₁ + (b − 1)(g₂ − g₁)``, exact for fixed and per-m² doses alike.
    """

    def __init__(self, model, arm: Arm, visits, outputs=("PLT",), sizes=None):
        params = {name: np.ones(2) for name in model.parameter_names}
        population, _, dataset = prepare_arm(model, params, arm, visits, outputs=outputs, bsa=np.array([1.0, 2.0]),
                                             sizes=sizes)
        self.template = population
        self.grid = population.grid
        rows = population.obs_rows[0]
        real = np.flatnonzero(rows >= 0)
        dvid = dataset.table["DVID"].to_numpy()[rows[real]]
        time = dataset.table["TIME"].to_numpy()[rows[real]]
        self.columns = {}
        for name in outputs:
            at = dvid == model.outputs.index(name) + 1
            if not np.array_equal(time[at], np.asarray(visits, dtype=float)):
                raise AssertionError(f"template observations of {name} are not the visits")  # a bug, not input
            self.columns[name] = real[at]

    def population(self, bsa: np.ndarray) -> Population:
        scale = jnp.asarray(bsa - 1.0)[:, None, None]
        population = repeat_patient(self.template, len(bsa))
        grid = dataclasses.replace(
            population.grid,
            bolus=self.grid.bolus[0] + scale * (self.grid.bolus[1] - self.grid.bolus[0]),
            rate=self.grid.rate[0] + scale * (self.grid.rate[1] - self.grid.rate[0]),
        )
        return dataclasses.replace(population, grid=grid)

    @property
    def needs_bsa(self) -> bool:
        """Whether any dose of the arm is given per m² (the two templates' doses differ)."""
        return not (np.array_equal(self.grid.bolus[0], self.grid.bolus[1])
                    and np.array_equal(self.grid.rate[0], self.grid.rate[1]))

    @property
    def sizes(self) -> tuple[int, int, int]:
        return grid_sizes(self.template)

    def values(self, predictions, name="PLT"):
        return np.asarray(predictions)[:, self.columns[name]]


def _sample_enrolment(source: PopulationDraws, design: TrialDesign, seed: int):
    """Every draw's patients: parameters ``(n_draws·n,)`` and BSA, draw after draw."""
    n = design.n_per_arm
    params, bsa = [], []
    for draw in range(source.n_draws):
        covariates = design.sample_covariates(np.random.default_rng([seed, draw, 0]), n)
        typical, omega, exponents = source.values(draw)
        p, b = sample_patients(source.spec, n, seed=[seed, draw, 1], typical=typical, omega=omega,
                               exponents=exponents, covariates=covariates,
                               entry_platelets=design.entry_platelets)
        params.append(p)
        bsa.append(b)
    return {name: np.concatenate([p[name] for p in params]) for name in params[0]}, np.concatenate(bsa)


def _simulate_arm_batches(model, template: ArmTemplate, params, bsa, batch_patients, chunk_size, on_batch=None):
    """Predicted PLT ``(n_total, n_visits)`` and solver status, a batch at a time; ``on_batch``
    (if given) is called with the number of patients of each batch once it is simulated."""
    total = len(bsa)
    batch = min(batch_patients, total)
    platelets, status = [], []
    for start in range(0, total, batch):
        stop = min(start + batch, total)
        # The last batch is padded with copies of its last patient, so every batch has one shape.
        index = np.minimum(np.arange(start, start + batch), stop - 1)
        result = simulate_population(model, {k: jnp.asarray(v[index]) for k, v in params.items()},
                                     template.population(bsa[index]), chunk_size=chunk_size)
        keep = stop - start
        platelets.append(template.values(result.predictions)[:keep])
        status.append(np.asarray(result.status)[:keep])
        if on_batch is not None:
            on_batch(keep)
    return np.concatenate(platelets), np.concatenate(status)


def simulate_trial(
    source: PopulationDraws,
    arms,
    design: TrialDesign | None = None,
    *,
    key,
    trajectories: bool = False,
    structural=None,
    batch_patients: int = BATCH_PATIENTS,
    chunk_size: int | None = None,
    progress=None,
) -> TrialResult:
    """Simulate a virtual trial of ``arms`` for every draw of ``source``.

    Args:
        source: population draws (``prior_population``, ``posterior_population``,
            ``fitted_population``).
        arms: mapping name → ``Arm`` (or arm text), or a sequence of arm names / texts / Arms
            (``make_arm``: ``"control"``, ``"rituximab 100 mg weekly x4 + iguratimod 25 mg qd
            12 weeks"``).
        design: ``TrialDesign`` (default: 60 patients per arm, 52 weeks, NCT07057778 visits).
        key: JAX PRNG key; the same key gives the same table, bit for bit.
        trajectories: keep predicted and measured counts per patient and visit.
        structural: the structural model (default ``model_from_spec(source.spec)`` with
            ``TRIAL_SOLVER``); pass one with other solver settings
            (``dataclasses.replace(model, solver_config=...)``).
        batch_patients: patients simulated per call (bounds memory; all calls share a shape).
        chunk_size: the engine's vectorised chunk (default ``default_chunk_size()``).
        progress: optional callable, called after every simulated batch with the number of
            patient simulations done so far, summed over arms (it ends at ``n_draws ·
            n_per_arm · len(arms)``); for progress bars only, it changes no result.

    Returns:
        ``TrialResult`` (table per draw × arm; per-patient endpoints; trajectories on request).
    """
    design = TrialDesign() if design is None else design
    arms = as_arms(arms)
    model = trial_structural(source.spec, structural)
    if "PLT" not in model.outputs:
        raise ItpPdError(f"the model of spec {source.spec.name} has no PLT output (outputs: "
                         f"{', '.join(model.outputs)}); virtual trials need the ITP model")
    visits = design.visit_days()
    seed = numpy_seed(key)
    n, n_draws = design.n_per_arm, source.n_draws
    params, bsa = _sample_enrolment(source, design, seed)

    done = 0

    def advance(count):
        nonlocal done
        done += count
        if progress is not None:
            progress(done)

    predicted, status = [], []
    for template in arm_templates(model, arms, visits).values():
        platelets, arm_status = _simulate_arm_batches(model, template, params, bsa, batch_patients, chunk_size,
                                                      on_batch=advance)
        predicted.append(platelets.reshape(n_draws, n, -1))
        status.append(arm_status.reshape(n_draws, n))
    predicted = np.stack(predicted, axis=1)  # (n_draws, n_arms, n, n_visits)
    status = np.stack(status, axis=1)
    predicted_for_endpoints = np.where(status[..., None] == 0, predicted, np.nan)

    measured = np.empty_like(predicted)
    for draw in range(n_draws):
        observation = source.observation("PLT", draw)
        for a in range(len(arms)):
            # The same residual-error draws in every arm: common random numbers.
            rng = np.random.default_rng([seed, draw, 2])
            measured[draw, a] = simulate_measurements(predicted_for_endpoints[draw, a], observation, rng)
    baseline = params["PLT0"].reshape(n_draws, 1, n)
    horizon = min(7.0 * design.follow_up_weeks, TWELVE_MONTHS)
    endpoints = compute_endpoints(
        np.broadcast_to(visits, measured.shape), np.nan_to_num(measured, nan=0.0),
        np.broadcast_to(baseline, measured.shape[:-1]), horizon=horizon,
    )
    table = _endpoint_table(endpoints, tuple(arms), status)
    patients = {name: np.asarray(getattr(endpoints, name)) for name in
                ("overall_response", "complete_response", "sustained_response", "time_to_response",
                 "relapse", "time_to_relapse")}
    patients["baseline"] = params["PLT0"].reshape(n_draws, n)
    return TrialResult(table=table, patients=patients, arms=tuple(arms), visits=visits,
                       source=source.description, design=design,
                       platelets=predicted if trajectories else None,
                       measured=measured if trajectories else None)


def _endpoint_table(endpoints: Endpoints, arms, status) -> pd.DataFrame:
    responders = np.asarray(endpoints.overall_response)
    n_draws, n_arms, n = responders.shape
    count = responders.sum(axis=-1)

    def among_responders(flags):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, np.asarray(flags).sum(axis=-1) / np.maximum(count, 1), np.nan)

    ttr = np.asarray(endpoints.time_to_response)
    median_ttr = np.full((n_draws, n_arms), np.nan)
    any_responder = count > 0
    median_ttr[any_responder] = np.nanmedian(ttr[any_responder], axis=-1)
    columns = {
        "overall_response": responders.mean(axis=-1),
        "complete_response": np.asarray(endpoints.complete_response).mean(axis=-1),
        "sustained_response": np.asarray(endpoints.sustained_response).mean(axis=-1),
        "median_time_to_response": median_ttr,
        "relapse_by_6_months": among_responders(relapsed_by(endpoints, SIX_MONTHS)),
        "relapse_by_12_months": among_responders(relapsed_by(endpoints, TWELVE_MONTHS)),
        "solver_failures": (status != 0).sum(axis=-1),
    }
    table = pd.DataFrame({
        "draw": np.repeat(np.arange(n_draws), n_arms),
        "arm": np.tile(np.asarray(arms, dtype=object), n_draws),
        "patients": n,
        **{name: values.reshape(-1) for name, values in columns.items()},
    })
    return table


def compare(result: TrialResult, arm: str, reference: str, *, level: float = 0.9) -> pd.DataFrame:
    """Difference ``arm − reference`` of each endpoint, over the draws, with a credible interval.

    Differences are taken within each draw (same population values, same patients), so they
    carry parameter uncertainty and the sampling of ``n_per_arm`` patients, not enrolment
    differences between arms.

    Args:
        result: a ``TrialResult``.
        arm, reference: arm names.
        level: central credible level of the interval (0.9: 5th to 95th percentile).

    Returns:
        one row per endpoint: ``endpoint``, ``arm``, ``reference`` (means over draws),
        ``difference`` (median), ``lower``, ``upper``, ``probability_better`` (share of draws
        in which ``arm`` is better: higher response, lower time to response or relapse; ties
        count half), and ``draws`` (draws with the endpoint defined in both arms).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    for name in (arm, reference):
        result.arm_index(name)  # a clear KeyError for an unknown arm
    table = result.table.set_index(["draw", "arm"])
    rows = []
    for endpoint, better in ENDPOINTS.items():
        a = table.xs(arm, level="arm")[endpoint].to_numpy(dtype=float)
        b = table.xs(reference, level="arm")[endpoint].to_numpy(dtype=float)
        defined = np.isfinite(a) & np.isfinite(b)
        difference = a[defined] - b[defined]
        if difference.size:
            sign = 1.0 if better == "higher" else -1.0
            wins = np.mean(sign * difference > 0) + 0.5 * np.mean(difference == 0)
            lower, median, upper = np.quantile(difference, [(1 - level) / 2, 0.5, (1 + level) / 2])
        else:
            wins = lower = median = upper = np.nan
        rows.append(dict(endpoint=endpoint, arm=np.nanmean(a) if np.isfinite(a).any() else np.nan,
                         reference=np.nanmean(b) if np.isfinite(b).any() else np.nan,
                         difference=median, lower=lower, upper=upper, probability_better=wins,
                         draws=int(defined.sum())))
    frame = pd.DataFrame(rows)
    frame.attrs.update(arm=arm, reference=reference, level=level)
    return frame
