"""The engine against textbook analytic solutions (relative error ≤ 1e-6).

Formulas: Gibaldi & Perrier, *Pharmacokinetics* 2nd ed., ch. 1-2. The 1e-6 bound is the one
the foundation issue sets; the closed forms are exact, so the observed error is ~1e-13.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.linalg import expm

from engine_helpers import dose, observe, predict
from itp_pd.mechanisms import (
    exp_divided_difference,
    propagate_one_compartment,
    propagate_two_compartment,
)
from itp_pd.structural import one_compartment_model, two_compartment_model

RTOL = 1e-6
TIMES = np.array([0.05, 0.3, 1.0, 2.5, 7.0, 20.0])


def test_one_compartment_iv_bolus():
    CL, V, D = 2.0, 10.0, 100.0
    pred, _ = predict(one_compartment_model(), [dose(0.0, D, 1), *observe(TIMES)], dict(CL=CL, V=V))
    np.testing.assert_allclose(pred, D / V * np.exp(-CL / V * TIMES), rtol=RTOL)


@pytest.mark.parametrize("ka_over_k", [3.0, 1.0 + 1e-9, 1.0, 1.0 - 1e-6])
def test_one_compartment_oral_bateman_including_ka_close_to_k(ka_over_k):
    CL, V, D = 2.0, 10.0, 100.0
    k = CL / V
    KA = ka_over_k * k
    pred, _ = predict(
        one_compartment_model(oral=True), [dose(0.0, D, 1), *observe(TIMES)], dict(CL=CL, V=V, KA=KA)
    )
    if KA == k:
        expected = D * k * TIMES * np.exp(-k * TIMES) / V
    else:
        # Bateman written with expm1 so the reference itself does not cancel near ka == k.
        expected = D * KA / V * np.exp(-k * TIMES) * -np.expm1(-(KA - k) * TIMES) / (KA - k)
    np.testing.assert_allclose(pred, expected, rtol=RTOL)


def test_one_compartment_infusion_during_and_after():
    CL, V, D, T = 2.0, 10.0, 100.0, 0.5
    k, R = CL / V, D / T
    pred, _ = predict(
        one_compartment_model(), [dose(0.0, D, 1, rate=R), *observe(TIMES)], dict(CL=CL, V=V)
    )
    during = R / CL * (1 - np.exp(-k * TIMES))
    after = R / CL * (1 - np.exp(-k * T)) * np.exp(-k * (TIMES - T))
    np.testing.assert_allclose(pred, np.where(TIMES <= T, during, after), rtol=RTOL)


def _two_compartment_macro(CL, V1, Q, V2):
    k10, k12, k21 = CL / V1, Q / V1, Q / V2
    s = k10 + k12 + k21
    alpha = (s + np.sqrt(s * s - 4 * k10 * k21)) / 2
    beta = (s - np.sqrt(s * s - 4 * k10 * k21)) / 2
    return k21, alpha, beta


RITUXIMAB = dict(CL=0.30, V1=3.19, Q=0.446, V2=4.15)  # Candelaria 2018, L/day and L


def test_two_compartment_bolus_macro_constants():
    D = 100.0
    k21, a, b = _two_compartment_macro(**RITUXIMAB)
    pred, _ = predict(two_compartment_model(), [dose(0.0, D, 1), *observe(TIMES)], RITUXIMAB)
    V1 = RITUXIMAB["V1"]
    expected = D / V1 * ((a - k21) / (a - b) * np.exp(-a * TIMES) + (k21 - b) / (a - b) * np.exp(-b * TIMES))
    np.testing.assert_allclose(pred, expected, rtol=RTOL)


def test_two_compartment_infusion_during_and_after():
    D, T = 100.0, 4.0 / 24.0
    R = D / T
    k21, a, b = _two_compartment_macro(**RITUXIMAB)
    V1 = RITUXIMAB["V1"]
    pred, _ = predict(two_compartment_model(), [dose(0.0, D, 1, rate=R), *observe(TIMES)], RITUXIMAB)

    def infusing(t):  # the bolus response integrated over the infusion
        return R / V1 * ((a - k21) / (a * (a - b)) * (1 - np.exp(-a * t)) + (k21 - b) / (b * (a - b)) * (1 - np.exp(-b * t)))

    after = R / V1 * (
        (a - k21) / (a * (a - b)) * (1 - np.exp(-a * T)) * np.exp(-a * (TIMES - T))
        + (k21 - b) / (b * (a - b)) * (1 - np.exp(-b * T)) * np.exp(-b * (TIMES - T))
    )
    np.testing.assert_allclose(pred, np.where(TIMES <= T, infusing(TIMES), after), rtol=RTOL)


def test_multiple_doses_by_superposition():
    D, times = 100.0, np.array([0.0, 7.0, 14.0])
    k21, a, b = _two_compartment_macro(**RITUXIMAB)
    V1 = RITUXIMAB["V1"]
    obs = np.array([1.0, 7.0, 8.0, 15.5, 30.0])
    pred, _ = predict(two_compartment_model(), [*(dose(t, D, 1) for t in times), *observe(obs)], RITUXIMAB)

    def single(t):
        t = np.maximum(t, 0)
        return D / V1 * ((a - k21) / (a - b) * np.exp(-a * t) + (k21 - b) / (a - b) * np.exp(-b * t))

    # A dose at the observation time is not yet seen (pre-dose convention), hence the strict <.
    expected = sum(np.where(obs > t, single(obs - t), 0.0) for t in times)
    np.testing.assert_allclose(pred, expected, rtol=RTOL)


def _augmented_expm(matrix, amounts, rates, s):
    """Reference: exp of [[K, r], [0, 0]] s applied to [x0; 1]."""
    n = matrix.shape[0]
    augmented = jnp.zeros((n + 1, n + 1)).at[:n, :n].set(matrix).at[:n, n].set(rates)
    return (expm(augmented * s) @ jnp.concatenate([amounts, jnp.ones(1)]))[:n]


@pytest.mark.parametrize("seed", range(5))
def test_two_compartment_oral_matches_matrix_exponential_with_inputs_everywhere(seed):
    rng = np.random.default_rng(seed)
    CL, V1, Q, V2, KA = rng.uniform(0.1, 3.0, 5)
    amounts = jnp.asarray(rng.uniform(0, 50, 3))
    rates = jnp.asarray(rng.uniform(0, 20, 3))
    s = float(rng.uniform(0.01, 5.0))
    k10, k12, k21 = CL / V1, Q / V1, Q / V2
    matrix = jnp.array([[-KA, 0, 0], [KA, -(k10 + k12), k21], [0, k12, -k21]])
    got = propagate_two_compartment(amounts, rates, s, CL=CL, V1=V1, Q=Q, V2=V2, KA=KA)
    np.testing.assert_allclose(got, _augmented_expm(matrix, amounts, rates, s), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("ka", [0.2, 0.2 * (1 + 1e-7), 1.3])
def test_one_compartment_oral_matches_matrix_exponential(ka):
    CL, V = 2.0, 10.0  # k = 0.2: the first two cases sit on and next to ka == k
    amounts, rates, s = jnp.array([30.0, 5.0]), jnp.array([4.0, 1.5]), 3.0
    matrix = jnp.array([[-ka, 0.0], [ka, -CL / V]])
    got = propagate_one_compartment(amounts, rates, s, CL=CL, V=V, KA=ka)
    np.testing.assert_allclose(got, _augmented_expm(matrix, amounts, rates, s), rtol=1e-9)


def test_divided_difference_is_smooth_across_the_confluent_switch():
    # Values and gradients either side of the Taylor threshold agree to the Taylor error.
    import jax

    s = 2.0
    grad = jax.grad(exp_divided_difference, argnums=1)
    below = 0.5 + 0.999e-3 / s
    above = 0.5 + 1.001e-3 / s
    assert abs(exp_divided_difference(0.5, below, s) - exp_divided_difference(0.5, above, s)) < 1e-6
    assert abs(grad(0.5, below, s) - grad(0.5, above, s)) < 1e-5
    assert np.isfinite(grad(0.5, 0.5, s))
    # exact limit s·exp(-a s)
    assert abs(exp_divided_difference(0.5, 0.5, s) - s * np.exp(-0.5 * s)) < 1e-15
