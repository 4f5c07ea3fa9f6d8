"""Individual parameter values from a typical value, covariates and eta."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import jax.numpy as jnp
from jax.scipy.special import expit, logit
from jaxtyping import Array, ArrayLike, Float

from ..errors import SpecError
from .model import CovariateEffect, Parameter

_NO_COVARIATES: Mapping[str, ArrayLike] = MappingProxyType({})


def covariate_factor(
    effect: CovariateEffect, value: Float[ArrayLike, "..."], exponent: Float[ArrayLike, ""] | None = None
) -> Float[Array, "..."]:
    """The multiplicative effect of one covariate on a typical value.

    ``power``: (cov/reference)^exponent; ``exponential``: exp(exponent·(cov − reference));
    ``categorical``: exp(effects[level]), 1 for the reference level and for unlisted levels.

    Args:
        effect: the covariate effect from the spec.
        value: covariate values (the covariate's unit; category codes for categorical), any shape.
        exponent: overrides ``effect.exponent`` (a sampled exponent); ignored for categorical.
    """
    cov = jnp.asarray(value)
    if not jnp.issubdtype(cov.dtype, jnp.floating):
        # Integer-coded covariates (SEX, categories) would otherwise hit strict dtype promotion.
        cov = cov.astype(jnp.result_type(float))
    if effect.form == "categorical":
        log_effect = sum((jnp.where(cov == level, log_ratio, 0.0) for level, log_ratio in effect.effects),
                         jnp.zeros_like(cov))
        return jnp.exp(log_effect)
    k = effect.exponent if exponent is None else exponent
    if effect.form == "power":
        return (cov / effect.reference) ** k
    return jnp.exp(k * (cov - effect.reference))


def individual_value(
    parameter: Parameter,
    typical: Float[ArrayLike, "..."],
    eta: Float[ArrayLike, "..."] | None,
    covariates: Mapping[str, Float[ArrayLike, "..."]] = _NO_COVARIATES,
    *,
    exponents: Mapping[str, Float[ArrayLike, ""]] | None = None,
) -> Float[Array, "..."]:
    """A patient's value of ``parameter``: covariate effects on the typical value, then IIV.

    With ``F = Π_k f_k(cov_k)`` the product of the covariate effects (``covariate_factor``)::

        log scale   (default):  P_i = θ · F · exp(η_i)
        logit scale (fractions): P_i = expit(logit(θ) + log F + η_i)

    On the logit scale covariates multiply the odds θ/(1 − θ) rather than θ itself, so every
    P_i stays in (0, 1) whatever the covariate values (θ·F can exceed 1; its logit cannot exist).
    For fractions near 0 the two readings agree. Parameters without IIV use the log-scale
    formula, with ``eta=None`` meaning η = 0.

    Pure and traceable: works under ``jax.jit``/``vmap`` and broadcasts ``typical``, ``eta`` and
    the covariate arrays against each other (e.g. ``n_patients``).

    Args:
        parameter: the spec's parameter (static: covariate forms and IIV scale).
        typical: typical value θ in ``parameter.unit`` (the population value, possibly sampled).
        eta: η on the IIV scale (dimensionless), or ``None`` for η = 0.
        covariates: covariate name → values (the covariate's unit); must hold every covariate
            the parameter's effects name.
        exponents: covariate name → exponent, overriding the spec's (for sampled exponents).

    Returns:
        The individual value in ``parameter.unit``, broadcast shape of the inputs.

    Raises:
        SpecError: a covariate the parameter needs is not in ``covariates`` (checked on the host,
            before tracing matters).
    """
    missing = [c.covariate for c in parameter.covariates if c.covariate not in covariates]
    if missing:
        raise SpecError(
            f"parameter {parameter.name}: covariates {missing} are needed by its covariate effects but were "
            f"not given (got {sorted(covariates)}); pass covariates={{{missing[0]!r}: values, ...}}"
        )
    exponents = exponents or {}
    # A Python 1.0 is weakly typed, so a parameter without covariates keeps typical's dtype.
    factor = 1.0
    for effect in parameter.covariates:
        factor = factor * covariate_factor(effect, covariates[effect.covariate], exponents.get(effect.covariate))
    typical = jnp.asarray(typical)
    if parameter.iiv is not None and parameter.iiv.scale == "logit":
        shift = jnp.log(factor) if parameter.covariates else 0.0
        if eta is not None:
            shift = shift + jnp.asarray(eta)
        return expit(logit(typical) + shift)
    value = typical * factor
    return value if eta is None else value * jnp.exp(jnp.asarray(eta))
