"""The statistical layer: the hierarchical NumPyro model (``build_model``), observed data on
the engine's grid, residual error and BLQ (M3)."""

from .model import build_model
from .observed import ObservedData, observed_data
from .residual import ResidualError, residual_sd

__all__ = ["ObservedData", "ResidualError", "build_model", "observed_data", "residual_sd"]
