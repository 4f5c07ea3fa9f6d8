"""FOCE-I on the committed PK example against its NUTS posterior; the fit folder it writes; the
convergence exit code; bad input refused before any fitting."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from itp_pd.cli import main
from itp_pd.data import read_nonmem
from itp_pd.errors import ItpPdError, SpecError
from itp_pd.estimation.population_fit import fit_population
from itp_pd.inference import load_recipe
from itp_pd.inference.fit import recipe_spec, recipe_structural
from itp_pd.stats.model import build_model

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "fits" / "pk_2cmt_example.toml"
NUTS = pd.read_csv(Path(__file__).parent / "data" / "pk_2cmt_nuts_summary.csv", comment="#", index_col="parameter")


def _model(**recipe_changes):
    recipe = dataclasses.replace(load_recipe(RECIPE), **recipe_changes)
    spec = recipe_spec(recipe)
    dataset = read_nonmem(recipe.data_path)
    model, population, observed = build_model(spec, dataset, structural=recipe_structural(recipe, spec),
                                              random_effects=recipe.random_effects)
    return model, population, observed, dataset


@pytest.fixture(scope="module")
def pk_fit():
    model, population, observed, dataset = _model()
    return fit_population(model, observed, population, dataset, method="focei")


def test_pk_example_focei_agrees_with_nuts(pk_fit):
    assert pk_fit.ok, pk_fit.summary["convergence_message"]
    est = pk_fit.estimates.set_index("parameter")["estimate"]
    for name in ("pop_CL", "pop_V1"):
        # The criterion: typical values within one posterior sd of the NUTS mean.
        assert abs(est[name] - NUTS.loc[name, "mean"]) < NUTS.loc[name, "sd"], name
    for name in ("CL", "V1"):
        assert np.sqrt(est[f"omega2_{name}"]) == pytest.approx(NUTS.loc[f"omega_{name}", "mean"], rel=0.2)
    assert est["sigma_CP"] == pytest.approx(NUTS.loc["sigma_CP", "mean"], rel=0.2)
    se = pk_fit.estimates.set_index("parameter")["se"]
    # Asymptotic SEs of the typical values and sigma against the posterior sds: same scale.
    for name in ("pop_CL", "pop_V1", "sigma_CP"):
        assert 0.7 < se[name] / NUTS.loc[name, "sd"] < 1.4, name


def test_pk_example_tables(pk_fit):
    summary = pk_fit.summary
    assert summary["ofv_with_constant"] - summary["ofv"] == pytest.approx(280 * np.log(2 * np.pi))
    assert summary["aic"] == pytest.approx(summary["ofv_with_constant"] + 2 * 5)
    assert summary["covariance_step"]["ok"] and summary["inner_failures"] == 0
    individual = pk_fit.individual
    assert len(individual) == 40 and individual["inner_converged"].all()
    assert (individual["sd_eta_CL"] > 0).all()
    residuals = pk_fit.residuals
    assert len(residuals) == 280
    # With a right model, CWRES are close to standard normal (280 rows: sd within ±15%).
    assert abs(residuals["CWRES"].mean()) < 0.2 and 0.85 < residuals["CWRES"].std() < 1.15
    assert abs(residuals["IWRES"].mean()) < 0.2
    # The sum of the patients' OFVs is the total.
    assert individual["ofv"].sum() == pytest.approx(summary["ofv"])


def test_cli_focei_fit_folder_and_non_convergence_exit_code(tmp_path, capsys):
    recipe = tmp_path / "pk.toml"
    text = RECIPE.read_text().replace('path = "../', f'path = "{ROOT}/').replace('spec = "../', f'spec = "{ROOT}/')
    recipe.write_text(text + "\n[focei]\nmax_iterations = 2\ndraws = 20\n")
    out = tmp_path / "fit"
    code = main(["fit", str(recipe), "--method", "focei", "--out", str(out), "--quiet"])
    printed = capsys.readouterr()
    assert code == 3, printed.err
    assert "NOT CONVERGED" in printed.out
    diagnostics = json.loads((out / "diagnostics.json").read_text())
    assert diagnostics["converged"] is False and diagnostics["outer_iterations"] == 2
    # The message counts both phases' iterations (it said "0 iterations" when the first used them all).
    assert "2 iterations (max_iterations)" in diagnostics["convergence_message"], diagnostics["convergence_message"]
    for name in ("estimates.csv", "individual.csv", "residuals.csv", "posterior.nc", "manifest.json"):
        assert (out / name).is_file(), name
    estimates = pd.read_csv(out / "estimates.csv")
    assert list(estimates.columns[:5]) == ["parameter", "estimate", "se", "rse_pct", "lower95"]
    # Its report presents a maximum-likelihood fit as one: OFV, covariance step, estimates.csv
    # as the convergence table; not as a MAP point with ESS columns (as it did before).
    report = tmp_path / "report"
    assert main(["diagnose", str(out), "--out", str(report), "--vpc-draws", "4", "--quiet"]) == 0
    page = (report / "index.html").read_text()
    assert "focei (maximum likelihood), 2 BFGS iterations" in page
    assert f"OFV {diagnostics['ofv']:.4f}" in page and "covariance step (sandwich)" in page
    assert "MAP: a single point" not in page and "Objective function value" in page
    # Its replicate trials come from the estimate's parameter draws, and the captions say so.
    assert "replicate trials simulated from the FOCE-I estimate's parameter draws" in __import__("html").unescape(page)
    assert "replicate trials simulated from the posterior" not in page
    table = pd.read_csv(report / "convergence.csv")
    assert list(table["parameter"]) == list(estimates["parameter"]) and "ess_bulk" not in table.columns


def test_random_effect_without_iiv_is_refused():
    with pytest.raises(SpecError, match="random_effects"):
        _model(random_effects=("CL", "Q"))


def test_singular_omega_start_is_refused():
    model, population, observed, dataset = _model()
    spec = model.spec
    broken = dataclasses.replace(spec, parameters=tuple(
        dataclasses.replace(p, iiv=dataclasses.replace(p.iiv, sd=0.0)) if p.name == "CL" else p
        for p in spec.parameters))
    model, population, observed = build_model(broken, dataset, structural=model.structural)
    with pytest.raises(SpecError, match=r"parameters\.CL\.iiv\.sd"):
        fit_population(model, observed, population, dataset)


def test_unsolvable_start_is_refused_naming_patients():
    model, population, observed, dataset = _model()
    spec = model.spec
    broken = dataclasses.replace(spec, parameters=tuple(
        dataclasses.replace(p, prior=None, value=float("inf")) if p.name == "CL" else p for p in spec.parameters))
    model, population, observed = build_model(broken, dataset, structural=model.structural)
    with pytest.raises(ItpPdError, match="cannot be solved at the starting estimates"):
        fit_population(model, observed, population, dataset)


def test_sir_on_the_pk_example(pk_fit):
    """With 40 well-sampled patients the likelihood is close to normal on the unconstrained
    scale, so the importance weights are even (ESS near the number of samples) and the
    resampled draws centre on the estimate."""
    import jax

    from itp_pd.estimation.outer import OuterSettings
    from itp_pd.estimation.sir import sample_importance_resample

    from itp_pd.estimation.population_fit import draw_intervals

    outer = pk_fit.outer
    result = sample_importance_resample(pk_fit.setup.problem, pk_fit.setup.data, outer.x, outer.ofv, outer.eta,
                                        outer.covariance.covariance, OuterSettings(), samples=300, resamples=100,
                                        key=jax.random.PRNGKey(2), sensitivity=outer.sensitivity)
    assert result.failed == 0 and result.draws.shape == (100, outer.x.size) and result.run_s > 0
    assert result.ess > 0.5 * 300
    sd = np.sqrt(np.diagonal(outer.covariance.covariance))
    assert np.all(np.abs(result.draws.mean(0) - outer.x) < 0.5 * sd)
    # Its 95% intervals (percentiles of the resamples) hold the estimate, and, the likelihood
    # being near normal, lie close to the covariance step's: the 2.5% point of 100 resamples
    # has a sampling sd of √(0.025·0.975/100)/φ(1.96) = 0.27 SE, so each end is allowed one
    # SE, 3.7 such sds (measured: at most 0.57 SE, pop_V1's upper end).
    intervals = draw_intervals(pk_fit.setup, result.draws).set_index("parameter")
    table = pk_fit.estimates.set_index("parameter")
    assert np.all(intervals["lower"] < table["estimate"]) and np.all(table["estimate"] < intervals["upper"])
    for end, column in (("lower", "lower95"), ("upper", "upper95")):
        width = table["upper95"] - table["lower95"]  # 2 × 1.96 SE (on the scale the interval is made)
        assert np.all(np.abs(intervals[end] - table[column]) < width / 3.92), (intervals, table)


def test_sir_proposals_start_near_their_modes_without_changing_the_objective(pk_fit):
    """A proposal's modes start from the estimate's moved by dη̂/dx and stop at the loose
    tolerance: the OFV is the one found from the estimate's modes to the tight tolerance, to
    1e-3, which moves an importance weight by a factor of at most exp(5e-4). (Not to the
    decrement: log det Hᵢ is not stationary at the mode, so a mode off by δ moves the OFV by
    O(δ), not O(δ²); measured 6e-5 here, 1.5 SE away.)"""
    from itp_pd.estimation.outer import OuterSettings, predicted_shift
    from itp_pd.estimation.sir import objective_value

    outer, problem, data = pk_fit.outer, pk_fit.setup.problem, pk_fit.setup.data
    x = outer.x + 1.5 * np.sqrt(np.diagonal(outer.covariance.covariance))  # 1.5 SE away in every element
    settings = OuterSettings()
    cold, _, cold_ok = objective_value(problem, data, x, outer.eta, settings)
    start = outer.eta + predicted_shift(problem, x, outer.x, outer.sensitivity)
    warm, _, warm_ok = objective_value(problem, data, x, start, settings, decrement_tol=settings.search_inner_decrement)
    assert cold_ok and warm_ok
    assert abs(warm - cold) < 1e-3, (warm, cold)


def test_a_patient_whose_hessian_is_not_positive_definite_gets_unknown_sds_not_a_crash():
    from itp_pd.estimation.population_fit import conditional_covariances

    h = np.stack([np.eye(2) * 4, np.zeros((2, 2)), np.full((2, 2), np.nan), np.array([[1.0, 2.0], [2.0, 1.0]])])
    covariances = conditional_covariances(h)
    np.testing.assert_allclose(covariances[0], np.eye(2) / 4)
    assert np.isnan(covariances[1:]).all()  # singular, not finite, indefinite


def test_a_variance_at_its_boundary_fails_the_covariance_step_naming_the_random_effect():
    # Measured on the simulated 120-patient ITP trial (benchmarks/fit.py): FOCE-I converged with
    # omega_KB at 5e-23 and a covariance step "ok" whose SE for omega2_KB was 1e-45.
    from itp_pd.estimation.outer import CovarianceStep
    from itp_pd.estimation.population_fit import judge_boundary, variances_at_boundary

    natural = {"pop_KB": 0.04, "omega_PLT0": 0.33, "omega_KB": 5e-23, "omega_FL": 0.0143, "sigma_PLT": 0.2}
    boundary = variances_at_boundary(natural)
    assert boundary == {"omega_KB": 5e-23}  # 0.0143 is above the 0.01 floor: kept
    ok = CovarianceStep(True, "ok", covariance=np.eye(5), condition_number=30.0, r_min_eigenvalue=1e-8)
    judged = judge_boundary(ok, boundary)
    assert not judged.ok and judged.covariance is None
    assert "omega2_KB" in judged.message and "random_effects" in judged.message
    assert judged.condition_number == 30.0  # what was measured is kept
    assert judge_boundary(ok, {}) is ok
    failed = CovarianceStep(False, "R matrix is not positive definite")
    assert judge_boundary(failed, boundary) is failed  # the first reason stays


def test_an_indefinite_r_names_the_estimate_along_its_flattest_direction():
    # Measured on the 120-patient ITP trial with a random effect on FT: logit IMAX_PC went to
    # -28.6 and R's smallest eigenvalue was -1e-13; the message named no parameter.
    from itp_pd.estimation.outer import CovarianceStep
    from itp_pd.estimation.population_fit import name_flat_direction

    r = np.diag([4.0, 3.0, 2.0])
    r[1, 1] = -1e-13  # flat along the second element only
    names = ["pop_PLT0", "pop_IMAX_PC", "sigma_PLT"]
    failed = CovarianceStep(False, "R matrix is not positive definite (smallest eigenvalue -1e-13)", r=r,
                            r_min_eigenvalue=-1e-13)
    named = name_flat_direction(failed, names, np.array([2.7, -28.6, -1.6]))
    assert not named.ok and named.message.startswith(failed.message)
    assert "pop_IMAX_PC (unconstrained -28.6, weight 1.00)" in named.message
    assert "pop_PLT0" not in named.message and "sigma_PLT" not in named.message
    # A flat direction shared by two estimates (0.6, 0.8, 0) names both, the heavier first.
    rotation = np.array([[0.6, -0.8, 0.0], [0.8, 0.6, 0.0], [0.0, 0.0, 1.0]])
    turned = rotation @ np.diag([-1e-13, 3.0, 2.0]) @ rotation.T
    both = name_flat_direction(dataclasses.replace(failed, r=turned), names, np.zeros(3)).message
    assert both.index("pop_IMAX_PC (unconstrained 0, weight 0.80)") < both.index("pop_PLT0 (unconstrained 0, "
                                                                                  "weight 0.60)")
    assert "sigma_PLT" not in both
    ok = CovarianceStep(True, "ok", r=np.eye(3), r_min_eigenvalue=1.0)
    assert name_flat_direction(ok, names, np.zeros(3)) is ok


def test_the_pk_example_has_no_variance_at_its_boundary(pk_fit):
    assert pk_fit.summary["variances_at_boundary"] == {}
    assert pk_fit.ok and pk_fit.summary["covariance_step"]["ok"]
