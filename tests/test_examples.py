"""Every example runs with tiny settings, so none can rot."""

import importlib.util
from pathlib import Path
import numpy as np
import pytest

EXAMPLES = Path(__file__).parents[1] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_simulate_regimen_example_writes_its_figure(tmp_path):
    frame = _load("simulate_regimen").main(["--patients", "3", "--days", "56", "--out", str(tmp_path)])
    assert (tmp_path / "arms.png").stat().st_size > 10_000
    assert (tmp_path / "trajectories.csv").exists()
    assert set(frame["arm"]) == {"rituximab", "rituximab + iguratimod"}
    assert (frame["status"] == 0).all()
    response = frame[frame["output"] == "R"]
    # rituximab depletes the response within 8 weeks in every virtual patient
    assert (response.groupby(["arm", "ID"])["value"].min() < 0.5).all()


def test_itp_arms_example_writes_its_figure(tmp_path):
    import numpy as np
    import pandas as pd

    result = _load("itp_arms").main(["--patients", "4", "--weeks", "12", "--out", str(tmp_path)])
    assert (tmp_path / "arms.png").stat().st_size > 10_000
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert set(summary["arm"]) == {"control", "combination"}
    for arm in ("control", "combination"):
        assert (result[arm]["status"] == 0).all()
    # Rituximab lifts platelets within 12 weeks: the median at week 12 is above the median at
    # entry in the table, and the median patient's own ratio to baseline is above 1.
    plt_control = summary[(summary["arm"] == "control") & (summary["output"] == "PLT")].set_index("week")
    assert plt_control.loc[12.0, "median"] > plt_control.loc[0.0, "median"]
    platelets = result["control"]["PLT"]
    week12 = int(np.searchsorted(result["times"], 84.0))
    assert np.median(platelets[:, week12] / platelets[:, 0]) > 1.0


def test_simulate_pk_trial_example_writes_a_dataset_that_reads_back(tmp_path):
    from itp_pd.data import read_nonmem

    path = _load("simulate_pk_trial").main(["--patients", "3", "--out", str(tmp_path / "pk.csv")])
    dataset = read_nonmem(path)
    assert len(dataset.patients()) == 3
    measured = dataset.table[(dataset.table["EVID"] == 0)]
    assert len(measured) == 3 * 7 and (measured["DV"] > 0).all()


def test_virtual_trial_example_writes_tables_and_figures(tmp_path):
    import json

    import pandas as pd

    result, power = _load("virtual_trial").main(
        ["--draws", "2", "--patients", "20", "--weeks", "16", "--arms", "control", "combination (iguratimod 12 weeks)",
         "--out", str(tmp_path)])
    for name in ("response_over_time.png", "trajectories.png", "power_curve.png"):
        assert (tmp_path / name).stat().st_size > 10_000, name
    endpoints = pd.read_csv(tmp_path / "endpoints.csv")
    assert len(endpoints) == 2 * 2 and (endpoints["solver_failures"] == 0).all()
    comparison = pd.read_csv(tmp_path / "comparison.csv")
    assert set(comparison["endpoint"]) >= {"overall_response", "relapse_by_12_months"}
    saved = json.loads((tmp_path / "power.json").read_text())
    assert saved["patients_per_arm"] == 60 and 0.0 <= saved["power"] <= 1.0
    assert power.power == saved["power"]


def test_forecast_patient_example_writes_its_forecast(tmp_path):
    import pandas as pd

    forecast = _load("forecast_patient").main(
        ["--weeks-observed", "3", "--draws", "2", "--candidates", "300", "--samples", "50", "--weeks", "16",
         "--arms", "control", "--no-cache", "--out", str(tmp_path)])
    assert (tmp_path / "forecast.png").stat().st_size > 10_000
    assert (tmp_path / "patient.csv").exists()
    table = pd.read_csv(tmp_path / "forecast.csv")
    assert list(table["arm"]) == ["control"] and table["overall_response"].between(0, 1).all()
    assert forecast.ess > 1


def test_simulate_itp_trial_example_writes_a_trial_that_reads_back(tmp_path):
    from itp_pd.data import read_nonmem

    out = tmp_path / "itp.csv"
    dataset, truth = _load("simulate_itp_trial").main(["--per-arm", "2", "--weeks", "4", "--out", str(out)])
    again = read_nonmem(out)
    assert len(again.patients()) == 4 and set(again.table["ARM"]) == {0.0, 1.0}
    measured = again.table[again.table["EVID"] == 0]
    assert (measured["DV"] > 0).all() and len(truth["PLT0"]) == 4


# Slow end to end (measured 50-250 s on the 2-core CI machine); run by `pytest -m slow`.
@pytest.mark.slow
def test_calibration_example_prints_every_target_row(tmp_path):
    import json

    rows = _load("calibration").main(["--patients", "40", "--prior-draws", "2", "--prior-patients", "10",
                                      "--json", str(tmp_path / "calibration.json")])
    written = json.loads((tmp_path / "calibration.json").read_text())
    assert [r["id"] for r in written] == [r["id"] for r in rows] and len(rows) >= 10
    assert all(np.isfinite(r["simulated"]) for r in rows)
