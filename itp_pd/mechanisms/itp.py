"""Mechanisms of the ITP model: B cells, T-helper balance, plasma cells, antibody, platelets.

Each function returns a rate of change (per day) of one state, or an algebraic quantity.
Cell and antibody states are relative to a reference (B cells, plasma cells, antibody: the
patient's untreated baseline; T-helper subsets: a healthy person's level). Platelets are
counts (10⁹/L). Sources and values: science.md §2-3.
"""

from __future__ import annotations

import jax.numpy as jnp

from .effects import emax, inhibition


def b_cell_rate(B, concentration, KB, EMAX_B, EC50_B, HILL_B):
    """CD20⁺ B cells (relative to baseline) under rituximab.

    ``dB/dt = KB·(1 − B) − KB·EMAX_B·C^h/(EC50_B^h + C^h)·B``: turnover at rate KB (1/day)
    around the baseline 1, plus killing up to EMAX_B-fold the natural loss (Pan 2019,
    Br J Clin Pharmacol 85:1790: KB ≈ 0.02/day, ≈35-fold). Repopulation follows from the
    turnover once rituximab (mg/L) has cleared.
    """
    killing = emax(concentration, EMAX_B, EC50_B, HILL_B)
    return KB * (1.0 - B) - KB * killing * B


def naive_t_rate(N, differentiation_load, KN, DIFF_SHARE):
    """Naive CD4⁺ T cells (relative to healthy).

    ``dN/dt = KN·(1 − N·((1 − DIFF_SHARE) + DIFF_SHARE·D))``: production KN, loss by death
    and by differentiation; ``D`` is the total differentiation relative to a healthy person
    (1 in health), ``DIFF_SHARE`` the share of naive-cell loss that is differentiation.
    """
    return KN * (1.0 - N * ((1.0 - DIFF_SHARE) + DIFF_SHARE * differentiation_load))


def t_helper_rate(T, N, multiplier, KT):
    """A differentiated T-helper subset (relative to healthy): ``dT/dt = KT·(m·N − T)``.

    ``m`` multiplies the healthy differentiation rate: > 1 for effector subsets in ITP
    (a patient-specific skew), < 1 for Treg; iguratimod scales it (Xu 2015: Th1 −46%,
    Th17 −24%, Treg +31% after 24 weeks in RA).
    """
    return KT * (multiplier * N - T)


def t_helper_multipliers(concentration, SKEW, IMAX_TH1, IMAX_TH17, EMAX_TREG, IC50_TH):
    """Differentiation multipliers ``(Th1, Th17, Tfh, Treg)`` for a patient and an iguratimod
    concentration (mg/L): effectors ×SKEW, Treg ÷SKEW; iguratimod inhibits Th1/Th17 and
    stimulates Treg with a common half-maximal concentration IC50_TH (mg/L)."""
    fraction = concentration / (IC50_TH + concentration)
    return jnp.stack(
        [
            SKEW * (1.0 - IMAX_TH1 * fraction),
            SKEW * (1.0 - IMAX_TH17 * fraction),
            SKEW,
            (1.0 + EMAX_TREG * fraction) / SKEW,
        ]
    )


def pathogenic_help(T1, T17, TFH, TREG):
    """Help for plasma-cell formation and T-cell platelet destruction, relative to healthy:
    the mean of the effector subsets over the regulatory one (all relative to healthy)."""
    return (T1 + T17 + TFH) / (3.0 * TREG)


def plasma_cell_rate(X, B, help_relative, concentration, K, IMAX_PC, IC50_PC):
    """Short- or long-lived plasma cells (relative to baseline).

    ``dX/dt = K·(B·h·(1 − IMAX_PC·C/(IC50_PC + C)) − X)``: formed from B cells in proportion
    to the T-cell help ``h`` (relative to the patient's baseline), formation inhibited by
    iguratimod (Ye 2019; Yan 2017), lost at rate K (1/day: days for short-lived, months for
    long-lived cells). Rituximab acts only through B; plasma cells are CD20⁻.
    """
    formation = B * help_relative * inhibition(concentration, IMAX_PC, IC50_PC)
    return K * (formation - X)


def antibody_rate(A, S, L, KEL, FL):
    """Antibody (relative to baseline): ``dA/dt = KEL·((1 − FL)·S + FL·L − A)``; FL the share
    made by long-lived plasma cells, KEL the elimination rate (1/day): for total IgG the IgG
    half-life, KIGG = ln 2 / 21 days (Andersen & Sandlie 2009); for anti-platelet IgG
    ``anti_platelet_elimination``."""
    return KEL * ((1.0 - FL) * S + FL * L - A)


def anti_platelet_elimination(KIGG, KTMD):
    """Elimination rate of anti-platelet IgG (1/day): ``KIGG + KTMD``.

    Besides FcRn-protected IgG turnover (KIGG), antibody bound to platelets is removed with
    the platelets it opsonises, in the spleen, whose destruction flux in ITP (production,
    several times a healthy person's platelet mass per week) is large next to the antibody
    pool. Taken first-order (KTMD, 1/day) because that flux, equal to production at steady
    state, changes far less during a response than the count does. It makes antibody fall
    faster than 21 days once plasma cells stop, and rise faster when B cells return, which is
    what the median time to response of rituximab (28 d) and its relapses ask for (science.md
    §4, C2, C4); size [calibrated].
    """
    return KIGG + KTMD


def megakaryocyte_rate(MK, P, A, PROD, EPROD, PREF, GAMMA, KTR):
    """Megakaryocyte precursors (in platelet-equivalents, 10⁹/L).

    ``dMK/dt = PROD·(1 − EPROD·A)·(PREF/P)^GAMMA − KTR·MK``: baseline production PROD
    (10⁹/L/day), impaired by antibody (fraction EPROD at the baseline level A = 1), with a
    weak count feedback (GAMMA 0.19–0.62, Friberg-type models; TPO near normal in ITP).
    """
    return PROD * (1.0 - EPROD * A) * (PREF / P) ** GAMMA - KTR * MK


def platelet_rate(P, inflow, A, help_relative, KNAT, KAB, KTD):
    """Circulating platelets (10⁹/L): ``dP/dt = inflow − (KNAT + KAB·A + KTD·h)·P``; natural
    clearance KNAT (1/day, lifespan ~10 days, Hanson & Slichter 1985), antibody-mediated
    clearance KAB per unit antibody, antibody-independent (T-cell) destruction KTD per
    unit help."""
    return inflow - (KNAT + KAB * A + KTD * help_relative) * P
