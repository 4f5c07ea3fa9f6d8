"""Structural models: PK blocks and the models assembled from them."""

from .base import AbstractModel, PKModel
from .pk_blocks import AbstractLinearPK, OneCompartmentPK, TwoCompartmentPK
from .pk_models import one_compartment_model, two_compartment_model
from .solver_config import SolverConfig
from .turnover import TurnoverModel

__all__ = [
    "AbstractLinearPK",
    "AbstractModel",
    "OneCompartmentPK",
    "PKModel",
    "SolverConfig",
    "TurnoverModel",
    "TwoCompartmentPK",
    "one_compartment_model",
    "two_compartment_model",
]
