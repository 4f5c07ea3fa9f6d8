"""Small pure functions, one mechanism each, with their equations and references."""

from .effects import emax, inhibition
from .linear_pk import (
    exp_divided_difference,
    propagate_one_compartment,
    propagate_two_compartment,
    two_compartment_rates,
)
from .turnover import turnover_rate

__all__ = [
    "emax",
    "exp_divided_difference",
    "inhibition",
    "propagate_one_compartment",
    "propagate_two_compartment",
    "turnover_rate",
    "two_compartment_rates",
]
