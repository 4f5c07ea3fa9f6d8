"""Inference: fit recipes, NUTS / SVI / MAP drivers, and the artefacts of a fit.

``fit(recipe)`` reads a recipe (``fits/<name>.toml``), checks the dataset against its sha256,
builds the hierarchical model (``itp_pd.stats.build_model``), runs the method and returns the
posterior as ArviZ InferenceData with a summary table, diagnostics and a manifest;
``write_fit`` stores them atomically in ``fits/<name>/``.
"""

from .artefacts import population_sites, summary_table, to_inference_data, write_fit
from .fit import FitResult, fit, recipe_spec, recipe_structural, run_recipe
from .recipe import FitRecipe, FoceiSettings, MapSettings, NutsSettings, SviSettings, file_sha256, load_recipe
from .samplers import Draws, run_nuts, run_optimiser

__all__ = [
    "FoceiSettings",
    "Draws",
    "FitRecipe",
    "FitResult",
    "MapSettings",
    "NutsSettings",
    "SviSettings",
    "file_sha256",
    "fit",
    "load_recipe",
    "population_sites",
    "recipe_spec",
    "recipe_structural",
    "run_nuts",
    "run_optimiser",
    "run_recipe",
    "summary_table",
    "to_inference_data",
    "write_fit",
]
