"""Residual error and BLQ (M3) likelihood of observations, as one NumPyro distribution.

A fit reads each observation row ``y`` against the model prediction ``f`` with its output's
error model (``ERROR_MODELS`` of the spec; one per DVID):

=============  =========================================  ================================
error          y given f                                  sd
=============  =========================================  ================================
additive       normal(f, sd)                              σa
proportional   normal(f, sd)                              σp·|f|
combined       normal(f, sd)                              √(σa² + σp²·f²)
lognormal      log y ~ normal(log f, sd)                  σ (on the log scale)
=============  =========================================  ================================

A row below the limit of quantification (BLQ) contributes the probability of a value below
it, ``P(Y < LLOQ) = Φ((LLOQ − f)/sd)`` (Beal 2001, method M3), computed with ``log_ndtr`` so
that it keeps its gradient far in the tail, where ``log(Φ)`` would round to ``log 0``.
Densities are of ``y`` itself (the lognormal one includes ``−log y``), so pointwise
log-likelihoods of different error models can be compared (LOO, WAIC).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from jax.scipy.special import log_ndtr
from jaxtyping import Array, Bool, Float

_LOG_2PI = jnp.log(2.0 * jnp.pi)
_TINY = 1e-300  # floor inside logs of rows whose log branch is not taken


def residual_sd(error: str, prediction, *, sigma_add=0.0, sigma_prop=0.0, sigma_log=0.0):
    """Residual standard deviation of observations around ``prediction``.

    Args:
        error: ``additive``, ``proportional``, ``combined`` or ``lognormal`` (static).
        prediction: model prediction ``f`` in the output's unit, any shape.
        sigma_add: additive sd, in the output's unit. sigma_prop: proportional sd (fraction).
        sigma_log: sd on the log scale (lognormal).

    Returns:
        sd in the output's unit (log scale for ``lognormal``), shaped like ``prediction``.
    """
    f = jnp.abs(jnp.asarray(prediction))
    if error == "additive":
        return sigma_add * jnp.ones_like(f)
    if error == "proportional":
        return sigma_prop * f
    if error == "combined":
        return jnp.sqrt(sigma_add**2 + (sigma_prop * f) ** 2)
    if error == "lognormal":
        return sigma_log * jnp.ones_like(f)
    raise ValueError(
        f"unknown error model {error!r}; expected additive, proportional, combined or lognormal"
    )


class ResidualError(dist.Distribution):
    """Observations around predictions with per-row error model and BLQ censoring.

    Args:
        prediction: ``f``, shape ``(n_obs,)``, in each row's output unit.
        sd: residual sd per row (``residual_sd``); on the log scale where ``log_scale``.
        log_scale: rows whose error model is ``lognormal``.
        censored: rows reported below the limit of quantification (M3).
        lloq: each row's limit of quantification (used where ``censored``).

    Padding and prediction-only rows are removed with ``.mask(is_data)``, which (unlike
    ``numpyro.handlers.mask``) ``log_likelihood`` honours.
    """

    arg_constraints = {"prediction": dist.constraints.real, "sd": dist.constraints.positive}
    support = dist.constraints.real
    reparametrized_params = ["prediction", "sd"]

    def __init__(
        self,
        prediction: Float[Array, " n_obs"],
        sd: Float[Array, " n_obs"],
        log_scale: Bool[Array, " n_obs"],
        censored: Bool[Array, " n_obs"],
        lloq: Float[Array, " n_obs"],
        *,
        validate_args=None,
    ):
        self.prediction, self.sd = jnp.broadcast_arrays(prediction, sd)
        shape = jnp.shape(self.prediction)
        self.log_scale = jnp.broadcast_to(log_scale, shape)
        self.censored = jnp.broadcast_to(censored, shape)
        self.lloq = jnp.broadcast_to(lloq, shape)
        super().__init__(batch_shape=shape, validate_args=validate_args)

    def _location(self):
        return jnp.where(self.log_scale, jnp.log(jnp.maximum(self.prediction, _TINY)), self.prediction)

    def _on_scale(self, value):
        return jnp.where(self.log_scale, jnp.log(jnp.maximum(value, _TINY)), value)

    def log_prob(self, value):
        location = self._location()
        # Rows of the other branch get harmless stand-ins, so that neither branch of the
        # `where` can put a NaN into the gradient.
        observed = jnp.where(self.censored, location, self._on_scale(value))
        z = (observed - location) / self.sd
        jacobian = jnp.where(self.log_scale & ~self.censored, observed, 0.0)
        density = -0.5 * z**2 - jnp.log(self.sd) - 0.5 * _LOG_2PI - jacobian
        limit = jnp.where(self.censored, self._on_scale(self.lloq), location)
        below = log_ndtr((limit - location) / self.sd)
        return jnp.where(self.censored, below, density)

    def sample(self, key, sample_shape=()):
        """Uncensored draws (what would be measured without a limit of quantification)."""
        noise = jax.random.normal(key, sample_shape + self.batch_shape, dtype=jnp.result_type(self.sd))
        draw = self._location() + self.sd * noise
        return jnp.where(self.log_scale, jnp.exp(draw), draw)

    @property
    def mean(self):
        return jnp.where(self.log_scale, jnp.exp(self._location() + 0.5 * self.sd**2), self.prediction)
