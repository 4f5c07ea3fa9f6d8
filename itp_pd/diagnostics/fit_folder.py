"""A finished fit read back from its folder, with the model and data it was fitted to rebuilt.

The report needs more than ``posterior.nc``: the visual predictive check and the population
predictions simulate the model again on the fitted dataset. The folder's ``manifest.json``
names the recipe; the recipe names the dataset (checked by sha256) and the spec, so the model
is rebuilt exactly as ``fit`` built it, or refused with the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd

from ..errors import FitFolderError

REQUIRED_FILES = ("posterior.nc", "manifest.json", "diagnostics.json", "summary.csv")


@dataclass
class FinishedFit:
    """A fit's artefacts and the rebuilt model.

    Attributes:
        directory: the fit folder.
        idata: ArviZ InferenceData (posterior, log_likelihood, posterior_predictive, ...).
        summary: per population parameter: mean, sd, q5, q95, ESS, R-hat.
        diagnostics: ``diagnostics.json`` (method, divergences, solver failures, times).
        manifest: ``manifest.json`` (recipe, hashes, versions, seed).
        losses: the optimisation loss per step (SVI, MAP), else ``None``.
        recipe: the ``FitRecipe``; spec: the ``ModelSpec`` as fitted (values and estimate
            list applied); dataset: the fitted ``Dataset``.
        model, population, observed: ``build_model``'s outputs for that dataset.
    """

    directory: Path
    idata: az.InferenceData
    summary: pd.DataFrame
    diagnostics: dict
    manifest: dict
    losses: np.ndarray | None
    recipe: object
    spec: object
    dataset: object
    model: object
    population: object
    observed: object

    @property
    def method(self) -> str:
        return self.diagnostics.get("method", self.manifest.get("method", "?"))

    @property
    def n_draws(self) -> int:
        posterior = self.idata.posterior
        return int(posterior.sizes["chain"] * posterior.sizes["draw"])


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FitFolderError(f"{path} is not readable JSON ({error}); the fit folder is damaged: fit again "
                             "with `itp-pd fit <recipe> --force`") from None


def _find_recipe(recorded: Path, directory: Path) -> Path:
    """The recipe where the manifest says (relative to the fit folder; older manifests hold
    absolute paths), or, when the project moved, beside the fit folder (``<recipe
    folder>/<name>/`` is where ``itp-pd fit`` writes)."""
    recorded = recorded if recorded.is_absolute() else directory / recorded
    if recorded.is_file():
        return recorded
    moved = directory.resolve().parent / recorded.name
    if moved.is_file():
        return moved
    raise FitFolderError(f"the recipe of this fit, {recorded}, is gone (not found beside {directory} either); "
                         "restore it, or fit again")


def load_fit(directory: str | Path) -> FinishedFit:
    """Read a fit folder written by ``write_fit`` and rebuild its model and data.

    Raises:
        FitFolderError: a file is missing, the fit was run on an in-memory dataset (no
            recipe to rebuild from), or the recipe changed since the fit.
        SpecError / DatasetError: from reading the recipe and dataset (e.g. the dataset's
            sha256 no longer matches the recipe).
    """
    from ..inference import load_recipe, recipe_spec, recipe_structural
    from ..stats import build_model

    directory = Path(directory)
    if not directory.is_dir():
        raise FitFolderError(f"{directory} is not a folder; give the output folder of `itp-pd fit` "
                             "(e.g. fits/pk_2cmt_example)")
    missing = [name for name in REQUIRED_FILES if not (directory / name).is_file()]
    if missing:
        raise FitFolderError(f"{directory} is not a finished fit: {', '.join(missing)} missing; run "
                             "`itp-pd fit <recipe>` to produce it")
    manifest, diagnostics = (_read_json(directory / name) for name in ("manifest.json", "diagnostics.json"))
    recipe_path = manifest.get("recipe")
    if not recipe_path:
        raise FitFolderError(f"{directory}/manifest.json names no recipe (the fit ran on an in-memory "
                             "dataset); write the dataset and a recipe to files and fit with `itp-pd fit`")
    recipe = load_recipe(_find_recipe(Path(recipe_path), directory))
    if manifest.get("recipe_sha256") and recipe.sha256 != manifest["recipe_sha256"]:
        raise FitFolderError(f"the recipe {recipe_path} changed since this fit (sha256 differs from "
                             f"{directory}/manifest.json); fit it again, or restore the recipe")
    spec = recipe_spec(recipe)
    # Read the data as the fit did (the recipe's [data] options, or the fit's --sep/--drop).
    dataset = recipe.with_data_options(manifest.get("data_options") or {}).read_data()
    model, population, observed = build_model(spec, dataset, structural=recipe_structural(recipe, spec),
                                              random_effects=recipe.random_effects,
                                              correlated=recipe.correlated)
    try:
        losses_file = directory / "losses.csv"
        losses = pd.read_csv(losses_file)["loss"].to_numpy() if losses_file.is_file() else None
        idata = az.from_netcdf(directory / "posterior.nc")
        summary = pd.read_csv(directory / "summary.csv", index_col="parameter")
    except (OSError, ValueError, KeyError) as error:
        raise FitFolderError(f"{directory} has an unreadable file ({type(error).__name__}: {error}); "
                             "the fit folder is damaged: fit again with `itp-pd fit <recipe> --force`") from None
    return FinishedFit(
        directory=directory,
        idata=idata,
        summary=summary,
        diagnostics=diagnostics,
        manifest=manifest,
        losses=losses,
        recipe=recipe,
        spec=spec,
        dataset=dataset,
        model=model,
        population=population,
        observed=observed,
    )
