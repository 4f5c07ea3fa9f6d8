"""Read a model spec (TOML), check all of it, and build a ModelSpec; see ``itp_pd.spec``."""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
from collections.abc import Collection, Mapping
from pathlib import Path

from ._problems import Problems, SpecProblem, found, key_path, show, spec_error, suggestion
from .model import (
    COVARIATE_FORMS,
    ERROR_MODELS,
    IIV,
    IIV_SCALES,
    CovariateEffect,
    ModelSpec,
    Observation,
    Parameter,
)
from .priors import DISTRIBUTIONS, Prior, check_prior_values, is_number

_MISSING = "nothing"
_SIGMA_MEANING = {
    "sigma_add": "the additive residual sd, in the observation's unit",
    "sigma_prop": "the proportional residual sd, a fraction of the prediction (0.15 = 15%)",
    "sigma_log": "the residual sd of log(DV)",
}


def load_spec(path: str | Path, *, structural_keys: Collection[str] | None = None) -> ModelSpec:
    """Read, check and return the model spec in ``path``.

    Args:
        path: a TOML file in the format described in ``itp_pd.spec``.
        structural_keys: if given, ``model.structural`` must be one of them.

    Returns:
        The ``ModelSpec``, with ``path`` and the ``sha256`` of the file's bytes.

    Raises:
        SpecError: listing every problem found (``.problems`` holds them as ``SpecProblem``s).
    """
    path = Path(path)
    file = str(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        reason = "no such file" if isinstance(error, FileNotFoundError) else f"a file that cannot be read ({error})"
        raise spec_error(
            [SpecProblem(file, "(file)", reason, "a readable TOML model spec",
                         "check the path (specs live in models/)")],
            file,
        ) from None
    digest = hashlib.sha256(raw).hexdigest()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise spec_error(
            [SpecProblem(file, "(file)", f"a byte that is not UTF-8 at offset {error.start}", "UTF-8 text",
                         "save the file as UTF-8")],
            file,
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        where = re.search(r"at line (\d+), column (\d+)", str(error))
        field = f"line {where[1]}, column {where[2]}" if where else "(syntax)"
        fix = f"correct the TOML syntax on line {where[1]}" if where else "correct the TOML syntax"
        raise spec_error(
            [SpecProblem(file, field, f"invalid TOML ({error})", "valid TOML (https://toml.io)", fix)], file
        ) from None
    problems = Problems(file)
    spec = _parse_spec(data, problems, structural_keys)
    problems.raise_if_any()
    assert spec is not None
    return ModelSpec(**{**spec, "path": path, "sha256": digest})


# --- generic checks ---------------------------------------------------------------------


def read_values(path: str | Path) -> tuple[dict[str, float], dict[str, float]]:
    """``(typical, omega)`` from a values file: ``[typical]`` and ``[omega]`` tables of numbers
    (a calibration's output, e.g. ``fits/itp_v1_calibration.toml``), for ``ModelSpec.with_values``.

    Raises:
        SpecError: the file is missing, not TOML, or holds anything but those two tables of numbers.
    """
    path = Path(path)
    problems = Problems(str(path))
    if not path.is_file():
        problems.add("<file>", "nothing", "a TOML file with [typical] and [omega] tables", "check the path")
        problems.raise_if_any()
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        problems.add("<file>", f"invalid TOML ({error})", "a TOML file", "fix the syntax")
        problems.raise_if_any()
    tables = {}
    for key, table in data.items():
        if key not in ("typical", "omega"):
            problems.add(key, "an unknown table", "[typical] or [omega]", "remove it" + suggestion(key, ("typical", "omega")))
        elif not isinstance(table, dict) or not all(is_number(v) for v in table.values()):
            problems.add(key, found(table), "a table of parameter = number", "write e.g. FL = 0.1")
        else:
            tables[key] = {name: float(value) for name, value in table.items()}
    problems.raise_if_any()
    return tables.get("typical", {}), tables.get("omega", {})


def _table(value: object, field: str, problems: Problems, what: str) -> dict | None:
    if isinstance(value, dict):
        return value
    key = field.rsplit(".", 1)[-1]
    problems.add(field, found(value), f"a table ({what})", f"write `{key} = {{ ... }}` or a [{field}] section")
    return None


def _check_keys(
    table: Mapping, field: str, problems: Problems, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> None:
    allowed = required + optional
    for key in table:
        if key not in allowed:
            problems.add(
                key_path(field, key),
                f"unknown key {key!r}",
                "one of " + ", ".join(allowed),
                "rename or remove it" + suggestion(key, allowed),
            )
    for key in required:
        if key not in table:
            problems.add(f"{field}.{key}", _MISSING, f"`{key}` (required)", f"add `{key} = ...` to [{field}]")


def _number(table: Mapping, key: str, field: str, problems: Problems, expected: str, fix: str) -> float | None:
    """The number at ``table[key]``, or ``None`` (with a problem) when it is absent or not a number."""
    if key not in table:
        return None
    value = table[key]
    if is_number(value) and math.isfinite(value):
        return float(value)
    extra = "; remove the quotes" if isinstance(value, str) else ""
    problems.add(f"{field}.{key}", found(value), expected, fix + extra)
    return None


def _text(table: Mapping, key: str, field: str, problems: Problems, fix: str) -> str | None:
    if key not in table:
        return None
    value = table[key]
    if isinstance(value, str) and value.strip():
        return value
    problems.add(f"{field}.{key}", found(value) if value != "" else "an empty string", "non-empty text", fix)
    return None


def _flag(table: Mapping, key: str, field: str, problems: Problems) -> bool | None:
    value = table.get(key, False)
    if isinstance(value, bool):
        return value
    problems.add(f"{field}.{key}", found(value), "true or false",
                 f"write `{key} = true` or `{key} = false` (no quotes)")
    return None


def _choice(table: Mapping, key: str, field: str, problems: Problems, choices, default=None) -> str | None:
    value = table.get(key, default)
    if value in choices:
        return value
    if key not in table:
        return None
    problems.add(
        f"{field}.{key}",
        found(value),
        "one of " + ", ".join(repr(c) for c in choices),
        "use one of the listed names" + suggestion(str(value), choices),
    )
    return None


def _name(name: str, field: str, problems: Problems, what: str) -> None:
    if not name.isidentifier():
        problems.add(
            field,
            f"the name {name!r}",
            f"a {what} name made of letters, digits and underscores, not starting with a digit",
            "rename it (it becomes part of sample-site names such as pop_CL)",
        )


def _interior(x: float, support: tuple[float, float]) -> bool:
    return support[0] < x < support[1]


def _check_value_in_prior(value, prior, value_field, prior_field, problems) -> None:
    if value is None or prior is None:
        return
    low, high = prior.support()
    if not _interior(value, (low, high)):
        problems.add(
            value_field,
            show(value),
            f"a value inside the support ({show(low)}, {show(high)}) of its {prior.dist} prior at {prior_field}",
            "change the value or the prior so that the value is plausible under the prior",
        )


def _check_prior_nonnegative(prior, field, problems, what) -> None:
    if prior is not None and prior.support()[0] < 0:
        problems.add(
            field,
            f"a {prior.dist} prior with support from {show(prior.support()[0])}",
            f"a prior on values >= 0 ({what} cannot be negative)",
            "use halfnormal, lognormal, or a truncatednormal with low = 0",
        )


# --- priors -----------------------------------------------------------------------------


def _parse_prior(value: object, field: str, problems: Problems) -> Prior | None:
    table = _table(value, field, problems, "a prior such as { dist = \"lognormal\", median = 1.0, sd_log = 0.3 }")
    if table is None:
        return None
    if "dist" not in table:
        problems.add(f"{field}.dist", _MISSING, "one of " + ", ".join(DISTRIBUTIONS),
                     "add `dist = \"lognormal\"` (or another listed distribution)")
        return None
    dist = table["dist"]
    if not isinstance(dist, str) or dist not in DISTRIBUTIONS:
        problems.add(f"{field}.dist", found(dist), "one of " + ", ".join(DISTRIBUTIONS),
                     "use one of the listed distributions" + suggestion(str(dist), DISTRIBUTIONS))
        return None
    names = tuple(name for name, _ in DISTRIBUTIONS[dist])
    params = {k: v for k, v in table.items() if k != "dist"}
    before = len(problems.items)
    for key in params:
        if key not in names:
            problems.add(
                f"{field}.{key}",
                f"unknown key {key!r}",
                f"the {dist} parameters " + ", ".join(names),
                "rename or remove it" + suggestion(key, names),
            )
    check_prior_values(dist, params, field, problems)
    if len(problems.items) > before:
        return None
    return Prior(dist, tuple((n, float(params[n])) for n in names))


# --- parameters -------------------------------------------------------------------------


def _parse_iiv(value: object, field: str, problems: Problems) -> IIV | None:
    table = _table(value, field, problems, "{ sd = 0.3, scale = \"log\", prior = {...} }")
    if table is None:
        return None
    _check_keys(table, field, problems, ("sd",), ("scale", "prior"))
    sd = _number(table, "sd", field, problems, "a finite number > 0 (the sd of eta)",
                 "give the sd, e.g. 0.3 for ~30% CV")
    if sd is not None and not sd > 0:
        problems.add(f"{field}.sd", show(sd), "a number > 0 (the sd of eta)",
                     "give a positive sd, or remove the iiv table for no variability")
        sd = None
    scale = _choice(table, "scale", field, problems, IIV_SCALES, default="log")
    prior = _parse_prior(table["prior"], f"{field}.prior", problems) if "prior" in table else None
    _check_prior_nonnegative(prior, f"{field}.prior", problems, "an sd")
    _check_value_in_prior(sd, prior, f"{field}.sd", f"{field}.prior", problems)
    if sd is None or scale is None or ("prior" in table and prior is None):
        return None
    return IIV(sd=sd, scale=scale, prior=prior)


_CONTINUOUS_KEYS = (("covariate", "form", "reference", "exponent"), ("estimate_exponent", "prior"))
_CATEGORICAL_KEYS = (("covariate", "form", "reference", "effects"), ())


def _parse_covariate(value: object, field: str, problems: Problems) -> CovariateEffect | None:
    table = _table(value, field, problems, "{ covariate = \"BSA\", form = \"power\", reference = 1.8, exponent = 1.0 }")
    if table is None:
        return None
    before = len(problems.items)
    form = _choice(table, "form", field, problems, COVARIATE_FORMS)
    if form is None and "form" not in table:
        problems.add(f"{field}.form", _MISSING, "one of " + ", ".join(map(repr, COVARIATE_FORMS)),
                     "add `form = \"power\"` (or another listed form)")
    if form == "categorical":
        _check_keys(table, field, problems, *_CATEGORICAL_KEYS)
    elif form is not None:
        _check_keys(table, field, problems, *_CONTINUOUS_KEYS)
    else:
        union = tuple(dict.fromkeys(_CONTINUOUS_KEYS[0] + _CONTINUOUS_KEYS[1] + _CATEGORICAL_KEYS[0]))
        _check_keys(table, field, problems, (), union)
    covariate = _text(table, "covariate", field, problems, "name the dataset column, e.g. `covariate = \"BSA\"`")
    if covariate is not None:
        _name(covariate, f"{field}.covariate", problems, "covariate")

    if form == "categorical":
        reference = _number(table, "reference", field, problems, "the reference level, a number",
                            "give the level whose effect is 0, e.g. `reference = 0`")
        effects = None
        if "effects" in table:
            effects = _parse_effects(table["effects"], f"{field}.effects", reference, problems)
        if len(problems.items) > before or effects is None or reference is None:
            return None
        return CovariateEffect(covariate=covariate, form=form, reference=reference, effects=effects)

    reference = _number(table, "reference", field, problems, "a finite number (the reference covariate value)",
                        "give the covariate value at which the effect is 1, e.g. the population median")
    if form == "power" and reference is not None and not reference > 0:
        problems.add(f"{field}.reference", show(reference), "a number > 0 for a power effect (cov/reference)",
                     "give a positive reference, e.g. the population median")
    exponent = _number(table, "exponent", field, problems, "a finite number",
                       "give the exponent (the start value when estimate_exponent = true)")
    estimate = _flag(table, "estimate_exponent", field, problems)
    prior = _parse_prior(table["prior"], f"{field}.prior", problems) if "prior" in table else None
    if estimate and "prior" not in table:
        problems.add(f"{field}.prior", _MISSING, "a prior for the exponent, because estimate_exponent = true",
                     "add `prior = { dist = \"normal\", mean = 1.0, sd = 0.5 }` or set estimate_exponent = false")
    _check_value_in_prior(exponent, prior, f"{field}.exponent", f"{field}.prior", problems)
    if len(problems.items) > before:
        return None
    return CovariateEffect(covariate=covariate, form=form, reference=reference, exponent=exponent,
                           estimate_exponent=estimate, exponent_prior=prior)


def _parse_effects(value, field, reference, problems) -> tuple[tuple[float, float], ...] | None:
    table = _table(value, field, problems, "{ \"1\" = 0.2 }: level = log effect")
    if table is None:
        return None
    if not table:
        problems.add(field, "an empty table", "at least one level = log-effect pair",
                     "add e.g. `effects = { \"1\" = 0.2 }`, or remove the covariate")
        return None
    effects: dict[float, float] = {}
    ok = True
    for key, effect in table.items():
        try:
            level = float(key)
            if not math.isfinite(level):
                raise ValueError
        except ValueError:
            problems.add(f'{field}."{key}"', f"the level {key!r}", "a level that is a number (as coded in the dataset)",
                         "use the numeric code of the category, e.g. \"1\"")
            ok = False
            continue
        if not (is_number(effect) and math.isfinite(effect)):
            problems.add(f'{field}."{key}"', found(effect), "a finite number (the log of the multiplicative effect)",
                         "give log(ratio to the reference level), e.g. 0.2")
            ok = False
            continue
        if level in effects:
            problems.add(f'{field}."{key}"', f"level {show(level)} a second time", "each level once",
                         "remove the duplicate")
            ok = False
            continue
        if reference is not None and level == reference:
            problems.add(f'{field}."{key}"', f"an effect for the reference level {show(reference)}",
                         "effects for the other levels only (the reference level's effect is 0)",
                         "remove it from effects, or change `reference`")
            ok = False
            continue
        effects[level] = float(effect)
    return tuple(sorted(effects.items())) if ok else None


def _parse_bounds(value: object, field: str, problems: Problems) -> tuple[float, float] | None:
    if (
        isinstance(value, list)
        and len(value) == 2
        and all(is_number(v) and not math.isnan(v) for v in value)
    ):
        low, high = float(value[0]), float(value[1])
        if low < high:
            return (low, high)
        problems.add(field, f"[{show(low)}, {show(high)}]", "[low, high] with low < high",
                     "swap the limits or widen the interval")
        return None
    problems.add(field, found(value), "[low, high], two numbers (inf and -inf allowed)",
                 "write e.g. `bounds = [0.0, inf]`")
    return None


def _parse_parameter(name: str, value: object, problems: Problems) -> Parameter | None:
    field = key_path("parameters", name)
    _name(name, field, problems, "parameter")
    table = _table(value, field, problems, "a parameter")
    if table is None:
        return None
    before = len(problems.items)
    _check_keys(table, field, problems, ("value", "unit", "description", "source"),
                ("estimate", "prior", "iiv", "covariates", "bounds"))
    typical = _number(table, "value", field, problems, "a finite number (the typical value, in `unit`)",
                      "write the typical value as a number, e.g. `value = 0.3`")
    unit = _text(table, "unit", field, problems, "give the unit of `value`, e.g. \"L/day\" (\"1\" if dimensionless)")
    description = _text(table, "description", field, problems, "say what the parameter is")
    source = _text(table, "source", field, problems,
                   "cite where the value comes from, with its tag, e.g. \"Candelaria 2018 [lit]\"")
    estimate = _flag(table, "estimate", field, problems)
    prior = _parse_prior(table["prior"], f"{field}.prior", problems) if "prior" in table else None
    iiv = _parse_iiv(table["iiv"], f"{field}.iiv", problems) if "iiv" in table else None
    covariates = _parse_covariates(table.get("covariates", []), f"{field}.covariates", problems)
    explicit_bounds = _parse_bounds(table["bounds"], f"{field}.bounds", problems) if "bounds" in table else None

    if estimate and "prior" not in table:
        problems.add(f"{field}.prior", _MISSING, "a prior, because estimate = true",
                     f"add e.g. `prior = {{ dist = \"lognormal\", median = {show(typical) if typical else '...'}, "
                     "sd_log = 0.5 }`, or set estimate = false to fix the parameter at its value")

    # Read the scale even when the iiv table has other problems, so bounds are judged on it.
    raw_iiv = table.get("iiv")
    scale = raw_iiv.get("scale", "log") if isinstance(raw_iiv, dict) else "log"
    bounds = explicit_bounds or ((0.0, 1.0) if scale == "logit" else (0.0, math.inf))
    if explicit_bounds is not None and scale in IIV_SCALES and "iiv" in table:
        need = (0.0, 1.0) if scale == "logit" else (0.0, math.inf)
        if explicit_bounds[0] < need[0] or explicit_bounds[1] > need[1]:
            problems.add(f"{field}.bounds", f"[{show(explicit_bounds[0])}, {show(explicit_bounds[1])}]",
                         f"bounds within [{show(need[0])}, {show(need[1])}] for {scale}-scale IIV",
                         "narrow the bounds, or use the other IIV scale")
    value_ok = typical is not None
    if value_ok and not bounds[0] <= typical <= bounds[1]:
        origin = "its bounds" if explicit_bounds else "the default bounds"
        problems.add(f"{field}.value", show(typical),
                     f"a value within {origin} [{show(bounds[0])}, {show(bounds[1])}]",
                     "correct the value, or give `bounds = [low, high]` that contain it")
        value_ok = False
    elif value_ok and "iiv" in table and scale == "log" and not typical > 0:
        problems.add(f"{field}.value", show(typical), "a value > 0, because log-scale IIV multiplies it by exp(eta)",
                     "give a positive value, or remove the iiv table")
        value_ok = False
    elif value_ok and "iiv" in table and scale == "logit" and not 0 < typical < 1:
        problems.add(f"{field}.value", show(typical),
                     "a value strictly between 0 and 1, because logit-scale IIV needs logit(value)",
                     "give a fraction in (0, 1), or use `scale = \"log\"` for a quantity that is not a fraction")
        value_ok = False
    if prior is not None:
        low, high = prior.support()
        if low < bounds[0] or high > bounds[1]:
            origin = "the parameter's bounds" if explicit_bounds else "the parameter's default bounds"
            problems.add(f"{field}.prior",
                         f"a {prior.dist} prior with support [{show(low)}, {show(high)}]",
                         f"a prior whose support lies within {origin} [{show(bounds[0])}, {show(bounds[1])}]",
                         "use a prior on that interval (lognormal for positive values, logitnormal or beta for "
                         "fractions, truncatednormal otherwise), or widen `bounds`")
        elif value_ok:
            _check_value_in_prior(typical, prior, f"{field}.value", f"{field}.prior", problems)
    if len(problems.items) > before:
        return None
    return Parameter(name=name, value=typical, unit=unit, description=description, source=source,
                     estimate=estimate, prior=prior, iiv=iiv, covariates=covariates, bounds=bounds)


def _parse_covariates(value: object, field: str, problems: Problems) -> tuple[CovariateEffect, ...]:
    if not isinstance(value, list):
        problems.add(field, found(value), "an array of tables, one per covariate effect",
                     "write `covariates = [ { covariate = \"BSA\", form = \"power\", reference = 1.8, "
                     "exponent = 1.0 } ]`")
        return ()
    effects = []
    seen: dict[str, int] = {}
    for i, item in enumerate(value):
        effect = _parse_covariate(item, f"{field}[{i}]", problems)
        if effect is None:
            continue
        if effect.covariate in seen:
            first = f"{field}[{seen[effect.covariate]}]"
            problems.add(f"{field}[{i}].covariate", f"{effect.covariate!r}, already used by {first}",
                         "each covariate once per parameter", "merge the two effects into one")
            continue
        seen[effect.covariate] = i
        effects.append(effect)
    return tuple(effects)


# --- observations -----------------------------------------------------------------------


def _parse_sigma(value: object, field: str, key: str, problems: Problems):
    table = _table(value, field, problems, "{ value = 0.1, prior = {...} }")
    if table is None:
        return None
    before = len(problems.items)
    _check_keys(table, field, problems, ("value",), ("prior",))
    sigma = _number(table, "value", field, problems, f"a finite number > 0 ({_SIGMA_MEANING[key]})",
                    "give the residual sd as a number")
    if sigma is not None and not sigma > 0:
        problems.add(f"{field}.value", show(sigma), f"a number > 0 ({_SIGMA_MEANING[key]})", "give a positive sd")
        sigma = None
    prior = _parse_prior(table["prior"], f"{field}.prior", problems) if "prior" in table else None
    _check_prior_nonnegative(prior, f"{field}.prior", problems, "a residual sd")
    _check_value_in_prior(sigma, prior, f"{field}.value", f"{field}.prior", problems)
    if len(problems.items) > before:
        return None
    return (key, sigma, prior)


def _parse_observation(name: str, value: object, problems: Problems) -> Observation | None:
    field = key_path("observations", name)
    _name(name, field, problems, "observation")
    table = _table(value, field, problems, "an observed output")
    if table is None:
        return None
    before = len(problems.items)
    sigma_keys = tuple(_SIGMA_MEANING)
    _check_keys(table, field, problems, ("dvid", "unit", "error"), ("description",) + sigma_keys)
    dvid = table.get("dvid")
    if "dvid" in table and not (isinstance(dvid, int) and not isinstance(dvid, bool) and dvid > 0):
        problems.add(f"{field}.dvid", found(dvid), "a positive integer (the DVID of these records in the dataset)",
                     "write e.g. `dvid = 1`")
    _text(table, "unit", field, problems, "give the unit of DV, e.g. \"mg/L\"")
    if "description" in table:
        _text(table, "description", field, problems, "describe the output, or remove the key")
    error = _choice(table, "error", field, problems, tuple(ERROR_MODELS))
    sigmas = []
    if error is not None:
        needed = ERROR_MODELS[error]
        given = tuple(k for k in sigma_keys if k in table)
        for key in needed:
            if key not in table:
                problems.add(f"{field}.{key}", _MISSING,
                             f"`{key}` ({_SIGMA_MEANING[key]}), because error = {error!r}",
                             f"add `{key} = {{ value = 0.1, prior = {{ dist = \"halfnormal\", scale = 0.5 }} }}`")
        for key in given:
            if key not in needed:
                fitting = [e for e, keys in ERROR_MODELS.items() if set(keys) == set(given)]
                alternative = f", or set error = {fitting[0]!r}" if fitting else ""
                problems.add(f"{field}.{key}", f"`{key}`, which error = {error!r} does not use",
                             f"only {', '.join(needed)} for error = {error!r}", f"remove it{alternative}")
        for key in needed:
            if key in table:
                sigmas.append(_parse_sigma(table[key], f"{field}.{key}", key, problems))
    if len(problems.items) > before:
        return None
    return Observation(name=name, dvid=dvid, unit=table["unit"], error=error, sigmas=tuple(sigmas),
                       description=table.get("description", ""))


# --- the whole file ---------------------------------------------------------------------


def _parse_spec(data: dict, problems: Problems, structural_keys) -> dict | None:
    sections = {
        "model": "a [model] section with name, version and structural",
        "parameters": "a [parameters.NAME] section per parameter",
        "observations": "an [observations.NAME] section per observed output",
    }
    for key in data:
        if key not in sections:
            problems.add(key, f"unknown section or key {key!r}", "only " + ", ".join(f"[{s}]" for s in sections),
                         "rename or remove it" + suggestion(key, sections))
    for key, what in sections.items():
        if key not in data:
            problems.add(key, _MISSING, what, f"add {what}")
    header = {}
    model = _table(data["model"], "model", problems, "name, version, structural") if "model" in data else None
    if model is not None:
        _check_keys(model, "model", problems, ("name", "version", "structural"), ("description",))
        header["name"] = _text(model, "name", "model", problems, "name the model, e.g. \"pk_2cmt_iv\"")
        version = model.get("version")
        if "version" in model and not (isinstance(version, str) and version.strip()):
            fix = f"quote it: `version = \"{version}\"`" if is_number(version) else "write e.g. `version = \"1.0\"`"
            problems.add("model.version", found(version), "a text version such as \"1.0\"", fix)
        header["version"] = version
        structural = _text(model, "structural", "model", problems,
                           "name the structural model, e.g. \"two_compartment_iv\"")
        if structural is not None and structural_keys is not None and structural not in structural_keys:
            known = ", ".join(map(repr, sorted(structural_keys)))
            problems.add("model.structural", show(structural), "one of " + known,
                         "use a structural model the package provides" + suggestion(structural, structural_keys))
        header["structural"] = structural
        header["description"] = model.get("description", "")
        if "description" in model and not isinstance(model["description"], str):
            problems.add("model.description", found(model["description"]), "text", "quote the description")

    parameters = []
    if "parameters" in data:
        table = _table(data["parameters"], "parameters", problems, "one [parameters.NAME] table per parameter")
        if table is not None and not table:
            problems.add("parameters", "no parameters", "at least one [parameters.NAME] table", "add the parameters")
        for name, value in (table or {}).items():
            parameters.append(_parse_parameter(name, value, problems))

    observations = []
    if "observations" in data:
        table = _table(data["observations"], "observations", problems, "one [observations.NAME] table per output")
        if table is not None and not table:
            problems.add("observations", "no observations", "at least one [observations.NAME] table",
                         "add one per observed output")
        for name, value in (table or {}).items():
            observations.append(_parse_observation(name, value, problems))
        by_dvid: dict[int, str] = {}
        for name, value in (table or {}).items():
            dvid = value.get("dvid") if isinstance(value, dict) else None
            if not (isinstance(dvid, int) and not isinstance(dvid, bool)):
                continue
            if dvid in by_dvid:
                problems.add(f"observations.{name}.dvid", f"DVID {dvid}, also used by observations.{by_dvid[dvid]}",
                             "a DVID unique to each observed output", "give each observation its own DVID")
            else:
                by_dvid[dvid] = name
    if problems:
        return None
    return {**header, "parameters": tuple(parameters), "observations": tuple(observations)}
