"""The command line through its real entry point (a subprocess): every subcommand on small
inputs, and bad inputs giving their documented message and exit code, writing nothing."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from test_inference import write_recipe

DATA = Path(__file__).parent / "data"
EXAMPLE = Path(__file__).parents[1] / "examples" / "data" / "example_pk.csv"
SUBCOMMANDS = ("demo", "check-data", "hash", "simulate", "fit", "diagnose", "trial", "batch")


def itp_pd(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "itp_pd.cli", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, timeout=900,
    )


def no_staging_left(folder: Path) -> bool:
    """Nothing of itp_pd.output_folder's own beside the outputs: staging, lock, moved-aside."""
    return not [p for pattern in (".*.staging-*", ".*.lock", ".*.previous") for p in folder.glob(pattern)]


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help_with_examples(command):
    result = itp_pd(command, "--help")
    assert result.returncode == 0
    assert "examples:" in result.stdout and f"itp-pd {command}" in result.stdout.split("examples:")[1]


def test_top_level_help_lists_the_subcommands_and_exit_codes():
    result = itp_pd("--help")
    assert result.returncode == 0
    assert all(command in result.stdout for command in SUBCOMMANDS) and "exit codes" in result.stdout


def test_check_data_accepts_the_example_dataset():
    result = itp_pd("check-data", EXAMPLE)
    assert result.returncode == 0, result.stderr
    assert "OK — 2 patients" in result.stdout


def test_check_data_lists_every_problem_without_a_traceback():
    result = itp_pd("check-data", DATA / "broken" / "multiple_violations.csv")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "problems found" in result.stderr and "row " in result.stderr


def test_check_data_missing_file_is_an_input_error():
    result = itp_pd("check-data", "no/such/file.csv")
    assert result.returncode == 2 and "no/such/file.csv" in result.stderr and "Traceback" not in result.stderr


