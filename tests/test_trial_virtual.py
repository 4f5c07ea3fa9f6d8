"""Virtual trials, regimens, comparisons, power and forecasts (itp_pd.trial)."""

from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

from itp_pd.dosing import Arm
from itp_pd.errors import DatasetError, ItpPdError, RegimenError
from itp_pd.spec import load_spec
from itp_pd.structural import model_from_spec
from itp_pd.trial import (
    ARMS,
    REGIMENS,
    TrialDesign,
    TrialResult,
    compare,
    forecast_patient,
    load_regimens,
    make_arm,
    posterior_population,
    prior_population,
    simulate_trial,
    trial_power,
)
from itp_pd.trial.calibration import load_calibration
from itp_pd.trial.dataset import simulate_trial_dataset
from itp_pd.trial.power import power_per_draw, rejection_table
from itp_pd.trial.simulate_arm import prepare_arm
from itp_pd.trial.virtual_trial import ArmTemplate

ITP_SPEC = Path(__file__).parents[1] / "models" / "itp_v1.toml"
IGURATIMOD_EFFECTS = {"IMAX_PC": 0.0, "IMAX_TH1": 0.0, "IMAX_TH17": 0.0, "EMAX_TREG": 0.0}
# Short follow-up keeps the compiled grids small; OR and CR still count within it.
SHORT = dict(follow_up_weeks=16.0)


@pytest.fixture(scope="module")
def spec():
    return load_spec(ITP_SPEC)


@pytest.fixture(scope="module")
def trial(spec):
    """Three prior draws, 30 patients, control twice (same regimen) and the combination."""
    source = prior_population(spec, 3, key=jax.random.PRNGKey(0))
    arms = {"control": "control", "control again": "control", "combination": "combination"}
    design = TrialDesign(n_per_arm=30, **SHORT)
    first = simulate_trial(source, arms, design, key=jax.random.PRNGKey(7), trajectories=True)
    second = simulate_trial(source, arms, design, key=jax.random.PRNGKey(7))
    return first, second


# --- regimens -------------------------------------------------------------------------------


def test_catalogue_holds_every_regimen_of_the_question():
    assert {"rituximab 100 mg weekly x4", "rituximab 100 mg weekly x6", "rituximab 375 mg/m2 weekly x4",
            "rituximab 1000 mg x2 two weeks apart", "iguratimod 25 mg qd 12 weeks", "iguratimod 25 mg qd 26 weeks",
            "iguratimod 25 mg bid 12 weeks", "iguratimod 25 mg bid 26 weeks"} <= set(REGIMENS)
    doses = REGIMENS["iguratimod 25 mg bid 26 weeks"].items[0]
    assert doses.count == 364 and doses.every == pytest.approx(0.5)
    assert REGIMENS["rituximab 1000 mg x2 two weeks apart"].items[0].every == 14.0
    assert make_arm("untreated").regimens == ()
    for name in ARMS:
        assert isinstance(make_arm(name), Arm)


def test_arm_text_joins_regimens_and_unknown_names_are_refused_with_a_suggestion():
    arm = make_arm("rituximab 100 mg weekly x4 + iguratimod 25 mg qd 12 weeks")
    assert [r.name for r in arm.regimens] == ["rituximab 100 mg weekly x4", "iguratimod 25 mg qd 12 weeks"]
    with pytest.raises(RegimenError, match="did you mean 'rituximab 100 mg weekly x6'"):
        make_arm("rituximab 100mg weekly x6")
    with pytest.raises(RegimenError, match="named arm.*write its regimens instead: 'rituximab 375 mg/m2 weekly x4'"):
        make_arm("rituximab 375 mg/m2 x4 + iguratimod 25 mg qd 12 weeks")


