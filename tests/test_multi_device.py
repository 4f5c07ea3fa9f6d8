"""Several devices, one posterior: patients sharded across devices, chains one per device.

CI has one CPU, so the devices are faked (``--xla_force_host_platform_device_count=3``) in a
process of their own (``multi_device_checks.py``; JAX fixes its devices when it starts).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

CHECKS = Path(__file__).with_name("multi_device_checks.py")


def run_check(name: str) -> dict:
    result = subprocess.run([sys.executable, str(CHECKS), name], capture_output=True, text=True, timeout=1200,
                            cwd=CHECKS.parents[1])
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout)


# Slow end to end (measured 50-250 s on the 2-core CI machine); run by `pytest -m slow`.
@pytest.mark.slow
def test_patients_sharded_over_three_devices_give_the_one_device_log_density_and_gradient():
    figures = run_check("sharding")
    assert figures["devices"] == 3 and figures["patients"] == 8  # 8 = 3 + 3 + 2: padding is exercised
    assert figures["simulation_output_devices"] == 3  # the predictions really live on three devices
    # Same patients, same program per patient; only the vectorised batch width differs
    # (8 vs 3), which XLA rounds differently: differences at the level of the solver's rtol
    # (1e-9) or below.
    assert figures["simulation_max_relative_difference"] < 1e-8
    one, three = figures["log_density"]
    assert abs(one - three) < 1e-8 * abs(one)
    assert figures["gradient_max_difference_over_largest"] < 1e-7
    # FOCE-I with its patients split (the default under several devices) gives the one-device
    # objective, gradient and Hessians, to the solver's tolerance.
    assert figures["focei_ofv_max_relative_difference"] < 1e-8
    assert figures["focei_gradient_max_difference_over_largest"] < 1e-6
    assert figures["focei_h_max_relative_difference"] < 1e-6
    # A fit with 2 NUTS chains and 3 devices runs a chain per device; SVI shards the patients.
    assert figures["nuts_plan"] == "parallel"
    assert figures["svi_plan"] == ["vectorized", True]


@pytest.mark.slow
def test_nuts_chains_one_per_device_equal_the_same_chains_run_in_turn():
    figures = run_check("parallel-chains")
    assert figures["parallel_draws_shape"] == [2, 3]
    # The same one-chain program on each device as in the loop: equal to rounding.
    assert figures["parallel_vs_sequential_max_relative_difference"] < 1e-9


def test_entry_point_defaults_split_ode_models_over_every_device_and_nothing_else():
    figures = run_check("defaults")
    assert figures["use_every_core"] == 3  # the device count the process was started with
    # The turnover model has ODE states: without being asked, its 7 patients go to 3 devices
    # and come back equal to the one-device solve (same per-patient program; the vectorised
    # batch width differs, so equal to the solver's tolerance, not bit for bit).
    assert figures["turnover_mesh_devices"] == 3 and figures["turnover_output_devices"] == 3
    assert figures["turnover_max_relative_difference"] < 1e-5
    # Not split: fewer patients than devices, and closed-form PK (splitting only slows it).
    assert figures["too_few_patients_mesh"] is False
    assert figures["closed_form_pk_mesh"] is False
