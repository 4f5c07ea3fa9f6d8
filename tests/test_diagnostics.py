"""The diagnostic report: its statistics on known cases, and the report of a real fit."""

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from itp_pd.diagnostics import ReportSettings, load_fit, write_report
from itp_pd.diagnostics.goodness_of_fit import prediction_discrepancies
from itp_pd.diagnostics.simulation import Replicates
from itp_pd.diagnostics.vpc import time_bins, vpc_statistics
from itp_pd.errors import FitFolderError



def _rows(dv, times, blq=None, lloq=np.nan):
    n = len(dv)
    blq = np.zeros(n, dtype=bool) if blq is None else blq
    return pd.DataFrame({"patient": np.zeros(n, dtype=int), "slot": np.arange(n), "ID": 1.0, "TIME": times,
                         "output": "PLT", "DV": dv, "BLQ": blq, "LLOQ": np.where(blq, lloq, np.nan),
                         "ARM": "all", "PRED": np.ones(n)})


def test_npd_of_data_drawn_like_the_simulations_is_standard_normal():
    rng = np.random.default_rng(0)
    n, k = 4000, 200
    sims = rng.lognormal(3.0, 0.4, size=(k, 1, n))
    dv = rng.lognormal(3.0, 0.4, size=n)
    npd = prediction_discrepancies(_rows(dv, np.zeros(n)), Replicates(sims, sims, np.zeros(k)))
    assert abs(npd.mean()) < 0.05 and abs(npd.std() - 1) < 0.05
    # data from a shifted distribution are seen as such
    shifted = prediction_discrepancies(_rows(dv * 1.5, np.zeros(n)), Replicates(sims, sims, np.zeros(k)))
    assert shifted.mean() > 0.8


def test_npd_of_blq_rows_lies_below_the_simulated_share_under_the_limit():
    rng = np.random.default_rng(1)
    n, k = 2000, 400
    sims = rng.normal(10.0, 2.0, size=(k, 1, n))
    blq = np.ones(n, dtype=bool)
    npd = prediction_discrepancies(_rows(np.full(n, 8.0), np.zeros(n), blq, lloq=8.0),
                                   Replicates(sims, sims, np.zeros(k)))
    share_below = norm.cdf((8.0 - 10.0) / 2.0)
    assert np.all(norm.cdf(npd) <= share_below + 0.07)  # each row's share comes from 400 draws
    assert abs(np.mean(norm.cdf(npd)) - share_below / 2) < 0.02  # uniform on [0, share]


def test_time_bins_use_nominal_visits_and_equal_counts_otherwise():
    visits = np.repeat([0.0, 7.0, 14.0], 5)
    assert np.array_equal(time_bins(visits), np.repeat([0, 1, 2], 5))
    spread = np.random.default_rng(2).uniform(0, 100, 1000)
    counts = np.bincount(time_bins(spread, n_bins=10))
    assert len(counts) == 10 and counts.min() >= 95


def test_vpc_of_data_like_the_simulations_stays_inside_its_bands_and_blq_shares_match():
    rng = np.random.default_rng(3)
    times = np.repeat(np.arange(10.0), 100)
    k = 200
    sims = rng.normal(10.0, 3.0, size=(k, times.size))
    dv = rng.normal(10.0, 3.0, size=times.size)
    limit = 6.0
    rows = _rows(np.where(dv < limit, limit, dv), times, blq=dv < limit, lloq=limit)
    stats = vpc_statistics(rows, sims, None, corrected=False)
    observed, band = stats["observed"], stats["simulated"]
    assert np.all(np.isneginf(observed[0]) | (observed[0] >= limit))  # 5th percentile under the limit: not drawn
    inside = (observed[1:] >= band[1:, 0]) & (observed[1:] <= band[1:, 2])
    assert inside.mean() >= 0.8
    expected_share = norm.cdf((limit - 10.0) / 3.0)
    assert abs(stats["blq_observed"].mean() - expected_share) < 0.03
    assert np.all(stats["blq_simulated"][0] <= stats["blq_simulated"][2])


def test_prediction_correction_removes_a_dose_proportional_spread():
    rng = np.random.default_rng(4)
    times = np.repeat(np.arange(5.0), 200)
    dose = np.tile(np.repeat([1.0, 4.0], 100), 5)  # two doses pooled in every bin
    rows = _rows(dose * rng.lognormal(0, 0.1, times.size), times)
    rows["PRED"] = dose
    sims = dose * rng.lognormal(0, 0.1, (100, times.size))
    plain = vpc_statistics(rows, sims, None, corrected=False)
    corrected = vpc_statistics(rows, sims, None, corrected=True)
    spread = lambda s: np.median(s["observed"][2] / s["observed"][0])  # noqa: E731
    assert spread(plain) > 3.0 and spread(corrected) < 1.5


def test_a_folder_that_is_not_a_fit_is_refused_with_what_is_missing(tmp_path):
    with pytest.raises(FitFolderError, match="posterior.nc.*itp-pd fit"):
        load_fit(tmp_path)
    with pytest.raises(FitFolderError, match="not a folder"):
        load_fit(tmp_path / "nothing")


N_PATIENTS = 20  # simulated from the PK spec itself, 7 samples each: the model is correct


