"""Simulated measurements: the spec's residual error models, and endpoints of measured counts."""

from pathlib import Path

import numpy as np
import pytest

from itp_pd.spec import load_spec
from itp_pd.spec.model import Observation
from itp_pd.trial import compute_endpoints, measured_endpoints, simulate_measurements
from itp_pd.trial.design import trial_visits
from itp_pd.trial.measurement import residual_sd

SPEC = load_spec(Path(__file__).parents[1] / "models" / "itp_v1.toml")


def observation(error, **sigmas):
    return Observation("PLT", 1, "10^9/L", error, tuple((k, v, None) for k, v in sigmas.items()))


@pytest.mark.parametrize(
    "obs, prediction, sd",
    [
        (observation("additive", sigma_add=3.0), 50.0, 3.0),
        (observation("proportional", sigma_prop=0.2), 50.0, 10.0),
        (observation("combined", sigma_add=3.0, sigma_prop=0.08), 50.0, 5.0),  # √(9 + 16)
    ],
)
def test_measurements_scatter_around_the_prediction_with_the_error_models_sd(obs, prediction, sd):
    assert residual_sd(obs, np.array([prediction]))[0] == pytest.approx(sd)
    draws = simulate_measurements(np.full(200_000, prediction), obs, np.random.default_rng(0))
    assert draws.mean() == pytest.approx(prediction, abs=4 * sd / np.sqrt(draws.size))
    assert draws.std() == pytest.approx(sd, rel=0.01)


def test_lognormal_error_is_multiplicative():
    draws = simulate_measurements(np.full(200_000, 20.0), observation("lognormal", sigma_log=0.3), np.random.default_rng(1))
    logs = np.log(draws / 20.0)
    assert logs.mean() == pytest.approx(0.0, abs=0.005)
    assert logs.std() == pytest.approx(0.3, rel=0.01)


def test_counts_are_never_negative_and_the_same_seed_gives_the_same_draws():
    obs = observation("additive", sigma_add=10.0)
    first = simulate_measurements(np.full(10_000, 5.0), obs, np.random.default_rng(7))
    again = simulate_measurements(np.full(10_000, 5.0), obs, np.random.default_rng(7))
    assert first.min() == 0.0 and np.mean(first == 0.0) > 0.2  # P(5 + 10ε < 0) ≈ 0.31
    np.testing.assert_array_equal(first, again)


def test_a_response_hovering_just_above_30_is_rarely_sustained_once_measured():
    visits = trial_visits()
    n = 400
    platelets = np.tile(np.where(visits < 28.0, 12.0, 36.0), (n, 1))  # responds at day 28, stays at 36
    baseline = np.full(n, 12.0)
    noiseless = compute_endpoints(np.tile(visits, (n, 1)), platelets, baseline)
    measured = measured_endpoints(SPEC, visits, platelets, baseline, np.random.default_rng(3))
    assert np.all(np.asarray(noiseless.sustained_response))
    # 20% error: each count falls below 30 with probability Φ(−0.83) ≈ 0.20, and a sustained
    # response needs every count of some 6-month stretch above it (≈ 0.21 measured on 4,000).
    assert np.mean(np.asarray(measured.sustained_response)) < 0.3
    # A clear response (36 is 3× baseline) is still found in nearly everyone.
    assert np.mean(np.asarray(measured.overall_response)) > 0.9
