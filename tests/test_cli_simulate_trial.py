"""``itp-pd simulate`` and ``itp-pd trial`` through the real entry point (a subprocess).

Tiny settings (a few patients, 8 weeks) keep each run to a compilation and a few solves.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from itp_pd.output_folder import MARKER, replaced_atomically

REGIMEN_FILE = Path(__file__).parents[1] / "examples" / "regimens.toml"
TRAJECTORY_COLUMNS = ["arm", "ID", "TIME", "output", "unit", "value", "status"]
OUTPUTS = {"PLT": "10^9/L", "BCELL": "relative to baseline", "ANTIBODY": "relative to baseline",
           "C_RTX": "mg/L", "C_IGU": "mg/L"}


def itp_pd(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "itp_pd.cli", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, timeout=600,
    )


def no_staging_left(folder: Path) -> bool:
    """Nothing of itp_pd.output_folder's own beside the outputs: staging, lock, moved-aside."""
    return not [p for pattern in (".*.staging-*", ".*.lock", ".*.previous") for p in folder.glob(pattern)]


def test_simulate_gives_every_arm_the_same_patients(tmp_path):
    out = tmp_path / "simulate"
    arms = ["control", "rituximab 200 mg x4 + short iguratimod"]  # the second from the regimen file
    result = itp_pd("simulate", *arms, "--regimens", REGIMEN_FILE, "--patients", 3, "--weeks", 8,
                    "--seed", 3, "--out", out, "--quiet")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and result.stderr == ""  # --quiet: nothing on stderr
    assert all(arm in result.stdout for arm in arms) and "week 4" in result.stdout and "week 8" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "patients.csv", "simulate.png", "trajectories.csv"]
    assert no_staging_left(tmp_path)

    table = pd.read_csv(out / "trajectories.csv")
    assert list(table.columns) == TRAJECTORY_COLUMNS
    visits = np.arange(0.0, 57.0, 7.0)  # weekly, days 0..56
    assert len(table) == len(arms) * 3 * len(visits) * len(OUTPUTS)
    assert list(table["arm"].unique()) == arms
    assert dict(table[["output", "unit"]].drop_duplicates().itertuples(index=False)) == OUTPUTS
    assert (table["status"] == 0).all() and table["value"].notna().all()
    for (arm, output), rows in table.groupby(["arm", "output"]):
        wide = rows.pivot(index="ID", columns="TIME", values="value")
        assert list(wide.index) == [1, 2, 3] and np.array_equal(wide.columns.to_numpy(), visits), (arm, output)

    patients = pd.read_csv(out / "patients.csv")
    assert len(patients) == 3 and list(patients.columns[:3]) == ["ID", "BSA", "AGE"]
    assert {"PLT0", "CL_RTX", "KA_IGU"} <= set(patients.columns)
    assert patients["BSA"].between(1.3, 2.4).all() and patients["AGE"].between(18, 70).all()
    # Same patients in every arm: day-0 platelets are each patient's (eligible) baseline.
    plt = table[table["output"] == "PLT"].pivot(index=["ID", "TIME"], columns="arm", values="value")
    day0 = plt.xs(0.0, level="TIME")
    np.testing.assert_allclose(day0[arms[0]], day0[arms[1]], rtol=1e-9)
    np.testing.assert_allclose(day0[arms[0]], patients.set_index("ID")["PLT0"], rtol=1e-6)
    assert (patients["PLT0"] < 30.0).all()

    # The arms differ as their regimens do: no iguratimod in control, twice the rituximab dose.
    def values(arm, output, day):
        rows = table[(table["arm"] == arm) & (table["output"] == output) & (table["TIME"] == day)]
        return rows.sort_values("ID")["value"].to_numpy()

    assert np.all(values("control", "C_IGU", 28.0) == 0.0)
    assert np.all(values(arms[1], "C_IGU", 28.0) > 0.0)
    assert np.all(values(arms[1], "C_RTX", 7.0) > 1.5 * values("control", "C_RTX", 7.0))
    assert (out / "simulate.png").stat().st_size > 10_000


