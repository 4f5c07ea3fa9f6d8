"""Fit recipes: everything a fit depends on, in one reviewed TOML file (``fits/<name>.toml``).

A recipe names the dataset (with the sha256 of its bytes, so a changed file is refused rather
than silently fitted), the model spec, which parameters are estimated or fixed, which get
random effects, the solver, the method and its settings, and the seed. ``fit(recipe)`` is a
pure function of the recipe and the files it names.

Format (paths are relative to the recipe file)::

    [fit]
    name = "pk_2cmt_example"      # output folder fits/<name>/
    method = "nuts"               # "nuts", "svi" or "map"
    seed = 1
    device = "auto"               # optional: "auto" (GPU for wide batches), "cpu" or "gpu"

    [data]
    path = "../examples/data/pk_trial.csv"
    sha256 = "…"                  # `itp-pd hash <file>` or `sha256sum <file>`

    [model]
    spec = "../models/pk_2cmt_iv.toml"
    values = "itp_v1_calibration.toml"  # optional: [typical] and [omega] replacing the spec's
    estimate = ["CL", "V1"]       # optional: exactly these are estimated (others fixed)
    random_effects = ["CL", "V1"] # optional: default every parameter with IIV
    correlated = ["CL", "V1"]     # optional: one block of correlated etas (LKJ prior)
    solver = { solver = "tsit5", rtol = 1e-6, atol = 1e-9, max_steps = 4096 }  # optional

    [nuts]   # chains, warmup, draws, target_accept, dense_mass, max_tree_depth, init
    [svi]    # guide ("meanfield" or "lowrank"), rank, steps, learning_rate, draws
    [map]    # steps, learning_rate
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..devices import DEVICE_CHOICES
from ..spec._problems import Problems, SpecProblem, spec_error, suggestion

METHODS = ("nuts", "svi", "map")
NUTS_INITS = ("median", "map", "svi")
SVI_GUIDES = ("meanfield", "lowrank")
SOLVER_KEYS = ("solver", "rtol", "atol", "max_steps")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class NutsSettings:
    """NUTS (NumPyro): ``chains`` run vectorised in one program (parallel pmap chains fail with
    a diffrax solve inside the model; design.md, known traps); ``dense_mass`` adapts a full
    mass matrix, which the non-centred population/eta correlations need. ``init``: start from
    the prior medians, or from a MAP or SVI fit (the ``[map]``/``[svi]`` settings)."""

    chains: int = 4
    warmup: int = 500
    draws: int = 500
    target_accept: float = 0.85
    dense_mass: bool = True
    max_tree_depth: int = 10
    init: str = "map"


@dataclass(frozen=True)
class SviSettings:
    """SVI with optax Adam: a mean-field (``AutoNormal``) or low-rank multivariate normal
    (``AutoLowRankMultivariateNormal``) guide; ``draws`` posterior draws from the guide."""

    guide: str = "lowrank"
    rank: int | None = None
    steps: int = 2000
    learning_rate: float = 0.01
    draws: int = 1000


@dataclass(frozen=True)
class MapSettings:
    """MAP (posterior mode) by optax Adam on the unconstrained log density."""

    steps: int = 2000
    learning_rate: float = 0.02


@dataclass(frozen=True)
class FitRecipe:
    """A checked fit recipe. Paths are absolute (resolved against the recipe's folder)."""

    name: str
    method: str
    seed: int
    data_path: Path
    data_sha256: str
    spec_path: Path
    estimate: tuple[str, ...] | None = None
    values_path: Path | None = None
    random_effects: tuple[str, ...] | None = None
    correlated: tuple[str, ...] = ()
    solver: tuple[tuple[str, object], ...] = ()
    nuts: NutsSettings = field(default_factory=NutsSettings)
    svi: SviSettings = field(default_factory=SviSettings)
    map: MapSettings = field(default_factory=MapSettings)
    path: Path | None = None
    sha256: str | None = None
    device: str = "auto"

    @property
    def output_dir(self) -> Path:
        """``<recipe folder>/<name>/``: where ``write_fit`` puts the results."""
        base = self.path.parent if self.path is not None else Path.cwd()
        return base / self.name


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_SECTIONS = {
    "fit": {"name", "method", "seed", "device"},
    "data": {"path", "sha256"},
    "model": {"spec", "values", "estimate", "random_effects", "correlated", "solver"},
    "nuts": set(NutsSettings.__dataclass_fields__),
    "svi": set(SviSettings.__dataclass_fields__),
    "map": set(MapSettings.__dataclass_fields__),
}


def _check_keys(problems, table, allowed, where):
    for key in table:
        if key not in allowed:
            problems.add(f"{where}{key}", "an unknown key", "one of " + ", ".join(sorted(allowed)),
                         "remove it or correct its spelling" + suggestion(key, allowed))


def _names(problems, value, where):
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.add(where, repr(value), "a list of parameter names", 'write e.g. ["CL", "V1"]')
        return None
    return tuple(value)


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_positive(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _expectation(default, key):
    """(what a value must be, its test) for a setting, from the type of its default."""
    if isinstance(default, bool):
        return "true or false", lambda v: isinstance(v, bool)
    if isinstance(default, float):
        return "a positive number", _is_positive
    if isinstance(default, int) or key == "rank":
        return "a positive integer", _is_count
    return "a string", lambda v: isinstance(v, str)


def _settings(problems, cls, table, section):
    """Build a settings dataclass, checking each value against the type of its default."""
    values = {}
    for key, value in table.items():
        if key not in cls.__dataclass_fields__:
            continue  # reported by _check_keys
        default = cls.__dataclass_fields__[key].default
        expected, test = _expectation(default, key)
        if test(value):
            values[key] = float(value) if isinstance(default, float) else value
        else:
            problems.add(f"{section}.{key}", repr(value), expected, f"set {section}.{key} to {expected}")
    return cls(**values)


def load_recipe(path: str | Path, *, check_data: bool = True) -> FitRecipe:
    """Read and check a fit recipe.

    Args:
        path: the recipe TOML.
        check_data: verify that the dataset file exists and its sha256 matches the recipe.

    Raises:
        SpecError: listing every problem (field, what was found, what was expected, the fix).
    """
    path = Path(path).resolve()
    file = str(path)
    try:
        raw = path.read_bytes()
        data = tomllib.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise spec_error([SpecProblem(file, "(file)", f"{type(error).__name__}: {error}",
                                      "a readable UTF-8 TOML fit recipe", "check the path and the syntax")],
                         file) from None
    problems = Problems(file)
    _check_keys(problems, data, _SECTIONS, "")
    for section, allowed in _SECTIONS.items():
        table = data.get(section, {})
        if not isinstance(table, dict):
            problems.add(section, repr(table), "a table", f"write it as [{section}]")
            data[section] = {}
        else:
            _check_keys(problems, table, allowed, f"{section}.")
    fit, dataset, model = data.get("fit", {}), data.get("data", {}), data.get("model", {})

    name = fit.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        problems.add("fit.name", repr(name), "a folder name (letters, digits, _ . -)", 'add e.g. name = "my_fit"')
    method = fit.get("method", "nuts")
    if method not in METHODS:
        problems.add("fit.method", repr(method), " or ".join(METHODS),
                     "choose one" + suggestion(str(method), METHODS))
    seed = fit.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        problems.add("fit.seed", repr(seed), "a non-negative integer", "add e.g. seed = 1 (fits must be reproducible)")

    device = fit.get("device", "auto")
    if device not in DEVICE_CHOICES:
        problems.add("fit.device", repr(device), " or ".join(DEVICE_CHOICES),
                     "choose one (auto: a GPU when present and the batch is wide enough)")

    data_path = spec_path = None
    if not isinstance(dataset.get("path"), str):
        problems.add("data.path", repr(dataset.get("path")), "the dataset CSV, relative to the recipe", "add it")
    else:
        data_path = (path.parent / dataset["path"]).resolve()
    declared = dataset.get("sha256")
    if not (isinstance(declared, str) and re.fullmatch(r"[0-9a-f]{64}", declared)):
        problems.add("data.sha256", repr(declared), "the 64-digit hex sha256 of the dataset file",
                     f"add sha256 = \"{file_sha256(data_path)}\"" if data_path and data_path.is_file()
                     else "add the file's sha256 (sha256sum <file>)")
    elif check_data and data_path is not None:
        if not data_path.is_file():
            problems.add("data.path", str(data_path), "an existing file", "check the path (relative to the recipe)")
        elif (actual := file_sha256(data_path)) != declared:
            problems.add("data.sha256", declared, f"the file's sha256, which is {actual}",
                         "the dataset changed since the recipe was written: check the data, then update sha256")
    if not isinstance(model.get("spec"), str):
        problems.add("model.spec", repr(model.get("spec")), "the model spec TOML, relative to the recipe", "add it")
    else:
        spec_path = (path.parent / model["spec"]).resolve()
    values_path = None
    if "values" in model:
        if not isinstance(model["values"], str):
            problems.add("model.values", repr(model["values"]), "a TOML file of [typical] and [omega] values, "
                         "relative to the recipe", 'write e.g. values = "itp_v1_calibration.toml"')
        else:
            values_path = (path.parent / model["values"]).resolve()
            if not values_path.is_file():
                problems.add("model.values", str(values_path), "an existing file", "check the path (relative to the recipe)")

    solver = model.get("solver", {})
    if not isinstance(solver, dict):
        problems.add("model.solver", repr(solver), "a table", 'write e.g. solver = { solver = "tsit5", rtol = 1e-6 }')
        solver = {}
    _check_keys(problems, solver, set(SOLVER_KEYS), "model.solver.")

    nuts = _settings(problems, NutsSettings, data.get("nuts", {}), "nuts")
    svi = _settings(problems, SviSettings, data.get("svi", {}), "svi")
    map_settings = _settings(problems, MapSettings, data.get("map", {}), "map")
    if not 0 < nuts.target_accept < 1:
        problems.add("nuts.target_accept", repr(nuts.target_accept), "a probability in (0, 1)", "use e.g. 0.85")
    if nuts.init not in NUTS_INITS:
        problems.add("nuts.init", repr(nuts.init), " or ".join(NUTS_INITS), "choose one")
    if svi.guide not in SVI_GUIDES:
        problems.add("svi.guide", repr(svi.guide), " or ".join(SVI_GUIDES), "choose one")
    estimate = _names(problems, model.get("estimate"), "model.estimate")
    random_effects = _names(problems, model.get("random_effects"), "model.random_effects")
    correlated = _names(problems, model.get("correlated"), "model.correlated") or ()
    problems.raise_if_any()
    return FitRecipe(
        name=name, method=method, seed=seed, data_path=data_path, data_sha256=declared, spec_path=spec_path,
        values_path=values_path, estimate=estimate, random_effects=random_effects, correlated=correlated,
        solver=tuple(sorted(solver.items())), nuts=nuts, svi=svi, map=map_settings,
        path=path, sha256=hashlib.sha256(raw).hexdigest(), device=device,
    )
