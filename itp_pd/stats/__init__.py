"""The statistical layer: the hierarchical NumPyro model (``build_model``), observed data on
the engine's grid, residual error and BLQ (M3)."""

from .model import build_model, model_data
from .observed import ObservedData, observed_data
from .residual import ResidualError, residual_sd
from .simulated_data import simulate_dataset

__all__ = ["ObservedData", "ResidualError", "build_model", "model_data", "observed_data", "residual_sd", "simulate_dataset"]
