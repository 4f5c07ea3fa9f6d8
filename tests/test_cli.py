"""The command line through its real entry point (a subprocess), good and bad inputs."""

import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).parent / "data"
EXAMPLE = Path(__file__).parents[1] / "examples" / "data" / "example_pk.csv"


def itp_pd(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "itp_pd.cli", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, timeout=600,
    )


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
    assert result.returncode == 2 and "no/such/file.csv" in result.stderr


def test_demo_writes_its_outputs_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "demo"
    result = itp_pd("demo", "--out", out, "--patients", "2")
    assert result.returncode == 0, result.stderr
    assert (out / "arms.png").stat().st_size > 10_000
    assert (out / "trajectories.csv").exists()
    again = itp_pd("demo", "--out", out, "--patients", "2")
    assert again.returncode == 2 and "--force" in again.stderr
    assert not list(tmp_path.glob(".itp-pd-*"))  # no staging folder left behind
