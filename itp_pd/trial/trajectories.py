"""Trajectories of virtual patients: one population, new patients, every arm, several outputs.

``simulate_trajectories`` answers "what do these regimens do to patients like ours?" without
the trial machinery: it samples ``n_patients`` eligible virtual patients from *one* population
(``central_population`` turns prior or posterior draws into one), gives each of them every arm
(the same patients in every arm), and returns the model outputs at the visits as a tidy table,
with the patients' parameters beside it. Parameter uncertainty is left out on purpose; a virtual
trial (``simulate_trial``) keeps it.

Units: time in days (day 0 = first treatment); platelets 10⁹/L; drug concentrations mg/L;
B cells and anti-platelet antibody relative to the patient's baseline; BSA m², age years.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..engine import simulate_population
from ..errors import ItpPdError
from .population import PopulationDraws
from .virtual_population import sample_patients
from .virtual_trial import TrialDesign, arm_templates, as_arms, trial_structural

# Outputs written by default, with their units (the ITP model's; science.md §2).
OUTPUT_UNITS = {
    "PLT": "10^9/L",
    "BCELL": "relative to baseline",
    "ANTIBODY": "relative to baseline",
    "C_RTX": "mg/L",
    "C_IGU": "mg/L",
}
SUMMARY_WEEKS = (4, 12, 26, 52)


def central_population(draws: PopulationDraws, statistic: str = "median") -> PopulationDraws:
    """One population from many draws: the ``statistic`` (``"median"`` or ``"mean"``) of each
    typical value, between-patient sd, covariate exponent and residual-error parameter."""
    reduce = {"median": np.median, "mean": np.mean}.get(statistic)
    if reduce is None:
        raise ValueError(f"statistic must be 'median' or 'mean', got {statistic!r}")

    def one(values):
        return np.asarray([reduce(np.asarray(values, dtype=float))])

    return PopulationDraws(
        draws.spec, 1,
        typical={name: one(v) for name, v in draws.typical.items()},
        omega={name: one(v) for name, v in draws.omega.items()},
        exponents={name: {cov: one(v) for cov, v in e.items()} for name, e in draws.exponents.items()},
        sigmas={key: one(v) for key, v in draws.sigmas.items()},
        description=draws.description if draws.n_draws == 1 else
        f"{draws.description} ({statistic} of {draws.n_draws} draws)",
    )


def weekly_visits(weeks: float) -> np.ndarray:
    """Days 0, 7, 14, ... up to and including the last day of follow-up (``7 · weeks``)."""
    if not weeks > 0:
        raise ValueError(f"weeks must be positive, got {weeks}")
    end = 7.0 * weeks
    return np.unique(np.append(np.arange(0.0, end, 7.0), end))


@dataclass(frozen=True)
class Trajectories:
    """What ``simulate_trajectories`` returns.

    Attributes:
        table: tidy, one row per arm × patient × visit × output: ``arm``, ``ID``, ``TIME``
            (days), ``output``, ``unit``, ``value`` (in ``unit``; NaN where the solve failed),
            ``status`` (solver status of the patient in the arm, 0 = solved).
        patients: one row per patient: ``ID``, ``BSA`` (m²), ``AGE`` (years) and every model
            parameter (spec units).
        arms: arm names in order; visits: visit days; outputs: output names; source: where the
            population came from.
    """

    table: pd.DataFrame
    patients: pd.DataFrame
    arms: tuple[str, ...]
    visits: np.ndarray
    outputs: tuple[str, ...]
    source: str

    def values(self, arm: str, output: str = "PLT") -> np.ndarray:
        """``(n_patients, n_visits)`` values of one output in one arm (NaN where failed)."""
        rows = self.table[(self.table["arm"] == arm) & (self.table["output"] == output)]
        if rows.empty:
            raise KeyError(f"no {output!r} of arm {arm!r}; arms {list(self.arms)}, outputs {list(self.outputs)}")
        return rows.pivot(index="ID", columns="TIME", values="value").to_numpy()

    def failures(self) -> dict[str, int]:
        """Patients whose solve failed, per arm."""
        first = self.table[self.table["output"] == self.outputs[0]]
        failed = first[first["status"] != 0].drop_duplicates(["arm", "ID"])
        return {arm: int((failed["arm"] == arm).sum()) for arm in self.arms}

    def summary(self, weeks=SUMMARY_WEEKS) -> pd.DataFrame:
        """Per arm: median platelets (10⁹/L) at each of ``weeks`` that is a visit (and at the
        last visit), the share of patients ≥ 30 ×10⁹/L at the last visit, and solver failures."""
        visit_weeks = self.visits / 7.0
        shown = [w for w in weeks if np.any(np.isclose(visit_weeks, w))]
        if not np.any(np.isclose(shown, visit_weeks[-1])):
            shown.append(float(visit_weeks[-1]))
        rows = []
        failures = self.failures()
        for arm in self.arms:
            platelets = self.values(arm, "PLT")
            row = {"arm": arm}
            for week in shown:
                column = int(np.argmin(np.abs(visit_weeks - week)))
                row[f"week {week:g}"] = float(np.nanmedian(platelets[:, column])) if np.isfinite(
                    platelets[:, column]).any() else np.nan
            last = platelets[:, -1]
            solved = np.isfinite(last)
            row["share ≥30 at end"] = float(np.mean(last[solved] >= 30.0)) if solved.any() else np.nan
            row["solver failures"] = failures[arm]
            rows.append(row)
        return pd.DataFrame(rows).set_index("arm")


def simulate_trajectories(
    population: PopulationDraws,
    arms,
    n_patients: int,
    visits,
    *,
    seed: int,
    outputs=tuple(OUTPUT_UNITS),
    design: TrialDesign | None = None,
    structural=None,
    batch_patients: int = 1024,
    progress=None,
) -> Trajectories:
    """Simulate ``n_patients`` new virtual patients of one population on every arm.

    Args:
        population: one population (``n_draws == 1``; ``central_population`` or
            ``prior_population(uncertain=(), n_draws=1)``).
        arms: mapping name → ``Arm`` (or arm text), or a sequence of arm names / texts.
        n_patients: virtual patients (the same ones in every arm).
        visits: increasing days at which outputs are reported (``weekly_visits``,
            ``trial_visits``).
        seed: seed of the patients' draws (enrolment as ``simulate_trial`` does it for a draw:
            covariates from ``design``, eligibility baseline < 30 ×10⁹/L).
        outputs: model outputs to report; those the model lacks are skipped, but PLT is needed.
        design: covariate distributions and eligibility (default ``TrialDesign()``).
        structural: the structural model (default the spec's with ``TRIAL_SOLVER``).
        batch_patients: patients simulated per call (bounds memory).
        progress: optional callable, called after every batch with the number of patient
            simulations done so far, summed over arms (ends at ``n_patients · len(arms)``).

    Raises:
        ItpPdError: a population of several draws, or a model without a PLT output.
    """
    if population.n_draws != 1:
        raise ItpPdError(f"simulate_trajectories needs one population, got {population.n_draws} draws; "
                         "use central_population(draws)")
    if int(n_patients) != n_patients or n_patients < 1:
        raise ValueError(f"n_patients must be a positive whole number, got {n_patients}")
    design = TrialDesign(n_per_arm=int(n_patients)) if design is None else design
    arms = as_arms(arms)
    model = trial_structural(population.spec, structural)
    outputs = tuple(name for name in outputs if name in model.outputs)
    if "PLT" not in outputs:
        raise ItpPdError(f"the model of spec {population.spec.name} has no PLT output (outputs: "
                         f"{', '.join(model.outputs)}); simulate needs the ITP model")
    visits = np.asarray(visits, dtype=float)

    covariates = design.sample_covariates(np.random.default_rng([seed, 0, 0]), int(n_patients))
    typical, omega, exponents = population.values(0)
    params, bsa = sample_patients(population.spec, int(n_patients), seed=[seed, 0, 1], typical=typical,
                                  omega=omega, exponents=exponents, covariates=covariates,
                                  entry_platelets=design.entry_platelets)
    ids = np.arange(1, int(n_patients) + 1)
    units = {name: OUTPUT_UNITS.get(name, "") for name in outputs}

    done = 0
    frames = []
    batch = min(batch_patients, len(bsa))
    for name, template in arm_templates(model, arms, visits, outputs=outputs).items():
        values = {output: [] for output in outputs}
        status = []
        for start in range(0, len(bsa), batch):
            stop = min(start + batch, len(bsa))
            index = np.minimum(np.arange(start, start + batch), stop - 1)  # pad: one shape for all batches
            result = simulate_population(model, {k: jnp.asarray(v[index]) for k, v in params.items()},
                                         template.population(bsa[index]))
            keep = stop - start
            for output in outputs:
                values[output].append(template.values(result.predictions, output)[:keep])
            status.append(np.asarray(result.status)[:keep])
            done += keep
            if progress is not None:
                progress(done)
        status = np.concatenate(status)
        for output in outputs:
            block = np.concatenate(values[output])
            block = np.where(status[:, None] == 0, block, np.nan)
            frames.append(pd.DataFrame({
                "arm": name,
                "ID": np.repeat(ids, len(visits)),
                "TIME": np.tile(visits, len(ids)),
                "output": output,
                "unit": units[output],
                "value": block.reshape(-1),
                "status": np.repeat(status.astype(int), len(visits)),
            }))
    patients = pd.DataFrame({"ID": ids, "BSA": bsa, "AGE": covariates["AGE"], **params})
    return Trajectories(table=pd.concat(frames, ignore_index=True), patients=patients, arms=tuple(arms),
                        visits=visits, outputs=outputs, source=population.description)

