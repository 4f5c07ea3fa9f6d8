"""The objects a model spec is read into: frozen, hashable, static configuration."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from ._problems import Problems, show, suggestion
from .priors import Prior

IIV_SCALES = ("log", "logit")
COVARIATE_FORMS = ("power", "exponential", "categorical")
# Which sigma fields each residual error model uses, in canonical order.
ERROR_MODELS: dict[str, tuple[str, ...]] = {
    "additive": ("sigma_add",),
    "proportional": ("sigma_prop",),
    "combined": ("sigma_add", "sigma_prop"),
    "lognormal": ("sigma_log",),
}


@dataclass(frozen=True)
class IIV:
    """Inter-individual variability of one parameter.

    Attributes:
        sd: standard deviation of eta (ω) on ``scale``; for ``scale = "log"`` roughly the CV.
        scale: ``"log"`` (eta multiplies the value by ``exp(eta)``) or ``"logit"`` (eta shifts
            ``logit(value)``; for fractions in (0, 1)).
        prior: prior of ω when it is estimated; ``None`` means ω is fixed at ``sd``.
    """

    sd: float
    scale: str = "log"
    prior: Prior | None = None


@dataclass(frozen=True)
class CovariateEffect:
    """A covariate effect on a parameter's typical value.

    ``power``: θ·(cov/reference)^exponent; ``exponential``: θ·exp(exponent·(cov − reference));
    ``categorical``: θ·exp(effects[level]), 0 for the ``reference`` level and any level not listed.

    Attributes:
        covariate: covariate (dataset column) name, e.g. ``"BSA"``.
        form: ``"power"``, ``"exponential"`` or ``"categorical"``.
        reference: reference covariate value (its unit), or the reference level (categorical).
        exponent: exponent (power, exponential); ``None`` for categorical.
        estimate_exponent: whether the exponent is sampled (then ``exponent`` is its typical value).
        exponent_prior: prior of the exponent; required when ``estimate_exponent``.
        effects: ``((level, log_effect), ...)`` for categorical, sorted by level; ``()`` otherwise.
    """

    covariate: str
    form: str
    reference: float
    exponent: float | None = None
    estimate_exponent: bool = False
    exponent_prior: Prior | None = None
    effects: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class Parameter:
    """One model parameter: its typical value with unit, source, prior, IIV and covariates.

    Attributes:
        name: the name the structural model uses (``CL``, ``V1``, ...).
        value: typical value in ``unit``; the fixed value, or the start when estimated.
        unit: unit of ``value`` (``"1"`` for dimensionless).
        description: what the parameter means.
        source: where the value comes from (reference and its firmness tag).
        estimate: ``True`` to sample the population value from ``prior``; ``False`` to fix it.
        prior: prior of the population value (kept on fixed parameters so that a fit recipe can
            free them).
        iiv: inter-individual variability, or ``None``.
        covariates: covariate effects, applied in order before IIV.
        bounds: closed interval ``(low, high)`` the value and the prior's support lie in.
    """

    name: str
    value: float
    unit: str
    description: str
    source: str
    estimate: bool = False
    prior: Prior | None = None
    iiv: IIV | None = None
    covariates: tuple[CovariateEffect, ...] = ()
    bounds: tuple[float, float] = (0.0, float("inf"))


@dataclass(frozen=True)
class Observation:
    """One observed output and its residual error model.

    Attributes:
        name: output name (``CP``, ``PLT``); the sigma sample sites are named after it.
        dvid: the DVID identifying its records in the dataset.
        unit: unit of DV.
        error: ``"additive"``, ``"proportional"``, ``"combined"`` or ``"lognormal"``.
        sigmas: ``((field, value, prior or None), ...)`` for the fields ``ERROR_MODELS[error]``
            lists, in that order; ``prior=None`` means fixed at ``value``.
        description: free text.
    """

    name: str
    dvid: int
    unit: str
    error: str
    sigmas: tuple[tuple[str, float, Prior | None], ...]
    description: str = ""

    def sigma(self, field: str) -> float:
        """The value of ``sigma_add``, ``sigma_prop`` or ``sigma_log``."""
        for name, value, _ in self.sigmas:
            if name == field:
                return value
        raise KeyError(f"observation {self.name} (error {self.error!r}) has no {field}")


@dataclass(frozen=True)
class ModelSpec:
    """A model version read from a spec file.

    Attributes:
        name, version: model name and version string.
        structural: key of the structural model this spec parametrises.
        description: free text.
        parameters: in file order.
        observations: in file order.
        path: the file read; copies made by ``with_fixed``/``with_estimated`` keep it.
        sha256: hex digest of the file's bytes, for fit manifests (the copies keep it too: a fit
            recipe that toggles parameters is recorded with the recipe).
    """

    name: str
    version: str
    structural: str
    description: str
    parameters: tuple[Parameter, ...]
    observations: tuple[Observation, ...]
    path: Path | None = None
    sha256: str | None = None

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    def parameter(self, name: str) -> Parameter:
        """The parameter called ``name``; ``SpecError`` (with a suggestion) if there is none."""
        for p in self.parameters:
            if p.name == name:
                return p
        problems = Problems(str(self.path) if self.path else "<spec>")
        problems.add(
            f"parameters.{name}",
            "no such parameter",
            "one of " + ", ".join(self.parameter_names),
            "use a parameter the spec defines" + suggestion(name, self.parameter_names),
        )
        problems.raise_if_any()
        raise AssertionError  # unreachable

    def observation(self, dvid: int) -> Observation:
        """The observation with this DVID (``KeyError`` if none)."""
        for o in self.observations:
            if o.dvid == dvid:
                return o
        raise KeyError(f"no observation with DVID {dvid}; the spec has {[o.dvid for o in self.observations]}")

    def estimated(self) -> tuple[Parameter, ...]:
        """Parameters whose population value is sampled, in file order."""
        return tuple(p for p in self.parameters if p.estimate)

    def fixed(self) -> tuple[Parameter, ...]:
        """Parameters fixed at ``value``, in file order."""
        return tuple(p for p in self.parameters if not p.estimate)

    def typical_values(self) -> dict[str, float]:
        """``{name: value}`` for every parameter, in its spec unit."""
        return {p.name: p.value for p in self.parameters}

    def with_fixed(self, names: str | Iterable[str]) -> ModelSpec:
        """A copy in which ``names`` are fixed at their ``value`` (their priors are kept)."""
        return self._toggle(names, estimate=False)

    def with_estimated(self, names: str | Iterable[str]) -> ModelSpec:
        """A copy in which ``names`` are estimated; each must have a prior in the spec."""
        return self._toggle(names, estimate=True)

    def with_values(self, typical: Mapping[str, float] | None = None,
                    omega: Mapping[str, float] | None = None) -> ModelSpec:
        """A copy with new typical values and IIV sds (e.g. a calibration's), priors unchanged.

        Raises:
            SpecError: a name the spec does not define, or an omega for a parameter without IIV.
        """
        typical, omega = dict(typical or {}), dict(omega or {})
        problems = Problems(str(self.path) if self.path else "<spec>")
        known = self.parameter_names
        for name in sorted(set(typical) | set(omega)):
            if name not in known:
                problems.add(f"parameters.{name}", "no such parameter", "one of " + ", ".join(known),
                             "name a parameter the spec defines" + suggestion(name, known))
            elif name in omega and self.parameter(name).iiv is None:
                problems.add(f"parameters.{name}.iiv", "nothing", "an IIV to set the sd of",
                             "give the parameter an iiv in the spec, or drop it from omega")
        problems.raise_if_any()
        parameters = tuple(
            replace(p, value=float(typical.get(p.name, p.value)),
                    iiv=replace(p.iiv, sd=float(omega[p.name])) if p.name in omega else p.iiv)
            for p in self.parameters
        )
        return replace(self, parameters=parameters)

    def _toggle(self, names, *, estimate: bool) -> ModelSpec:
        names = (names,) if isinstance(names, str) else tuple(names)
        known = self.parameter_names
        problems = Problems(str(self.path) if self.path else "<spec>")
        for name in names:
            if name not in known:
                problems.add(
                    f"parameters.{name}",
                    "no such parameter",
                    "one of " + ", ".join(known),
                    "name a parameter the spec defines" + suggestion(name, known),
                )
            elif estimate and self.parameter(name).prior is None:
                problems.add(
                    f"parameters.{name}.prior",
                    "nothing",
                    "a prior, since the parameter is to be estimated",
                    f"add e.g. `prior = {{ dist = \"lognormal\", median = {show(self.parameter(name).value)}, "
                    "sd_log = 0.5 }` to the spec",
                )
        problems.raise_if_any()
        chosen = set(names)
        parameters = tuple(replace(p, estimate=estimate) if p.name in chosen else p for p in self.parameters)
        return replace(self, parameters=parameters)
