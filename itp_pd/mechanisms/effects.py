"""Concentration-effect relations."""

from __future__ import annotations


def emax(concentration, EMAX, EC50, HILL=1.0):
    """Sigmoid Emax stimulation, ``EMAX · C^h / (EC50^h + C^h)`` (dimensionless).

    Args:
        concentration: drug concentration (mg/L), non-negative.
        EMAX: maximal effect (dimensionless). EC50: concentration at half-maximal effect (mg/L).
        HILL: Hill coefficient (dimensionless).

    Reference: Holford & Sheiner, Clin Pharmacokinet 1981; 6:429.
    """
    c = concentration**HILL
    return EMAX * c / (EC50**HILL + c)


def inhibition(concentration, IMAX, IC50):
    """Fractional inhibition ``1 − IMAX · C / (IC50 + C)`` (dimensionless, in [1 − IMAX, 1]).

    Args:
        concentration: drug concentration (mg/L), non-negative.
        IMAX: maximal fractional inhibition, 0 ≤ IMAX ≤ 1. IC50: half-maximal concentration (mg/L).

    Reference: Dayneka, Garg & Jusko, J Pharmacokinet Biopharm 1993; 21:457.
    """
    return 1.0 - IMAX * concentration / (IC50 + concentration)
