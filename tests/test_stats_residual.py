"""Residual error and M3 likelihood: against scipy, in the far tail, and under masking."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from numpyro.infer.util import log_likelihood
from scipy import stats

from itp_pd.stats import ResidualError, residual_sd

F = jnp.asarray([20.0, 50.0, 3.0, 0.8])
Y = jnp.asarray([24.0, 41.0, 2.5, 1.1])


@pytest.mark.parametrize(
    "error, sigmas, expected_sd",
    [
        ("additive", dict(sigma_add=2.0), lambda f: np.full_like(f, 2.0)),
        ("proportional", dict(sigma_prop=0.2), lambda f: 0.2 * f),
        ("combined", dict(sigma_add=1.0, sigma_prop=0.1), lambda f: np.hypot(1.0, 0.1 * f)),
        ("lognormal", dict(sigma_log=0.3), lambda f: np.full_like(f, 0.3)),
    ],
)
def test_log_density_matches_scipy_for_each_error_model(error, sigmas, expected_sd):
    sd = residual_sd(error, F, **sigmas)
    np.testing.assert_allclose(sd, expected_sd(np.asarray(F)), rtol=1e-14)
    log_scale = error == "lognormal"
    d = ResidualError(F, sd, log_scale, False, 0.0)
    if log_scale:  # density of y: lognormal with median f
        expected = stats.lognorm.logpdf(Y, s=sd, scale=F)
    else:
        expected = stats.norm.logpdf(Y, loc=F, scale=sd)
    np.testing.assert_allclose(d.log_prob(Y), expected, rtol=1e-12)


def test_unknown_error_model_names_the_choices():
    with pytest.raises(ValueError, match="additive, proportional, combined or lognormal"):
        residual_sd("exponential", F)


def test_m3_is_the_probability_below_the_limit_on_the_right_scale():
    lloq = jnp.full(4, 5.0)
    sd = residual_sd("proportional", F, sigma_prop=0.2)
    normal = ResidualError(F, sd, False, True, lloq).log_prob(Y)
    # atol: log Φ of a probability within 1e-9 of 1 is a difference of tiny numbers; jax and
    # scipy agree to 1e-17 there, not to 12 significant digits.
    np.testing.assert_allclose(normal, stats.norm.logcdf(5.0, loc=F, scale=sd), rtol=1e-12, atol=1e-15)
    lognormal = ResidualError(F, jnp.full(4, 0.3), True, True, lloq).log_prob(Y)
    np.testing.assert_allclose(lognormal, stats.lognorm.logcdf(5.0, s=0.3, scale=F), rtol=1e-12, atol=1e-15)


def test_m3_keeps_a_finite_gradient_forty_sds_into_the_tail():
    # A prediction 40 sd above the limit: Φ underflows to 0 in float64 at about −38 sd, so a
    # log(cdf) likelihood would give −inf and a NaN gradient; log_ndtr keeps both finite.
    def loglik(f):
        return ResidualError(f, jnp.asarray(1.0), False, True, jnp.asarray(1.0)).log_prob(jnp.asarray(0.0))

    value, grad = jax.value_and_grad(loglik)(jnp.asarray(41.0))
    assert np.isfinite(value) and value < -700
    # d/dz log Φ(z) ≈ −z for z → −∞; here z = 1 − f, so d/df ≈ z = −40.
    np.testing.assert_allclose(grad, -40.0, rtol=0.01)


def test_mixed_rows_pick_their_own_branch_and_gradients_stay_finite():
    log_scale = jnp.asarray([False, True, False, True])
    censored = jnp.asarray([False, False, True, True])
    sd = jnp.where(log_scale, 0.3, 0.2 * F)
    lloq = jnp.asarray([1.0, 1.0, 5.0, 5.0])
    value = jnp.asarray([24.0, 41.0, -1.0, 0.0])  # BLQ rows may carry any value, even ≤ 0
    d = ResidualError(F, sd, log_scale, censored, lloq)
    expected = [
        stats.norm.logpdf(24.0, loc=20.0, scale=4.0),
        stats.lognorm.logpdf(41.0, s=0.3, scale=50.0),
        stats.norm.logcdf(5.0, loc=3.0, scale=0.6),
        stats.lognorm.logcdf(5.0, s=0.3, scale=0.8),
    ]
    np.testing.assert_allclose(d.log_prob(value), expected, rtol=1e-12, atol=1e-15)
    grad = jax.grad(lambda f: ResidualError(f, jnp.where(log_scale, 0.3, 0.2 * f), log_scale, censored, lloq).log_prob(value).sum())(F)
    assert np.all(np.isfinite(grad))


def test_padding_masked_on_the_distribution_is_left_out_of_pointwise_log_likelihoods():
    is_data = jnp.asarray([True, True, False, False])

    def model(y=None):
        sigma = numpyro.sample("sigma_PLT", numpyro.distributions.HalfNormal(0.5))
        numpyro.sample("PLT", ResidualError(F, sigma * F, False, False, 0.0).mask(is_data), obs=y)

    pointwise = log_likelihood(model, {"sigma_PLT": jnp.asarray([0.2])}, Y)["PLT"][0]
    expected = stats.norm.logpdf(Y[:2], loc=F[:2], scale=0.2 * F[:2])
    np.testing.assert_allclose(pointwise[:2], expected, rtol=1e-12)
    np.testing.assert_array_equal(pointwise[2:], 0.0)


def test_samples_follow_the_error_model():
    key = jax.random.PRNGKey(0)
    normal = ResidualError(jnp.full(200_000, 20.0), jnp.full(200_000, 4.0), False, False, 0.0).sample(key)
    assert float(normal.mean()) == pytest.approx(20.0, abs=0.05) and float(normal.std()) == pytest.approx(4.0, rel=0.01)
    lognormal = ResidualError(jnp.full(200_000, 20.0), jnp.full(200_000, 0.3), True, False, 0.0).sample(key)
    assert float(jnp.median(lognormal)) == pytest.approx(20.0, rel=0.01)
    assert float(jnp.log(lognormal).std()) == pytest.approx(0.3, rel=0.01)
