"""Exact propagation of linear compartmental pharmacokinetics.

Over an interval of length ``s`` (days) with constant zero-order input rates, a linear
compartment model has a closed-form solution. We write it with divided differences of the
exponential, so the removable singularities (``KA == k`` in a one-compartment oral model,
``KA == alpha`` or ``KA == beta`` in a two-compartment one) are handled by a Taylor branch
instead of producing NaN values or gradients.

States are amounts (mg); rates are mg/day; clearances L/day; volumes L; KA 1/day.
Compartment order within a block: ``[depot,] central[, peripheral]``.

Putzer's formula for a 2x2 matrix ``K`` with eigenvalues ``-alpha``, ``-beta``:

    exp(K s) = exp(-alpha s) I + DD(alpha, beta; s) (K + alpha I),
    DD(a, b; s) = (exp(-a s) - exp(-b s)) / (b - a),

and the convolutions of constant or exponential inputs follow from integrating each term
(Gibaldi & Perrier, *Pharmacokinetics*, 2nd ed., ch. 1-2, give the same solutions in
macro-constant form).
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float

# Below |Δrate · s| = 1e-3 the difference quotient of two exponentials loses more than
# eps/1e-3 ≈ 2e-13 to cancellation; there the cubic Taylor polynomial of (1 − e^{−z})/z,
# whose error is z⁴/120 ≈ 1e-14 relative, takes over.
_CONFLUENT_THRESHOLD = 1e-3
# Smallest separation allowed between the two disposition rates (1/day). It is only reached
# when Q → 0 and CL/V1 == Q/V2 simultaneously, where the peripheral compartment is decoupled.
_MIN_RATE_SEPARATION = 1e-12


def _divided_difference(a, exp_a, b, exp_b, s):
    """``(exp(-a s) - exp(-b s)) / (b - a)`` from the precomputed exponentials.

    Reusing ``exp_a = exp(-a s)`` and ``exp_b`` keeps transcendental calls to one per distinct
    rate, which is what the ODE vector field pays for at every stage.
    """
    gap = b - a
    confluent = jnp.abs(gap * s) < _CONFLUENT_THRESHOLD
    safe_gap = jnp.where(confluent, 1.0, gap)
    quotient = (exp_a - exp_b) / safe_gap
    # Expand around the smaller rate so the factor exp(-low s) carries the decay.
    low_exp = jnp.where(a <= b, exp_a, exp_b)
    z = jnp.abs(gap) * s
    taylor = low_exp * s * (1.0 - z / 2.0 + z * z / 6.0 - z * z * z / 24.0)
    return jnp.where(confluent, taylor, quotient)


def exp_divided_difference(a, b, s):
    """First divided difference of ``exp(-x s)`` over ``{a, b}``.

    ``DD(a, b; s) = (exp(-a s) - exp(-b s)) / (b - a)``, symmetric in ``a`` and ``b``, with the
    limit ``s exp(-a s)`` when ``a == b``. ``DD(0, k; s) = (1 - exp(-k s)) / k`` is the response
    to a unit constant input.

    Args:
        a, b: first-order rate constants (1/day), non-negative.
        s: elapsed time (days), non-negative.
    """
    return _divided_difference(a, jnp.exp(-a * s), b, jnp.exp(-b * s), s)


def _second_divided_difference(c, exp_c, alpha, exp_alpha, beta, exp_beta, s):
    """``(DD(c, alpha; s) - DD(c, beta; s)) / (beta - alpha)`` for alpha > beta, separated."""
    return (
        _divided_difference(c, exp_c, alpha, exp_alpha, s)
        - _divided_difference(c, exp_c, beta, exp_beta, s)
    ) / (beta - alpha)


def two_compartment_rates(CL, V1, Q, V2):
    """Micro-constants and disposition rates of the two-compartment model.

    Returns ``(k10, k12, k21, alpha, beta)`` in 1/day with ``alpha > beta > 0``:
    ``alpha, beta = (S ± sqrt(S² - 4 k10 k21)) / 2``, ``S = k10 + k12 + k21``. The discriminant is
    written as ``(k10 - k21)² + k12² + 2 k12 (k10 + k21)`` so it never cancels.
    """
    k10 = CL / V1
    k12 = Q / V1
    k21 = Q / V2
    total = k10 + k12 + k21
    root = jnp.sqrt((k10 - k21) ** 2 + k12**2 + 2.0 * k12 * (k10 + k21))
    alpha = 0.5 * (total + root)
    # beta from the product of the roots: no cancellation when beta << alpha.
    beta = k10 * k21 / alpha
    return k10, k12, k21, alpha, beta


def _one_compartment_disposition(amount, constant_input, exp_input, exp_rate, exp_c, k, s):
    """Central amount after ``s`` days of ``dA/dt = -k A + u + w exp(-c t)``."""
    exp_k = jnp.exp(-k * s)
    return (
        exp_k * amount
        + _divided_difference(0.0, 1.0, k, exp_k, s) * constant_input
        + _divided_difference(exp_rate, exp_c, k, exp_k, s) * exp_input
    )


def _two_compartment_disposition(amounts, constant_input, exp_input, exp_rate, exp_c, micro, s):
    """Central/peripheral amounts after ``s`` days of ``dx/dt = K x + u + w exp(-c t)``."""
    k10, k12, k21, alpha, beta = micro
    beta = jnp.minimum(beta, alpha - _MIN_RATE_SEPARATION)
    exp_alpha = jnp.exp(-alpha * s)
    exp_beta = jnp.exp(-beta * s)

    def shifted_matrix_times(v):  # (K + alpha I) v
        return jnp.stack(
            [
                (alpha - k10 - k12) * v[0] + k21 * v[1],
                k12 * v[0] + (alpha - k21) * v[1],
            ]
        )

    def response(rate, exp_rate_s, vector):
        # Putzer's formula integrated against exp(-rate t): first-order term along I, second
        # along (K + alpha I).
        return _divided_difference(rate, exp_rate_s, alpha, exp_alpha, s) * vector + (
            _second_divided_difference(rate, exp_rate_s, alpha, exp_alpha, beta, exp_beta, s)
            * shifted_matrix_times(vector)
        )

    homogeneous = exp_alpha * amounts + _divided_difference(
        alpha, exp_alpha, beta, exp_beta, s
    ) * shifted_matrix_times(amounts)
    return homogeneous + response(0.0, 1.0, constant_input) + response(exp_rate, exp_c, exp_input)


def propagate_one_compartment(
    amounts: Float[Array, " n_states"],
    rates: Float[Array, " n_states"],
    s,
    *,
    CL,
    V,
    KA=None,
) -> Float[Array, " n_states"]:
    """Exact amounts (mg) after ``s`` days of a one-compartment model with constant inputs.

    IV (``KA is None``), state ``[central]``:  ``dA/dt = -(CL/V) A + r``.
    Oral, state ``[depot, central]``:          ``dAd/dt = -KA Ad + r_d``,
                                               ``dA/dt = KA Ad - (CL/V) A + r_c``.

    Args:
        amounts: amounts at the start of the interval (mg).
        rates: zero-order input into each compartment (mg/day).
        s: interval length (days).
        CL: clearance (L/day). V: volume (L). KA: absorption rate constant (1/day).
    """
    k = CL / V
    if KA is None:
        central = _one_compartment_disposition(amounts[0], rates[0], 0.0, 0.0, 1.0, k, s)
        return jnp.stack([central])
    depot0, central0 = amounts[0], amounts[1]
    exp_ka = jnp.exp(-KA * s)
    depot = exp_ka * depot0 + _divided_difference(0.0, 1.0, KA, exp_ka, s) * rates[0]
    # Absorption into central, KA·Ad(t) = r_d + (KA·Ad0 − r_d)·exp(−KA t).
    central = _one_compartment_disposition(
        central0, rates[1] + rates[0], KA * depot0 - rates[0], KA, exp_ka, k, s
    )
    return jnp.stack([depot, central])


def propagate_two_compartment(
    amounts: Float[Array, " n_states"],
    rates: Float[Array, " n_states"],
    s,
    *,
    CL,
    V1,
    Q,
    V2,
    KA=None,
) -> Float[Array, " n_states"]:
    """Exact amounts (mg) after ``s`` days of a two-compartment model with constant inputs.

    IV, state ``[central, peripheral]``:
        ``dA1/dt = -(CL + Q)/V1 A1 + Q/V2 A2 + r1``, ``dA2/dt = Q/V1 A1 - Q/V2 A2 + r2``.
    Oral, state ``[depot, central, peripheral]``, depot absorbed into central at rate KA.

    Args:
        amounts: amounts at the start of the interval (mg).
        rates: zero-order input into each compartment (mg/day).
        s: interval length (days).
        CL, Q: clearances (L/day). V1, V2: volumes (L). KA: absorption rate (1/day).
    """
    micro = two_compartment_rates(CL, V1, Q, V2)
    zero = jnp.zeros(2, dtype=jnp.result_type(amounts))
    if KA is None:
        return _two_compartment_disposition(amounts, rates, zero, 0.0, 1.0, micro, s)
    depot0 = amounts[0]
    exp_ka = jnp.exp(-KA * s)
    depot = exp_ka * depot0 + _divided_difference(0.0, 1.0, KA, exp_ka, s) * rates[0]
    constant_input = rates[1:] + jnp.stack([rates[0], 0.0 * rates[0]])
    exp_input = jnp.stack([KA * depot0 - rates[0], 0.0 * depot0])
    disposition = _two_compartment_disposition(
        amounts[1:], constant_input, exp_input, KA, exp_ka, micro, s
    )
    return jnp.concatenate([depot[None], disposition])