def test_a_damaged_fit_folder_is_refused_naming_the_file(tmp_path):
    from itp_pd.diagnostics.fit_folder import REQUIRED_FILES

    for name in REQUIRED_FILES:
        (tmp_path / name).write_text("{not json")
    with pytest.raises(FitFolderError, match="manifest.json is not readable JSON.*fit again"):
        load_fit(tmp_path)


@pytest.fixture(scope="module")
def pk_report(tmp_path_factory):
    """A small NUTS fit of the generic PK model (2 chains; fitted here: fit outputs are not
    committed) and its report."""
    from itp_pd.inference import fit, load_recipe, write_fit
    from test_inference import write_recipe

    folder = tmp_path_factory.mktemp("fit")
    recipe = load_recipe(write_recipe(folder, name="pk", method="nuts", n_patients=N_PATIENTS))
    recipe = dataclasses.replace(recipe, nuts=dataclasses.replace(recipe.nuts, warmup=100, draws=100),
                                 map=dataclasses.replace(recipe.map, steps=200))
    fit_dir = write_fit(fit(recipe, progress=False), folder / "pk")
    finished = load_fit(fit_dir)
    report = tmp_path_factory.mktemp("report")
    write_report(finished, report, ReportSettings(vpc_draws=40), progress=False)
    return finished, report


def test_the_report_of_the_example_fit_links_every_figure_it_writes(pk_report):
    _, folder = pk_report
    page = (folder / "index.html").read_text()
    linked = set(re.findall(r'src="([^"]+\.png)"', page))
    written = {p.name for p in folder.glob("*.png")}
    assert linked == written
    assert written >= {"trace.png", "rank.png", "observed_vs_predicted.png", "npd.png", "individual_fits.png",
                       "vpc.png", "pcvpc.png", "shrinkage.png", "prior_posterior.png", "loo.png"}
    for name in written:
        assert (folder / name).stat().st_size > 8_000, name  # a real figure, not an empty canvas


def test_the_reports_provenance_resolves_from_where_the_report_is(pk_report):
    # The header names the fit folder relative to the report, and the recipe, data and spec
    # relative to the fit folder (with their sha256): paths that hold after a staging folder
    # is renamed into place (issue 19: the demo's report named dead staging paths).
    from itp_pd.inference import file_sha256

    fit, folder = pk_report
    page = (folder / "index.html").read_text()
    fit_folder = re.search(r"Fit folder <code>([^<]+)</code> \(relative to this report\)", page).group(1)
    assert (folder / fit_folder).resolve() == fit.directory.resolve()
    for key in ("recipe", "data", "spec"):
        recorded = re.search(rf"{key} <code>([^<]+)</code> \(sha256 ([0-9a-f]{{12}})…\)", page)
        assert recorded, key
        path = folder / fit_folder / recorded.group(1)
        assert path.is_file() and file_sha256(path).startswith(recorded.group(2)), key
    assert ".staging-" not in page


def test_the_example_fit_of_a_correct_model_passes_its_own_checks(pk_report):
    fit, folder = pk_report
    observations = pd.read_csv(folder / "observations.csv")
    assert len(observations) == 7 * N_PATIENTS and set(observations.columns) >= {"DV", "PRED", "IPRED", "NPD"}
    assert abs(observations["NPD"].mean()) < 0.3 and 0.75 < observations["NPD"].std() < 1.25
    assert np.median(observations["DV"] / observations["IPRED"]) == pytest.approx(1.0, abs=0.05)
    prior = pd.read_csv(folder / "prior_posterior.csv", index_col="parameter")
    assert prior.loc["pop_CL", "contraction"] > 0.5  # 20 patients inform clearance
    assert (prior["contraction"] <= 1).all()
    loo = pd.read_csv(folder / "loo.csv")
    assert len(loo) == N_PATIENTS and np.isfinite(loo["elpd"]).all()


def test_shrinkage_is_one_minus_the_spread_of_the_mean_etas_over_omega(pk_report):
    fit, folder = pk_report
    table = pd.read_csv(folder / "shrinkage.csv", index_col="parameter")
    posterior = fit.idata.posterior
    etas = posterior["eta_CL"].values.reshape(-1, N_PATIENTS).mean(axis=0)
    expected = 1 - etas.std(ddof=1) / posterior["omega_CL"].values.mean()
    assert table.loc["CL", "shrinkage"] == pytest.approx(expected)
    assert 0 <= table.loc["CL", "shrinkage"] < 0.3  # 7 samples a patient: little shrinkage


def test_the_report_states_the_convergence_verdict_before_any_section(pk_report):
    fit, folder = pk_report
    page = (folder / "index.html").read_text()
    verdict = "<b>Converged.</b>" if fit.diagnostics.get("converged") is True else "<b>NOT CONVERGED.</b>"
    assert verdict in page and page.index(verdict) < page.index("<h2")


def test_an_unconverged_fit_is_announced_as_not_a_result():
    from itp_pd.diagnostics.report import _convergence_banner

    banner = _convergence_banner({"converged": False, "convergence_message": "max R-hat 1.17 (limit 1.01)"})
    assert "NOT CONVERGED" in banner and "max R-hat 1.17" in banner and "not results" in banner
    assert "NOT CONVERGED" in _convergence_banner({})  # no verdict recorded is not a pass
    assert "Converged." in _convergence_banner({"converged": True, "convergence_message": "ok"})