def test_trial_writes_endpoints_comparison_and_power(tmp_path):
    out = tmp_path / "trial"
    result = itp_pd("trial", "control", "combination", "--draws", 2, "--patients", 4, "--weeks", 8,
                    "--trial-patients", 30, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "patient-arms" in result.stderr  # the progress bar, on stderr
    assert "power of combination vs control at 30 per arm" in result.stdout
    expected = {"endpoints.csv", "comparison.csv", "power.json", "power_curve.csv",
                "response_over_time.png", "trajectories.png", "power_curve.png", MARKER}
    assert {p.name for p in out.iterdir()} == expected and no_staging_left(tmp_path)
    for figure in ("response_over_time.png", "trajectories.png", "power_curve.png"):
        assert (out / figure).stat().st_size > 10_000, figure

    endpoints = pd.read_csv(out / "endpoints.csv")
    assert len(endpoints) == 2 * 2 and list(endpoints["arm"]) == ["control", "combination"] * 2
    assert (endpoints["patients"] == 4).all() and (endpoints["solver_failures"] == 0).all()
    assert endpoints["overall_response"].between(0, 1).all()

    comparison = pd.read_csv(out / "comparison.csv")
    assert set(comparison["comparison"]) == {"combination vs control"}
    assert set(comparison["endpoint"]) >= {"overall_response", "complete_response", "relapse_by_12_months"}
    # Differences are within draws (same patients): the median of the per-draw differences.
    per_arm = endpoints.pivot(index="draw", columns="arm", values="overall_response")
    row = comparison.set_index("endpoint").loc["overall_response"]
    assert row["difference"] == pytest.approx(np.median(per_arm["combination"] - per_arm["control"]))
    assert row["arm"] == pytest.approx(per_arm["combination"].mean())
    assert row["lower"] <= row["difference"] <= row["upper"] and 0.0 <= row["probability_better"] <= 1.0

    power = json.loads((out / "power.json").read_text())
    assert (power["arm"], power["reference"], power["patients_per_arm"]) == ("combination", "control", 30)
    assert power["draws"] == 2 and power["pool_size"] == 4
    assert 0.0 <= power["power_lower"] <= power["power"] <= power["power_upper"] <= 1.0
    curve = pd.read_csv(out / "power_curve.csv")
    assert list(curve.columns) == ["patients_per_arm", "power", "lower", "upper"]
    assert ((curve["lower"] <= curve["power"] + 1e-12) & (curve["power"] <= curve["upper"] + 1e-12)).all()


def test_force_replaces_an_earlier_output_and_one_arm_has_no_comparison(tmp_path):
    out = tmp_path / "trial"
    with replaced_atomically(out) as staging:  # an earlier itp-pd output (with its record)
        (staging / "old.txt").write_text("previous run")
    result = itp_pd("trial", "untreated", "--draws", 2, "--patients", 2, "--weeks", 4, "--out", out,
                    "--force", "--quiet")
    assert result.returncode == 0, result.stderr
    assert {p.name for p in out.iterdir()} == {"endpoints.csv", "response_over_time.png", "trajectories.png", MARKER}
    assert "no comparison or power" in result.stdout and no_staging_left(tmp_path)
    endpoints = pd.read_csv(out / "endpoints.csv")
    assert list(endpoints["arm"]) == ["untreated"] * 2


@pytest.mark.parametrize("command", ["simulate", "trial"])
def test_unknown_regimen_is_refused_with_a_suggestion_before_any_work(tmp_path, command):
    out = tmp_path / "out"
    result = itp_pd(command, "control", "rituximab 100 mg weekly x4 + iguratimod 25 mg qd 13 weeks",
                    "--out", out)
    assert result.returncode == 2
    assert "did you mean 'iguratimod 25 mg qd 12 weeks'" in result.stderr
    assert result.stderr.startswith(f"itp-pd {command}: unknown regimen")
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["simulate", "trial"])
def test_existing_output_folder_is_refused_and_left_untouched(tmp_path, command):
    out = tmp_path / "out"
    out.mkdir()
    (out / "result.csv").write_text("a,b\n1,2\n")
    result = itp_pd(command, "control", "--patients", 2, "--weeks", 2, "--out", out)
    assert result.returncode == 2 and "--force" in result.stderr and "Traceback" not in result.stderr
    assert [p.name for p in out.iterdir()] == ["result.csv"]
    assert (out / "result.csv").read_text() == "a,b\n1,2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder either


def test_bad_regimen_file_and_bad_counts_are_input_errors(tmp_path):
    broken = tmp_path / "regimens.toml"
    broken.write_text('[regimens."rituximab 50 mg"]\ndrug = "rituximab"\ndose_mg = 50\n')  # no schedule
    result = itp_pd("simulate", "control", "--regimens", broken, "--out", tmp_path / "out")
    assert result.returncode == 2 and "every_days or every_hours" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
    for command, option in (("simulate", "--patients"), ("trial", "--draws"), ("trial", "--trial-patients")):
        result = itp_pd(command, "control", option, 0)
        assert result.returncode == 2 and f"argument {option}" in result.stderr and "≥ 1" in result.stderr


@pytest.mark.parametrize("command", ["simulate", "trial"])
def test_help_shows_examples(command):
    result = itp_pd(command, "--help")
    assert result.returncode == 0
    assert "examples:" in result.stdout and f"itp-pd {command} control" in result.stdout
    assert "--patients" in result.stdout and "--force" in result.stdout


# --- the library hooks the commands use ----------------------------------------------------------


def test_trial_progress_counts_patient_simulations_and_changes_nothing():
    import jax

    from itp_pd.trial import TrialDesign, prior_population, simulate_trial

    source = prior_population(n_draws=2, key=jax.random.PRNGKey(0))
    design = TrialDesign(n_per_arm=3, follow_up_weeks=4)
    calls = []
    with_progress = simulate_trial(source, ["control"], design, key=jax.random.PRNGKey(1), batch_patients=4,
                                   progress=calls.append)
    without = simulate_trial(source, ["control"], design, key=jax.random.PRNGKey(1), batch_patients=4)
    assert calls == [4, 6]  # two batches of the 2 draws x 3 patients
    pd.testing.assert_frame_equal(with_progress.table, without.table)


def test_central_population_takes_the_median_of_each_population_value():
    import jax

    from itp_pd.trial import central_population, prior_population

    draws = prior_population(n_draws=5, key=jax.random.PRNGKey(2))
    central = central_population(draws)
    assert central.n_draws == 1 and set(central.typical) == set(draws.typical)
    for name, values in draws.typical.items():
        assert central.typical[name][0] == pytest.approx(np.median(values))
    assert "median of 5 draws" in central.description
