"""Fit recipes: everything a fit depends on, in one reviewed TOML file (``fits/<name>.toml``).

A recipe names the dataset (with the sha256 of its bytes, so a changed file is refused rather
than silently fitted), the model spec, which parameters are estimated or fixed, which get
random effects, the solver, the method and its settings, and the seed. ``fit(recipe)`` is a
pure function of the recipe and the files it names.

Format (paths are relative to the recipe file)::

    [fit]
    name = "pk_2cmt_example"      # output folder fits/<name>/
    method = "focei"              # "focei", "laplace" (maximum likelihood), "nuts", "svi" or "map"
    seed = 1
    device = "auto"               # optional: "auto" (GPU for wide batches), "cpu" or "gpu"

    [data]
    path = "../examples/data/pk_trial.csv"
    sha256 = "…"                  # `itp-pd hash <file>` or `sha256sum <file>`
    units = { TIME = "h", AMT = "mg", DV = { 1 = "ng/mL" } }  # optional: as the units sidecar
    sep = "whitespace"            # optional: "comma", "semicolon", "tab"; default: detected
    ignore = "@"                  # optional: comment lines (NONMEM's IGNORE); default "#"
    drop = ["SEX"]                # optional: columns to ignore (e.g. text); or keep = [...]

    [model]
    spec = "../models/pk_2cmt_iv.toml"
    values = "itp_v1_calibration.toml"  # optional: [typical] and [omega] replacing the spec's
    estimate = ["CL", "V1"]       # optional: exactly these are estimated (others fixed)
    random_effects = ["CL", "V1"] # optional: default every parameter with IIV
    correlated = ["CL", "V1"]     # optional: one block of correlated etas (LKJ prior)
    solver = { solver = "tsit5", rtol = 1e-6, atol = 1e-9, max_steps = 4096 }  # optional
                                  # (also oral_doses = "averaged": regular oral doses as their mean rate)

    [nuts]   # chains, warmup, draws, target_accept, dense_mass, max_tree_depth, init
    [svi]    # guide ("meanfield" or "lowrank"), rank, steps, learning_rate, draws
    [map]    # steps, learning_rate (the posterior mode: a start for NUTS, not an estimator of Omega)
    [focei]  # FOCE-I and Laplace: max_iterations, gtol, inner_tol, inner_decrement, search_inner_decrement, inner_noise,
             # inner_iterations, covariance ("sandwich", "r", "none"), fd_step, max_step, ftol, se_tol,
             # hessian_start ("bhhh", "differences"), draws, sir,
             # sir_samples, sir_resamples
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..devices import DEVICE_CHOICES
from ..spec._problems import Problems, SpecProblem, spec_error, suggestion
from ..structural.solver_config import ORAL_DOSES

METHODS = ("nuts", "svi", "map", "focei", "laplace")
COVARIANCE_KINDS = ("sandwich", "r", "none")
HESSIAN_STARTS = ("bhhh", "differences")
NUTS_INITS = ("median", "map", "svi")
SVI_GUIDES = ("meanfield", "lowrank")
SOLVER_KEYS = ("solver", "rtol", "atol", "max_steps", "oral_doses")
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
class FoceiSettings:
    """FOCE-I and Laplace (``itp_pd.estimation``): maximum likelihood, no priors.

    ``gtol``: converged when max |∂OFV/∂x| is below it (OFV units per unit of the
    unconstrained parameter), or ``se_tol``: when the optimum is fewer than this many of the
    estimate's standard errors away (by the local quadratic model; the criterion an ODE
    model meets, whose gradient is only as exact as its solver); ``inner_tol`` (gradient), ``inner_decrement`` (OFV units a further
    Newton step would gain; ``search_inner_decrement`` while BFGS is still on its way, after
    which it goes on from there with ``inner_decrement``), ``inner_noise`` (a rejected step promising less than this
    fraction of Jᵢ ends the search: the ODE solver's relative tolerance), ``inner_iterations``:
    each patient's mode;
    ``covariance``: ``sandwich`` (R⁻¹SR⁻¹, NONMEM's default), ``r`` (2R⁻¹) or ``none``;
    ``max_step``: longest BFGS step in any unconstrained parameter (log units); ``ftol``: the
    search stops, not converged, when the OFV changed by less than this (relative) in each of
    three iterations;
    ``hessian_start``: BFGS's first inverse Hessian, ``differences`` (of the exact gradient at
    the start: p more evaluations; the default) or ``bhhh`` (from the patients' scores, right
    only near the optimum);
    ``draws``: parameter draws from the asymptotic normal of the estimate, for simulation;
    ``sir``: instead, ``sir_resamples`` draws by sampling importance resampling of
    ``sir_samples`` proposals from that normal (PsN's ``sir``; one OFV per proposal)."""

    max_iterations: int = 200
    gtol: float = 1e-3
    inner_tol: float = 1e-6
    inner_decrement: float = 1e-9
    search_inner_decrement: float = 1e-6
    inner_noise: float = 1e-6
    inner_iterations: int = 50
    covariance: str = "sandwich"
    fd_step: float = 1e-4
    max_step: float = 1.0
    ftol: float = 1e-10
    se_tol: float = 0.01
    hessian_start: str = "differences"
    draws: int = 200
    sir: bool = False
    sir_samples: int = 1000
    sir_resamples: int = 200


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
    focei: FoceiSettings = field(default_factory=FoceiSettings)
    path: Path | None = None
    sha256: str | None = None
    device: str = "auto"
    data_units: tuple[tuple[str, object], ...] | None = None
    data_sep: str | None = None
    data_ignore: str | None = None
    data_drop: tuple[str, ...] = ()
    data_keep: tuple[str, ...] | None = None

    @property
    def output_dir(self) -> Path:
        """``<recipe folder>/<name>/``: where ``write_fit`` puts the results."""
        base = self.path.parent if self.path is not None else Path.cwd()
        return base / self.name

    def declared_units(self) -> dict[str, object] | None:
        """The recipe's ``[data] units`` as a mapping (None: the sidecar's, else internal units)."""
        if self.data_units is None:
            return None
        return {name: dict(unit) if isinstance(unit, tuple) else unit for name, unit in self.data_units}

    def data_options(self) -> dict[str, object]:
        """The ``[data]`` reading options that differ from the defaults, as plain values (for the
        manifest, so that a fit's dataset is read again the same way)."""
        out: dict[str, object] = {}
        if self.data_units is not None:
            out["units"] = self.declared_units()
        if self.data_sep is not None:
            out["sep"] = self.data_sep
        if self.data_ignore is not None:
            out["ignore"] = self.data_ignore
        if self.data_drop:
            out["drop"] = list(self.data_drop)
        if self.data_keep is not None:
            out["keep"] = list(self.data_keep)
        return out

    def with_data_options(self, options) -> FitRecipe:
        """A copy with reading options replaced (keys as ``data_options``: units, sep, ignore,
        drop, keep), e.g. the command line's ``--sep``/``--drop`` or a fit manifest's."""
        import dataclasses

        changes = {}
        for key, value in (options or {}).items():
            if key == "units":
                changes["data_units"] = None if value is None else _frozen_units(dict(value))
            elif key in ("drop", "keep"):
                changes[f"data_{key}"] = None if value is None and key == "keep" else tuple(value or ())
            elif key in ("sep", "ignore"):
                changes[f"data_{key}"] = value
            else:
                raise ValueError(f"unknown data option {key!r}; expected units, sep, ignore, drop or keep")
        return dataclasses.replace(self, **changes)

    def read_data_report(self):
        """Read the recipe's dataset with its ``[data]`` options: ``itp_pd.data.nonmem.ReadReport``."""
        from ..data.nonmem import read_nonmem_report

        where = f"recipe {self.path} [data] units" if self.path is not None else "the recipe's [data] units"
        return read_nonmem_report(self.data_path, units=self.declared_units(), drop=self.data_drop,
                                  keep=self.data_keep, sep=self.data_sep, ignore=self.data_ignore, units_from=where)

    def read_data(self):
        """The recipe's dataset (``read_nonmem`` with the ``[data]`` options); implausible scales
        give a ``DataWarning``."""
        from ..data.plausibility import warn

        report = self.read_data_report()
        warn(report.warnings)
        return report.dataset


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_SECTIONS = {
    "fit": {"name", "method", "seed", "device"},
    "data": {"path", "sha256", "units", "sep", "ignore", "drop", "keep"},
    "model": {"spec", "values", "estimate", "random_effects", "correlated", "solver"},
    "nuts": set(NutsSettings.__dataclass_fields__),
    "svi": set(SviSettings.__dataclass_fields__),
    "map": set(MapSettings.__dataclass_fields__),
    "focei": set(FoceiSettings.__dataclass_fields__),
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


def _frozen_units(units):
    return tuple((name, tuple(unit.items()) if isinstance(unit, dict) else unit) for name, unit in units.items())


def _data_options(problems, table) -> dict:
    """The ``[data]`` reading options (units, sep, ignore, drop, keep) as FitRecipe fields."""
    from ..data.declared_units import unit_name_problems
    from ..data.delimited import SEP_CHOICES, check_ignore, delimiter_name
    from ..data.sidecar import units_table_problems

    out = {}
    if "units" in table:
        units = table["units"]
        if not isinstance(units, dict):
            problems.add("data.units", repr(units), "a table of column = unit, as in a units sidecar",
                         'write e.g. units = { TIME = "h", AMT = "mg", DV = { 1 = "ng/mL" } }')
        else:
            shape = units_table_problems(units, "")
            for message in shape:
                problems.add("data.units", message, "column = \"unit\" entries and a DV table keyed by DVID",
                             'write e.g. units = { TIME = "h", DV = { 1 = "ng/mL" } }')
            if not shape:
                for key, value, expected in unit_name_problems(units):
                    problems.add(f"data.units.{key}", repr(value), expected, "correct the unit")
                out["data_units"] = _frozen_units(units)
    if "sep" in table:
        try:
            delimiter_name(table["sep"])
            out["data_sep"] = table["sep"]
        except ValueError:
            problems.add("data.sep", repr(table["sep"]), SEP_CHOICES, 'write e.g. sep = "whitespace", or leave it '
                         "out to detect the delimiter from the header line")
    if "ignore" in table:
        try:
            check_ignore(table["ignore"])
            out["data_ignore"] = table["ignore"]
        except ValueError:
            problems.add("data.ignore", repr(table["ignore"]), "the characters starting comment lines: '#' "
                         "(NONMEM's default), '@' (IGNORE=@: lines starting with a letter or @) or e.g. 'C'; "
                         "not digits, signs, spaces, '.', ',' or ';'", 'write e.g. ignore = "@"')
    for key in ("drop", "keep"):
        if key in table:
            value = table[key]
            if isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value):
                out[f"data_{key}"] = tuple(value)
            else:
                problems.add(f"data.{key}", repr(value), "a list of column names", f'write e.g. {key} = ["SEX"]')
    return out


def check_against_spec(recipe: FitRecipe, spec) -> None:
    """Check that the recipe's parameter names exist in ``spec``; a wrong name is a problem of
    the recipe file (naming its field), and one in the values file a problem of that file.

    Raises:
        SpecError: listing every such problem.
    """
    from ..spec import read_values

    known = spec.parameter_names
    where = f"a parameter of the spec {spec.path or '<spec>'}"
    if recipe.values_path is not None:
        values = Problems(str(recipe.values_path))
        for table, names in zip(("typical", "omega"), read_values(recipe.values_path)):
            for name in names:
                if name not in known:
                    values.add(f"{table}.{name}", "a parameter the spec lacks", where + ": " + ", ".join(known),
                               "correct the name" + suggestion(name, known) + " or remove it")
                elif table == "omega" and spec.parameter(name).iiv is None:
                    values.add(f"omega.{name}", "an omega for a parameter without IIV", "a parameter with an iiv "
                               f"in {spec.path or '<spec>'}", "remove it, or give the parameter an iiv in the spec")
        values.raise_if_any()
    problems = Problems(str(recipe.path) if recipe.path is not None else "<recipe>")
    with_iiv = [p.name for p in spec.parameters if p.iiv is not None]
    for name in recipe.estimate or ():
        if name not in known:
            problems.add("model.estimate", repr(name), where + ": " + ", ".join(known),
                         "correct the name" + suggestion(name, known) + ", or add the parameter to the spec")
        elif spec.parameter(name).prior is None:
            problems.add("model.estimate", repr(name), f"a parameter with a prior in {spec.path or '<spec>'}",
                         f"give parameters.{name} a prior in the spec, or remove {name!r} from model.estimate")
    for name in recipe.random_effects or ():
        if name not in known:
            problems.add("model.random_effects", repr(name), where + ": " + ", ".join(known),
                         "correct the name" + suggestion(name, known))
        elif name not in with_iiv:
            problems.add("model.random_effects", repr(name), "a parameter with an iiv in the spec "
                         f"({', '.join(with_iiv) or 'none has one'})",
                         f"give parameters.{name} an iiv in the spec, or remove {name!r} from model.random_effects")
    etas = with_iiv if recipe.random_effects is None else list(recipe.random_effects)
    stray = [name for name in recipe.correlated if name not in etas]
    if stray or len(recipe.correlated) == 1:
        problems.add("model.correlated", repr(list(recipe.correlated)),
                     f"two or more of the random effects ({', '.join(etas) or 'none'})",
                     "list the parameters whose etas share a block, or remove model.correlated")
    problems.raise_if_any()


def check_data_against_spec(recipe: FitRecipe, spec, dataset) -> None:
    """Check that the dataset holds what the spec needs (a residual error for every measured
    DVID, the covariates of its effects, constant within each patient); each problem names
    the data file and the spec file.

    Raises:
        SpecError: listing every such problem (the file is the dataset's).
    """
    data, spec_file = str(recipe.data_path), str(spec.path or "<spec>")
    problems = Problems(data)
    declared = {o.dvid: o.name for o in spec.observations}
    measured = sorted({int(d) for d in dataset.observations()["DVID"].unique()})
    for dvid in measured:
        if dvid not in declared:
            problems.add("column DVID", f"measurements of DVID {dvid}",
                         f"a DVID the spec {spec_file} declares an observation for "
                         f"({', '.join(f'{d} {n}' for d, n in sorted(declared.items())) or 'none'})",
                         f"add an [observations.<name>] with dvid = {dvid} to the spec, or remove those rows "
                         "(or correct DVID)")
    constant = set(dataset.patient_covariates().columns) - {"ID"}
    for parameter in spec.parameters:
        for effect in parameter.covariates:
            name = effect.covariate
            if name not in dataset.covariates:
                problems.add(f"column {name}", "nothing (no such column)",
                             f"covariate {name}, which the spec {spec_file} uses for {parameter.name}",
                             f"add column {name} to the data (constant within each patient), or remove the "
                             "effect from the spec")
            elif name not in constant:
                problems.add(f"column {name}", "values that change within a patient",
                             f"one value per patient (the spec {spec_file} uses {name} for {parameter.name})",
                             f"make {name} constant within each patient")
    problems.raise_if_any()


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
    data_options = _data_options(problems, dataset)
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
    if "oral_doses" in solver and solver["oral_doses"] not in ORAL_DOSES:
        problems.add("model.solver.oral_doses", repr(solver["oral_doses"]), " or ".join(map(repr, ORAL_DOSES)),
                     "exact: every dose (the reference); averaged: each regular run of oral doses as its mean rate")

    nuts = _settings(problems, NutsSettings, data.get("nuts", {}), "nuts")
    svi = _settings(problems, SviSettings, data.get("svi", {}), "svi")
    map_settings = _settings(problems, MapSettings, data.get("map", {}), "map")
    focei = _settings(problems, FoceiSettings, data.get("focei", {}), "focei")
    if focei.covariance not in COVARIANCE_KINDS:
        problems.add("focei.covariance", repr(focei.covariance), " or ".join(COVARIANCE_KINDS), "choose one")
    if focei.hessian_start not in HESSIAN_STARTS:
        problems.add("focei.hessian_start", repr(focei.hessian_start), " or ".join(HESSIAN_STARTS), "choose one")
    if focei.sir and focei.sir_resamples > focei.sir_samples:  # resampled without replacement
        problems.add("focei.sir_resamples", repr(focei.sir_resamples), f"at most sir_samples ({focei.sir_samples})",
                     "lower sir_resamples or raise sir_samples (PsN: 1000 resamples of 10,000 or more proposals)")
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
        solver=tuple(sorted(solver.items())), nuts=nuts, svi=svi, map=map_settings, focei=focei,
        path=path, sha256=hashlib.sha256(raw).hexdigest(), device=device, **data_options,
    )
