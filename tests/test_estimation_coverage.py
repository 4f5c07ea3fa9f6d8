"""Coverage of the FOCE-I covariance step's 95% intervals (issue 15): the PK example's design
simulated afresh 50 times from its known truth, each replicate fitted by FOCE-I, and the share
of replicates whose interval holds the truth counted per parameter (slow: 50 fits).

Accept 85–100% per parameter: with 50 replicates the binomial sd of a true 95% coverage is
3.1 points, so 85% is more than 3 sd below it, while a covariance step that is too small by a
third would cover about 80%.

Measured (2026-12-02, 11 min per covariance kind on the 2-core CPU), same 50 replicates:
- sandwich R⁻¹SR⁻¹ (the default, as NONMEM's): pop_CL 96%, pop_V1 94%, omega2_CL **84%**
  (below 85%: this case fails), omega2_V1 90%, sigma_CP 92%;
- 2R⁻¹ (``covariance = "r"``): 96%, 94%, 94%, 94%, 92%.
The estimates themselves are nearly unbiased (means over the replicates: omega2_CL 0.0867 for
a true 0.09, omega2_V1 0.0397 for 0.04), so it is the sandwich's known small-sample
underestimate of the variance (40 patients) that makes omega2_CL's interval too short."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import jax
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
REPLICATES = 50


def _simulator():
    spec = importlib.util.spec_from_file_location("simulate_pk_trial", ROOT / "examples" / "simulate_pk_trial.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("covariance", ["sandwich", "r"])
def test_pk_covariance_step_intervals_cover_the_truth(covariance):
    from itp_pd.estimation.outer import OuterSettings
    from itp_pd.estimation.population_fit import fit_population
    from itp_pd.inference import load_recipe
    from itp_pd.inference.fit import recipe_spec, recipe_structural
    from itp_pd.stats.model import build_model

    simulator = _simulator()
    truth = simulator.TRUTH
    truth = {"pop_CL": truth["pop_CL"], "pop_V1": truth["pop_V1"], "omega2_CL": truth["omega_CL"] ** 2,
             "omega2_V1": truth["omega_V1"] ** 2, "sigma_CP": truth["sigma_CP"]}
    recipe = load_recipe(ROOT / "fits" / "pk_2cmt_example.toml")
    recipe = dataclasses.replace(recipe, method="focei")
    spec = recipe_spec(recipe)
    covered = {name: 0 for name in truth}
    fitted = 0
    for replicate in range(REPLICATES):
        # Seeds 101.. so that no replicate is the committed example (seed 1).
        dataset = simulator.simulate(40, seed=101 + replicate)
        model, population, observed = build_model(spec, dataset, structural=recipe_structural(recipe, spec),
                                                  random_effects=recipe.random_effects)
        result = fit_population(model, observed, population, dataset, method="focei",
                                settings=OuterSettings(covariance=covariance))
        assert result.ok, f"replicate {replicate}: {result.summary['convergence_message']}"
        table = result.estimates.set_index("parameter")
        for name, value in truth.items():
            covered[name] += bool(table.loc[name, "lower95"] <= value <= table.loc[name, "upper95"])
        fitted += 1
        # Each replicate's problem is a new static argument of the compiled functions, so
        # their executables pile up; 5 replicates in, the process ran out of memory maps.
        jax.clear_caches()
    coverage = {name: count / fitted for name, count in covered.items()}
    print("coverage of the 95% intervals over", fitted, "replicates:", coverage)
    for name, share in coverage.items():
        assert 0.85 <= share <= 1.0, (name, coverage)