def test_regimen_file_adds_regimens_and_arms(tmp_path):
    path = tmp_path / "regimens.toml"
    path.write_text(
        '[regimens."rituximab 200 mg weekly x2"]\ndrug = "rituximab"\ndose_mg = 200\nevery_days = 7\ncount = 2\n'
        '[regimens."iguratimod 50 mg qd 4 weeks"]\ndrug = "iguratimod"\ndose_mg = 50\nevery_hours = 24\n'
        'for_weeks = 4\nstart_day = 7\n'
        '[arms.new]\nregimens = ["rituximab 200 mg weekly x2", "iguratimod 50 mg qd 4 weeks"]\n'
    )
    regimens, arms = load_regimens(path)
    assert regimens["iguratimod 50 mg qd 4 weeks"].items[0].count == 28
    assert regimens["iguratimod 50 mg qd 4 weeks"].items[0].dose.time == 7.0
    assert [r.name for r in arms["new"].regimens] == ["rituximab 200 mg weekly x2", "iguratimod 50 mg qd 4 weeks"]
    assert make_arm("rituximab 200 mg weekly x2", regimens=regimens).regimens[0].items[0].dose.amount_mg == 200


def test_regimen_file_errors_name_every_field(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(
        '[regimens.a]\ndrug = "aspirin"\ndose_mg = -5\nevery_days = 7\n'
        '[regimens.b]\ndrug = "iguratimod"\ndose_mg = 25\nevery_hours = 12\ncount = 4\ninfusion_hours = 2\n'
        '[arms.x]\nregimens = ["a", "rituximab 100 mg weekly x9"]\n'
    )
    with pytest.raises(RegimenError) as error:
        load_regimens(path)
    message = str(error.value)
    for text in ("regimens.a.drug", "'rituximab' or 'iguratimod'", "regimens.a.dose_mg", "count, for_weeks or for_days",
                 "regimens.b.infusion_hours", "arms.x.regimens", "did you mean 'rituximab 100 mg weekly x6'"):
        assert text in message, text
    with pytest.raises(RegimenError, match="does not exist"):
        load_regimens(tmp_path / "missing.toml")


def test_arm_template_scales_doses_per_m2_exactly_as_records_do(spec):
    """The template's linear-in-BSA grid equals the grid built from records for that BSA."""
    model = model_from_spec(spec)
    arm = make_arm("rituximab 375 mg/m2 weekly x4 + iguratimod 25 mg qd 12 weeks")
    visits = np.array([0.0, 14.0, 28.0, 56.0])
    template = ArmTemplate(model, arm, visits)
    bsa = np.array([1.45, 2.1])
    params = {name: np.ones(2) for name in model.parameter_names}
    direct, _, _ = prepare_arm(model, params, arm, visits, bsa=bsa)
    built = template.population(bsa).grid
    np.testing.assert_allclose(built.bolus, direct.grid.bolus, rtol=1e-14, atol=1e-12)
    np.testing.assert_allclose(built.rate, direct.grid.rate, rtol=1e-14, atol=1e-9)
    np.testing.assert_array_equal(built.times, direct.grid.times)


# --- population draws -------------------------------------------------------------------------


def test_prior_population_draws_only_the_uncertain_parameters(spec):
    source = prior_population(spec, 50, key=jax.random.PRNGKey(1))
    assert set(source.typical) == {"IMAX_PC", "IMAX_TH1", "IMAX_TH17", "EMAX_TREG"}
    assert np.all((source.typical["IMAX_PC"] > 0) & (source.typical["IMAX_PC"] < 1))
    assert np.std(source.typical["IMAX_PC"]) > 0.05
    typical, _ = load_calibration()
    assert source.spec.parameter("FL").value == pytest.approx(typical["FL"])  # calibration applied
    with pytest.raises(ItpPdError, match="no prior"):
        prior_population(spec, 2, key=jax.random.PRNGKey(1), uncertain=("IC50_TH",))


def test_posterior_population_maps_sites_to_values(spec):
    import arviz as az

    rng = np.random.default_rng(0)
    idata = az.from_dict(posterior={"pop_PLT0": rng.uniform(10, 20, (2, 5)), "omega_PLT0": rng.uniform(0.2, 0.4, (2, 5)),
                                    "sigma_PLT": rng.uniform(0.1, 0.3, (2, 5)), "z_PLT0": rng.normal(size=(2, 5, 7))})
    source = posterior_population(idata, spec)
    assert source.n_draws == 10
    np.testing.assert_array_equal(source.typical["PLT0"], idata.posterior["pop_PLT0"].values.reshape(-1))
    typical, omega, _ = source.values(3)
    assert typical == {"PLT0": idata.posterior["pop_PLT0"].values.reshape(-1)[3]}
    assert omega["PLT0"] == idata.posterior["omega_PLT0"].values.reshape(-1)[3]
    observation = source.observation("PLT", 3)
    assert observation.sigmas[0][1] == idata.posterior["sigma_PLT"].values.reshape(-1)[3]
    field = observation.sigmas[0][0]
    np.testing.assert_array_equal(source.sigma("PLT", field), idata.posterior["sigma_PLT"].values.reshape(-1))
    fixed = prior_population(spec, 3, key=jax.random.PRNGKey(0), uncertain=())
    np.testing.assert_array_equal(fixed.sigma("PLT", field), np.full(3, spec.observation(1).sigma(field)))
    picked = posterior_population(idata, spec, 4, key=jax.random.PRNGKey(0))
    assert picked.n_draws == 4 and set(picked.typical["PLT0"]) <= set(source.typical["PLT0"])
    with pytest.raises(ItpPdError, match="holds 10"):
        posterior_population(idata, spec, 11, key=jax.random.PRNGKey(0))


# --- virtual trials ---------------------------------------------------------------------------


def test_trial_table_is_exactly_reproducible_from_its_key(trial):
    first, second = trial
    pd.testing.assert_frame_equal(first.table, second.table, check_exact=True)
    for name, values in first.patients.items():
        np.testing.assert_array_equal(values, second.patients[name])


def test_arms_sharing_a_regimen_give_identical_results(trial):
    result, _ = trial
    table = result.table.set_index(["draw", "arm"])
    columns = [c for c in table.columns if c != "patients"]
    pd.testing.assert_frame_equal(table.xs("control", level="arm")[columns],
                                  table.xs("control again", level="arm")[columns], check_exact=True)
    np.testing.assert_array_equal(result.platelets[:, 0], result.platelets[:, 1])
    np.testing.assert_array_equal(result.measured[:, 0], result.measured[:, 1])


def test_trial_table_shape_and_ranges(trial):
    result, _ = trial
    assert len(result.table) == 3 * 3 and result.arms == ("control", "control again", "combination")
    assert (result.table["solver_failures"] == 0).all()
    for column in ("overall_response", "complete_response", "sustained_response"):
        assert result.table[column].between(0, 1).all()
    assert result.platelets.shape == (3, 3, 30, len(result.visits))
    assert np.all(result.patients["baseline"] < 30.0)  # eligibility
    # Patients differ between draws (new enrolment per draw) and are shared by arms.
    assert not np.array_equal(result.patients["baseline"][0], result.patients["baseline"][1])
    # A confirmed OR needs two counts a week apart: nobody responds before day 7.
    by_day = result.response_over_time([0.0, 6.0, 112.0])
    assert np.all(by_day[..., :2] == 0) and np.all(by_day[..., 2] <= 1)
    np.testing.assert_allclose(by_day[..., 2], result.patients["overall_response"].mean(axis=-1))


def test_combination_response_is_at_least_control_in_every_draw(trial):
    """Iguratimod's prior effects only lower antibody production, on the same patients."""
    result, _ = trial
    table = result.table.set_index(["draw", "arm"])
    combination = table.xs("combination", level="arm")["overall_response"]
    control = table.xs("control", level="arm")["overall_response"]
    assert (combination >= control - 1 / 30).all()


def _result(rows, arms=("A", "B")):
    table = pd.DataFrame(rows)
    return TrialResult(table=table, patients={}, arms=arms, visits=np.array([0.0, 7.0]), source="test",
                       design=TrialDesign(n_per_arm=10))


def test_compare_reports_paired_differences_intervals_and_probability():
    rows = []
    for draw, (a, b) in enumerate([(0.5, 0.4), (0.6, 0.4), (0.4, 0.45), (0.7, 0.3), (0.5, 0.5)]):
        for arm, value in (("A", a), ("B", b)):
            rows.append(dict(draw=draw, arm=arm, patients=10, overall_response=value, complete_response=value,
                             sustained_response=value, median_time_to_response=28.0 + 10 * value,
                             relapse_by_6_months=np.nan if draw == 0 else value, relapse_by_12_months=value))
    frame = compare(_result(rows), "A", "B").set_index("endpoint")
    differences = np.array([0.1, 0.2, -0.05, 0.4, 0.0])
    row = frame.loc["overall_response"]
    assert row["difference"] == pytest.approx(np.median(differences))
    assert row["lower"] == pytest.approx(np.quantile(differences, 0.05))
    assert row["upper"] == pytest.approx(np.quantile(differences, 0.95))
    assert row["probability_better"] == pytest.approx((3 + 0.5) / 5)
    # Lower is better for time to response and relapse: A is slower, so rarely "better".
    assert frame.loc["median_time_to_response", "probability_better"] == pytest.approx((1 + 0.5) / 5)
    assert frame.loc["relapse_by_6_months", "draws"] == 4  # draws with NaN in either arm are left out
    with pytest.raises(KeyError, match="no arm 'C'"):
        compare(_result(rows), "C", "B")


# --- power ------------------------------------------------------------------------------------


def test_exact_power_equals_the_average_of_replicate_trials():
    """The exact sum over outcomes is the limit of replicating the trial (Monte Carlo check)."""
    rng = np.random.default_rng(3)
    n, p_arm, p_reference, replicates = 60, 0.8, 0.6, 200_000
    exact = power_per_draw(np.array([p_arm]), np.array([p_reference]), n)[0]
    x_arm, x_reference = rng.binomial(n, p_arm, replicates), rng.binomial(n, p_reference, replicates)
    simulated = rejection_table(n)[x_arm, x_reference].mean()
    # Monte Carlo sd of a proportion near 0.7 over 2e5 replicates is 0.001; 4 sd.
    assert simulated == pytest.approx(exact, abs=0.004)
    # Against the normal approximation of the two-proportion test (differs by ~1-2 points).
    from scipy.stats import norm

    p_bar = (p_arm + p_reference) / 2
    se0, se1 = np.sqrt(2 * p_bar * (1 - p_bar) / n), np.sqrt((p_arm * (1 - p_arm) + p_reference * (1 - p_reference)) / n)
    approximate = norm.cdf(((p_arm - p_reference) - 1.959964 * se0) / se1)
    assert exact == pytest.approx(approximate, abs=0.03)


def test_size_of_the_test_under_no_difference_is_near_alpha():
    sizes = power_per_draw(np.array([0.3, 0.5, 0.6, 0.8]), np.array([0.3, 0.5, 0.6, 0.8]), 60)
    assert np.all(np.abs(sizes - 0.05) < 0.015)


@pytest.fixture(scope="module")
def no_drug_effect_trial(spec):
    """The default population with iguratimod's effects set to zero: the arms differ only in
    whether an inert drug is given."""
    source = prior_population(spec.with_values(IGURATIMOD_EFFECTS), 2, key=jax.random.PRNGKey(2), uncertain=())
    return simulate_trial(source, ["control", "combination"], TrialDesign(n_per_arm=200, **SHORT),
                          key=jax.random.PRNGKey(3))


def test_trial_with_zero_drug_effect_has_power_near_alpha(no_drug_effect_trial):
    power = trial_power(no_drug_effect_trial, "combination", "control", n_per_arm=60, max_n=100)
    assert abs(power.power - 0.05) < 0.015
    assert power.n_for_target is None  # no size reaches 80% power without an effect
    # Same patients, same measurement draws: the pools differ only by solver round-off at
    # the response threshold (an inert drug still adds dose times to the solver's grid).
    np.testing.assert_allclose(power.response_rates[:, 0], power.response_rates[:, 1], atol=2 / 200)


def test_power_grows_with_patients_and_sample_size_is_the_first_to_reach_target():
    from itp_pd.trial.power import _smallest_n

    p_arm, p_reference = np.array([0.85, 0.8]), np.array([0.6, 0.6])
    n = _smallest_n(p_arm, p_reference, 0.05, 0.8, 500)
    assert power_per_draw(p_arm, p_reference, n).mean() >= 0.8
    assert all(power_per_draw(p_arm, p_reference, m).mean() < 0.8 for m in range(2, n))
    curve = [power_per_draw(p_arm, p_reference, m).mean() for m in (20, 60, 180)]
    assert curve[0] < curve[1] < curve[2]


# --- individual forecasts ---------------------------------------------------------------------


def test_forecast_narrows_the_patient_and_covers_their_baseline(spec):
    """One simulated patient, 8 weeks of counts on the control arm: the posterior of PLT0 is
    narrower than the population's and covers the truth; probabilities are probabilities."""
    typical, omega = load_calibration()
    calibrated = spec.with_values(typical, omega)
    model = model_from_spec(calibrated)
    dataset, truth = simulate_trial_dataset(calibrated, model, {"control": make_arm("control")}, 2,
                                            np.array([0.0, 7.0, 14.0, 21.0, 28.0, 42.0, 56.0]), seed=11)
    source = prior_population(calibrated, 4, key=jax.random.PRNGKey(4), calibration=None)
    forecast = forecast_patient(source, dataset, 2.0, ["control", "combination"], key=jax.random.PRNGKey(5),
                                design=TrialDesign(**SHORT), n_candidates=2000, n_samples=200)
    assert forecast.ess > 50
    plt0 = forecast.parameters["PLT0"]
    # A 98% interval: one patient, so a 90% one would miss one time in ten by design.
    low, high = np.quantile(plt0, [0.01, 0.99])
    assert low <= truth["PLT0"][1] <= high
    assert np.std(np.log(plt0)) < 0.7 * calibrated.parameter("PLT0").iiv.sd
    table = forecast.table.set_index("arm")
    for column in ("overall_response", "complete_response", "sustained_response", "relapse_by_12_months"):
        assert table[column].between(0, 1).all()
    assert forecast.platelets["control"].shape == (200, len(forecast.visits))
    with pytest.raises(DatasetError, match="not in the dataset"):
        forecast_patient(source, dataset, 99.0, ["control"], key=jax.random.PRNGKey(5))


@pytest.mark.slow
def test_doubling_patients_per_arm_narrows_the_difference_interval_by_about_sqrt2(spec):
    """With one fixed population (no parameter uncertainty), the spread of a difference
    between arms over draws is sampling of patients only, so it scales as 1/√n."""
    source = prior_population(spec, 300, key=jax.random.PRNGKey(8), uncertain=())
    arms = ["control", "combination (iguratimod 12 weeks)"]
    widths, sds = {}, {}
    for n in (30, 60):
        result = simulate_trial(source, arms, TrialDesign(n_per_arm=n, **SHORT), key=jax.random.PRNGKey(9))
        row = compare(result, arms[1], arms[0]).set_index("endpoint").loc["overall_response"]
        widths[n] = row["upper"] - row["lower"]
        rates = result.table.pivot(index="draw", columns="arm", values="overall_response")
        sds[n] = (rates[arms[1]] - rates[arms[0]]).std()
    # √2 = 1.41. Over 300 draws the sd of a difference is estimated to ~4% and the 90% width
    # (a difference of quantiles, on a grid of 1/n) to ~10%; 400 draws gave 1.38 and 1.55.
    assert 1.2 < sds[30] / sds[60] < 1.65
    assert 1.15 < widths[30] / widths[60] < 1.75


def test_forecast_refuses_per_m2_arms_for_a_patient_without_bsa(spec):
    from itp_pd.data import Dataset

    table = pd.DataFrame({"ID": [1, 1, 1], "TIME": [0.0, 0.0, 7.0], "EVID": [0, 1, 0], "AMT": [0.0, 100.0, 0.0],
                          "CMT": [0, 1, 0], "RATE": [0.0, 600.0, 0.0], "MDV": [0, 1, 0], "DV": [20.0, np.nan, 25.0],
                          "DVID": [1, 1, 1]})
    dataset = Dataset.from_table(table)
    import dataclasses

    source = prior_population(spec, 2, key=jax.random.PRNGKey(0), uncertain=())
    # itp_v1 scales rituximab's volumes by BSA: without it the covariate itself is missing.
    with pytest.raises(DatasetError, match="needs covariates \\['BSA'\\]"):
        forecast_patient(source, dataset, 1.0, ["control"], key=jax.random.PRNGKey(0))
    # A spec without BSA effects still needs BSA for a per-m² dose, and says so before any work.
    no_covariates = dataclasses.replace(
        spec, parameters=tuple(dataclasses.replace(p, covariates=()) for p in spec.parameters))
    source = prior_population(no_covariates, 2, key=jax.random.PRNGKey(0), uncertain=())
    with pytest.raises(DatasetError, match="dose per m²"):
        forecast_patient(source, dataset, 1.0, ["control", "rituximab 375 mg/m2 x4"], key=jax.random.PRNGKey(0))
