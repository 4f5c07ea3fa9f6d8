"""Indirect-response (turnover) dynamics."""

from __future__ import annotations


def turnover_rate(response, KIN, KOUT, production_factor=1.0, loss_factor=1.0):
    """Rate of change of a turnover response, ``KIN·f_in − KOUT·f_out·R`` (units of R per day).

    Args:
        response: current response R (any unit).
        KIN: zero-order production (units of R per day). KOUT: first-order loss (1/day).
        production_factor: drug effect multiplying production (dimensionless).
        loss_factor: drug effect multiplying loss (dimensionless).

    Reference: Dayneka, Garg & Jusko, J Pharmacokinet Biopharm 1993; 21:457 (models I-IV).
    """
    return KIN * production_factor - KOUT * loss_factor * response
