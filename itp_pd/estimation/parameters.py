"""The population parameters of a maximum-likelihood fit, as one unconstrained vector.

FOCE-I and Laplace estimate the typical values, the estimated covariate exponents, the IIV
covariance Ω and the residual error sds by maximising the marginal likelihood; they have no
priors. The outer optimiser works on an unconstrained vector ``x``:

==================  ==============================================  ======================
entry               x                                               natural value
==================  ==============================================  ======================
``pop_<P>``         log θ (logit of (θ − low)/(high − low) for a     θ in the parameter's
                    parameter with a finite upper bound)             unit
``beta_<P>_<COV>``  the exponent itself                              dimensionless
``omega_<P>``       log ω (an independent random effect)             ω, sd of η
``chol_<i>_<j>``    Cholesky factor of a correlated block of Ω:      ω and the correlations
                    log of its diagonal, its lower triangle as is    of the block
``sigma_<OUT>``     log σ                                            σ (the output's unit,
                                                                     or a fraction)
==================  ==============================================  ======================

The start is the spec's prior medians of the typical values (its value where there is no
prior), the spec's ω and σ and exponents: the place a pharmacometrician starts NONMEM from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import expit, logit

from ..errors import SpecError
from ..spec.individual import individual_value
from ..stats.model import sigma_sites


@dataclass(frozen=True)
class Entry:
    """One element of the unconstrained vector: its name, what it is and its natural start."""

    name: str
    kind: str  # "pop", "beta", "omega", "chol", "sigma"
    start: float  # on the unconstrained scale
    parameter: str | None = None
    low: float = 0.0
    high: float = math.inf


def _to_unconstrained(value: float, low: float, high: float) -> float:
    if math.isfinite(high):
        return float(logit((value - low) / (high - low)))
    return math.log(value - low)


def _from_unconstrained(x, low: float, high: float):
    if math.isfinite(high):
        return low + (high - low) * expit(x)
    return low + jnp.exp(x)


@dataclass(frozen=True)
class PopulationParameters:
    """The estimated population parameters of ``model`` (a ``HierarchicalModel``).

    Attributes:
        entries: the unconstrained vector's elements, in order.
        etas: the random effects (the model's order), each one column of η.
        correlated: the random effects of the correlated block (may be empty).
    """

    entries: tuple[Entry, ...]
    etas: tuple[str, ...]
    correlated: tuple[str, ...]
    spec: object
    observations: tuple

    @classmethod
    def of(cls, model) -> PopulationParameters:
        spec = model.spec
        entries = []
        for p in spec.parameters:
            if p.estimate:
                start = p.prior.median() if p.prior is not None else p.value
                low, high = p.bounds
                if p.iiv is not None and p.iiv.scale == "logit":
                    low, high = 0.0, 1.0
                entries.append(Entry(f"pop_{p.name}", "pop", _to_unconstrained(start, low, high), p.name, low, high))
            for e in p.covariates:
                if e.estimate_exponent:
                    start = e.exponent if e.exponent is not None else e.exponent_prior.median()
                    entries.append(Entry(f"beta_{p.name}_{e.covariate}", "beta", float(start), p.name,
                                         -math.inf, math.inf))
        for name in model.etas:
            iiv = spec.parameter(name).iiv
            if name in model.correlated:
                if iiv.prior is None:
                    raise SpecError(
                        f"parameters.{name}.iiv: a fixed omega (no prior) cannot be part of the correlated "
                        f"block {list(model.correlated)}; give it a prior or leave it out of 'correlated'")
                continue
            if iiv.prior is not None:
                entries.append(Entry(f"omega_{name}", "omega", math.log(iiv.sd), name))
        block = model.correlated
        for i, a in enumerate(block):
            for j, b in enumerate(block[: i + 1]):
                start = math.log(spec.parameter(a).iiv.sd) if i == j else 0.0
                entries.append(Entry(f"chol_{a}_{b}", "chol", start, a, -math.inf, math.inf))
        for o in model.observations:
            for _, site, value, prior in sigma_sites(o):
                if prior is not None:
                    entries.append(Entry(site, "sigma", math.log(value), o.name))
        return cls(tuple(entries), tuple(model.etas), tuple(block), spec, tuple(model.observations))

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    @property
    def start(self) -> np.ndarray:
        return np.array([e.start for e in self.entries], dtype=float)

    def index(self, name: str) -> int:
        return self.names.index(name)

    # -- natural values ------------------------------------------------------------------
    def typical(self, x) -> dict:
        """Typical value of every parameter of the spec (estimated or fixed), natural units."""
        values = {p.name: p.value for p in self.spec.parameters}
        for k, e in enumerate(self.entries):
            if e.kind == "pop":
                values[e.parameter] = _from_unconstrained(x[k], e.low, e.high)
        return values

    def exponents(self, x) -> dict:
        """``{parameter: {covariate: exponent}}`` of the estimated exponents."""
        out: dict = {}
        for k, e in enumerate(self.entries):
            if e.kind == "beta":
                covariate = e.name[len(f"beta_{e.parameter}_"):]
                out.setdefault(e.parameter, {})[covariate] = x[k]
        return out

    def omega_matrix(self, x):
        """Ω, the covariance of η (``n_etas × n_etas``, the order of ``etas``)."""
        k = len(self.etas)
        omega = jnp.zeros((k, k), dtype=jnp.result_type(float))
        sds = {}
        for name in self.etas:
            if name not in self.correlated:
                sds[name] = self.spec.parameter(name).iiv.sd
        chol = jnp.zeros((len(self.correlated),) * 2, dtype=omega.dtype)
        for idx, e in enumerate(self.entries):
            if e.kind == "omega":
                sds[e.parameter] = jnp.exp(x[idx])
            elif e.kind == "chol":
                a, b = self._chol_pair(e.name)
                i, j = self.correlated.index(a), self.correlated.index(b)
                chol = chol.at[i, j].set(jnp.exp(x[idx]) if i == j else x[idx])
        for i, name in enumerate(self.etas):
            if name in sds:
                omega = omega.at[i, i].set(jnp.asarray(sds[name]) ** 2)
        if self.correlated:
            block = chol @ chol.T
            where = [self.etas.index(name) for name in self.correlated]
            for bi, i in enumerate(where):
                for bj, j in enumerate(where):
                    omega = omega.at[i, j].set(block[bi, bj])
        return omega

    def _chol_pair(self, name: str) -> tuple[str, str]:
        rest = name[len("chol_"):]
        for a in self.correlated:
            for b in self.correlated:
                if rest == f"{a}_{b}":
                    return a, b
        raise ValueError(name)

    def sigmas(self, x) -> dict:
        """``{observation name: {field: sd}}`` (``sigma_add``, ``sigma_prop``, ``sigma_log``)."""
        out = {}
        for o in self.observations:
            fields = {}
            for field_name, site, value, prior in sigma_sites(o):
                fields[field_name] = value
                if prior is not None:
                    fields[field_name] = jnp.exp(x[self.index(site)])
            out[o.name] = fields
        return out

    def natural(self, x) -> dict:
        """Every reported parameter in natural units: ``pop_<P>`` typical values,
        ``beta_…`` exponents, ``omega_<P>`` (sd of η), ``corr_<A>_<B>`` correlations within the
        block, ``sigma_…`` residual sds. Traceable, so the delta method can differentiate it."""
        out = {}
        typical = self.typical(x)
        for e in self.entries:
            if e.kind == "pop":
                out[e.name] = typical[e.parameter]
        for p, covs in self.exponents(x).items():
            for c, value in covs.items():
                out[f"beta_{p}_{c}"] = value
        omega = self.omega_matrix(x)
        sd = jnp.sqrt(jnp.diagonal(omega))
        estimated = {e.parameter for e in self.entries if e.kind == "omega"} | set(self.correlated)
        for i, name in enumerate(self.etas):
            if name in estimated:
                out[f"omega_{name}"] = sd[i]
        for bi, a in enumerate(self.correlated):
            for b in self.correlated[:bi]:
                i, j = self.etas.index(a), self.etas.index(b)
                out[f"corr_{a}_{b}"] = omega[i, j] / (sd[i] * sd[j])
        sigmas = self.sigmas(x)
        for o in self.observations:
            for field_name, site, _, prior in sigma_sites(o):
                if prior is not None:
                    out[site] = sigmas[o.name][field_name]
        return out

    # -- individual parameters -----------------------------------------------------------
    def individual(self, x, eta, covariates) -> dict:
        """Every spec parameter's individual values, ``(n_patients,)`` each (the same formula as
        the NumPyro model: ``individual_value``)."""
        typical = self.typical(x)
        exponents = self.exponents(x)
        n = eta.shape[0]
        params = {}
        for p in self.spec.parameters:
            e = eta[:, self.etas.index(p.name)] if p.name in self.etas else None
            value = individual_value(p, typical[p.name], e, covariates, exponents=exponents.get(p.name))
            params[p.name] = jnp.broadcast_to(value, (n,))
        return params
