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