def test_debug_shows_the_traceback_of_a_user_error():
    result = itp_pd("--debug", "check-data", "no/such/file.csv")
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_an_unknown_subcommand_or_option_is_a_usage_error():
    assert itp_pd("frobnicate").returncode == 2
    result = itp_pd("demo", "--per-arm", "0")
    assert result.returncode == 2 and "≥ 1" in result.stderr
    result = itp_pd("diagnose", ".", "--vpc-draws", "0")
    assert result.returncode == 2 and "--vpc-draws" in result.stderr and "≥ 1" in result.stderr


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A small SVI fit through `itp-pd fit` (8 PK patients)."""
    folder = tmp_path_factory.mktemp("fit")
    recipe = write_recipe(folder, name="pk", method="svi", n_patients=8)
    recipe.write_text(recipe.read_text().replace("steps = 1500", "steps = 300").replace("draws = 400", "draws = 100"))
    result = itp_pd("fit", recipe)
    return folder, recipe, result


def test_fit_writes_the_posterior_and_says_what_to_do_next(fitted):
    folder, _, result = fitted
    out = folder / "pk"
    # 300 SVI steps may or may not pass the loss criterion; the exit code must say which.
    converged = json.loads((out / "diagnostics.json").read_text())["converged"]
    assert result.returncode == (0 if converged else 3), result.stderr
    assert ("NOT CONVERGED" in result.stdout) == (not converged)
    assert {p.name for p in out.iterdir()} == {"posterior.nc", "summary.csv", "diagnostics.json", "manifest.json",
                                               "losses.csv", ".itp-pd-output.json"}
    assert "itp-pd diagnose" in result.stdout and "svi:" in result.stdout
    assert "svi: step" in result.stderr  # progress goes to stderr
    assert json.loads((out / "diagnostics.json").read_text())["method"] == "svi"


def test_fit_refuses_an_existing_output_folder_before_fitting(fitted):
    folder, recipe, _ = fitted
    before = (folder / "pk" / "summary.csv").read_bytes()
    result = itp_pd("fit", recipe)
    assert result.returncode == 2 and "--force" in result.stderr and "svi: step" not in result.stderr
    assert (folder / "pk" / "summary.csv").read_bytes() == before


def test_diagnose_writes_a_report_whose_page_links_every_figure(fitted):
    folder, _, _ = fitted
    result = itp_pd("diagnose", folder / "pk", "--vpc-draws", 20, "--quiet")
    assert result.returncode == 0, result.stderr
    report = folder / "pk" / "report"
    page = (report / "index.html").read_text()
    figures = sorted(p.name for p in report.glob("*.png"))
    assert {"loss.png", "vpc.png", "pcvpc.png", "npd.png", "loo.png", "individual_fits.png"} <= set(figures)
    assert all(f'src="{name}"' in page for name in figures)
    again = itp_pd("diagnose", folder / "pk", "--vpc-draws", 20, "--quiet")
    assert again.returncode == 2 and "--force" in again.stderr
    forced = itp_pd("diagnose", folder / "pk", "--vpc-draws", 20, "--quiet", "--force")
    assert forced.returncode == 0 and no_staging_left(folder / "pk")


def test_diagnose_of_a_folder_that_is_not_a_fit_says_so(tmp_path):
    result = itp_pd("diagnose", tmp_path)
    assert result.returncode == 2 and "posterior.nc" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "report").exists()


def test_a_broken_recipe_is_an_input_error_listing_its_fields(tmp_path):
    recipe = write_recipe(tmp_path)
    recipe.write_text(recipe.read_text().replace('method = "map"', 'method = "mcmc"'))
    result = itp_pd("fit", recipe)
    assert result.returncode == 2 and "fit.method" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "pk").exists()


# Slow end to end (measured 50-250 s on the 2-core CI machine); run by `pytest -m slow`.
@pytest.mark.slow
def test_demo_meets_its_output_contract_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "demo"
    tiny = ("--per-arm", 3, "--max-iterations", 2, "--draws", 10, "--vpc-draws", 4, "--trial-draws", 2,
            "--trial-patients", 6, "--quiet")
    result = itp_pd("demo", "--out", out, *tiny)
    # Two BFGS iterations do not converge: everything is written, and the exit code says so.
    assert result.returncode == 3, result.stderr
    assert "NOT CONVERGED" in result.stdout and "exit code 3" in result.stderr
    assert json.loads((out / "demo.json").read_text())["converged"] is False
    estimates = pd.read_csv(out / "fit" / "estimates.csv")
    assert {"pop_PLT0", "pop_FL", "pop_KB", "omega2_PLT0", "omega2_KB", "sigma_PLT"} == set(estimates["parameter"])
    page = (out / "report" / "index.html").read_text()
    assert all((out / "report" / name).is_file() for name in __import__("re").findall(r'src="([^"]+)"', page))
    assert (out / "fit" / "posterior.nc").stat().st_size > 10_000
    comparison = pd.read_csv(out / "comparison.csv")
    assert set(comparison["comparison"]) == {
        "combination vs control", "combination (iguratimod qd) vs control",
        "rituximab 375 mg/m2 weekly x4 + iguratimod 25 mg bid 26 weeks vs control"}
    assert {"difference", "lower", "upper", "probability_better"} <= set(comparison.columns)
    assert str(out / "report" / "index.html") in result.stdout
    # the demo's fit folder stays usable after its staging folder was renamed into place
    rediagnosed = itp_pd("diagnose", out / "fit", "--out", tmp_path / "report2", "--vpc-draws", 4, "--quiet")
    assert rediagnosed.returncode == 0, rediagnosed.stderr
    again = itp_pd("demo", "--out", out, *tiny)
    assert again.returncode == 2 and "--force" in again.stderr
    assert no_staging_left(tmp_path)


def demo_result(folder, converged, message):
    import itp_pd.demo

    (Path(folder) / "demo.json").write_text("{}\n")
    estimates = pd.DataFrame({"parameter": ["pop_PLT0"], "estimate": [15.4], "se": [0.52], "rse_pct": [3.4],
                              "lower95": [14.4], "upper95": [16.5], "unit": ["10^9/L"], "truth": [16.0]})
    comparison = pd.DataFrame({"comparison": ["combination vs control"], "endpoint": ["overall_response"],
                               "difference": [0.2], "lower": [0.17], "upper": [0.23], "probability_better": [1.0]})
    timings = {"data_s": 1.0, "fit_s": 1.0, "report_s": 1.0, "trial_s": 1.0, "total_s": 4.0}
    return itp_pd.demo.DemoResult(Path(folder), Path(folder) / "report", Path(folder) / "posterior.nc",
                                  comparison, estimates, {"pop_PLT0": 16.0}, timings, converged, message)


def test_demo_says_not_converged_above_its_numbers_and_exits_3(tmp_path, monkeypatch, capsys):
    """An unconverged demo fit is announced before any number, and the exit code is 3."""
    import itp_pd.demo
    from itp_pd.cli import main

    monkeypatch.setattr(itp_pd.demo, "run_demo", lambda folder, settings, *, progress, say: demo_result(
        folder, False, "not converged: max |dOFV/dx| = 41.7 > gtol 0.001"))
    assert main(["demo", "--out", str(tmp_path / "demo"), "--quiet"]) == 3
    captured = capsys.readouterr()
    assert captured.out.index("NOT CONVERGED: not converged: max |dOFV/dx| = 41.7") < captured.out.index("pop_PLT0")
    assert "not findings" in captured.out and "exit code 3" in captured.err


def test_a_converged_demo_prints_its_estimates_against_the_truth_and_exits_0(tmp_path, monkeypatch, capsys):
    import itp_pd.demo
    from itp_pd.cli import main

    monkeypatch.setattr(itp_pd.demo, "run_demo", lambda folder, settings, *, progress, say: demo_result(
        folder, True, "converged (the gradient criterion): max |dOFV/dx| = 0.0005"))
    assert main(["demo", "--out", str(tmp_path / "demo"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "CONVERGED (converged (the gradient criterion)" in out and "NOT CONVERGED" not in out
    assert "1 of 1 truths inside their interval" in out
    row = next(line for line in out.splitlines() if line.strip().startswith("pop_PLT0"))
    assert row.split()[1:7] == ["15.4", "0.52", "3.4", "14.4", "16.5", "16"]


def test_demo_sir_asks_the_recipe_for_sampling_importance_resampling(tmp_path, monkeypatch, capsys):
    """``itp-pd demo --sir N``: the recipe it writes takes its draws by SIR of N proposals (the
    draws as its resamples), and the console shows SIR's intervals beside the covariance step's."""
    import itp_pd.demo
    from itp_pd.cli import main
    from itp_pd.inference import load_recipe

    data = tmp_path / "data.csv"
    data.write_text("ID,TIME,DV\n")
    settings = itp_pd.demo.DemoSettings(draws=30, sir_samples=400)
    focei = load_recipe(itp_pd.demo.write_demo_recipe(tmp_path, data, settings)).focei
    assert (focei.sir, focei.sir_samples, focei.sir_resamples) == (True, 400, 30)
    assert load_recipe(itp_pd.demo.write_demo_recipe(tmp_path, data, itp_pd.demo.DemoSettings())).focei.sir is False

    seen = {}

    def fake_demo(folder, settings, *, progress, say):
        seen["settings"] = settings
        result = demo_result(folder, True, "converged (the gradient criterion)")
        result.estimates = result.estimates.assign(sir_lower95=[16.1], sir_upper95=[17.0])
        return result

    monkeypatch.setattr(itp_pd.demo, "run_demo", fake_demo)
    assert main(["demo", "--out", str(tmp_path / "demo"), "--quiet", "--sir", "400"]) == 0
    out = capsys.readouterr().out
    assert seen["settings"].sir_samples == 400
    assert "1 of 1 truths inside their interval" in out and "SIR's 95% intervals" in out and "0 of 1 truths" in out
    row = next(line for line in out.splitlines() if line.strip().startswith("pop_PLT0"))
    assert row.split()[5:9] == ["16.5", "16.1", "17", "16"]


def test_demo_sir_with_fewer_proposals_than_draws_is_refused_before_any_work(tmp_path, capsys):
    from itp_pd.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quiet", "--sir", "20", "--draws", "50"]) == 2
    assert "--sir 50 or more" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == []
