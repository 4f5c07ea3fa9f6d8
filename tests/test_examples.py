"""Every example runs with tiny settings, so none can rot."""

import importlib.util
from pathlib import Path

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
