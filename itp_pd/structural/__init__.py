"""Structural models: PK blocks and the models assembled from them."""

from .base import AbstractModel, PKModel
from .itp import ITPModel
from .pk_blocks import AbstractLinearPK, OneCompartmentPK, TwoCompartmentPK
from .pk_models import one_compartment_model, two_compartment_model
from .registry import STRUCTURAL_MODELS, model_from_spec
from .solver_config import SolverConfig
from .turnover import TurnoverModel

__all__ = [
    "AbstractLinearPK",
    "AbstractModel",
    "ITPModel",
    "OneCompartmentPK",
    "PKModel",
    "STRUCTURAL_MODELS",
    "SolverConfig",
    "TurnoverModel",
    "TwoCompartmentPK",
    "model_from_spec",
    "one_compartment_model",
    "two_compartment_model",
]
