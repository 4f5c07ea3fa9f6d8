"""Prior distributions written as data: ``{ dist = "lognormal", median = 0.3, sd_log = 0.3 }``.

Each distribution is named by ``dist`` and parametrised in the terms a modeller states a
belief in (a median and a spread, not a NumPyro ``loc``):

=================  ==========================  ===========================================
``dist``           parameters                  constraint
=================  ==========================  ===========================================
lognormal          median, sd_log              median > 0, sd_log > 0 (sd of log x)
normal             mean, sd                    sd > 0
halfnormal         scale                       scale > 0 (sd of the unfolded normal)
logitnormal        median, sd_logit            0 < median < 1, sd_logit > 0 (sd of logit x)
beta               a, b                        a > 0, b > 0
uniform            low, high                   finite, low < high
truncatednormal    mean, sd, low, high         sd > 0, low < high (either may be infinite)
=================  ==========================  ===========================================
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist

from ._problems import Problems, found, show, suggestion

# Kinds of parameter value, each with the text a message needs.
_POSITIVE = ("a finite number > 0", "give a positive number")
_REAL = ("a finite number", "give a finite number")
_FRACTION = ("a number strictly between 0 and 1", "give a fraction in (0, 1), e.g. 0.5")
_LOWER = ("a number or -inf", "give a number below `high`, or -inf for no lower limit")
_UPPER = ("a number or inf", "give a number above `low`, or inf for no upper limit")

DISTRIBUTIONS: Mapping[str, tuple[tuple[str, tuple[str, str]], ...]] = {
    "lognormal": (("median", _POSITIVE), ("sd_log", _POSITIVE)),
    "normal": (("mean", _REAL), ("sd", _POSITIVE)),
    "halfnormal": (("scale", _POSITIVE),),
    "logitnormal": (("median", _FRACTION), ("sd_logit", _POSITIVE)),
    "beta": (("a", _POSITIVE), ("b", _POSITIVE)),
    "uniform": (("low", _REAL), ("high", _REAL)),
    "truncatednormal": (("mean", _REAL), ("sd", _POSITIVE), ("low", _LOWER), ("high", _UPPER)),
}

_WHAT = {
    ("lognormal", "median"): "the median of a lognormal prior",
    ("lognormal", "sd_log"): "the sd of log(x); 0.3 is roughly a 30% spread",
    ("normal", "sd"): "the standard deviation",
    ("halfnormal", "scale"): "the sd of the normal folded at 0",
    ("logitnormal", "median"): "the median of a logitnormal prior, a fraction",
    ("logitnormal", "sd_logit"): "the sd of logit(x)",
    ("truncatednormal", "sd"): "the sd of the normal before truncation",
}


def is_number(value: object) -> bool:
    """A TOML integer or float (booleans are not numbers here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fits(kind, x: float) -> bool:
    if math.isnan(x):
        return False
    if kind is _POSITIVE:
        return math.isfinite(x) and x > 0
    if kind is _REAL:
        return math.isfinite(x)
    if kind is _FRACTION:
        return 0 < x < 1
    if kind is _LOWER:
        return x < math.inf
    return x > -math.inf


def check_prior_values(dist: str, values: Mapping[str, object], field: str, problems: Problems) -> None:
    """Add a problem for each parameter of a known ``dist`` that is missing or out of range.

    ``values`` maps parameter name to the value read; unknown names are checked by the caller.
    """
    spec = DISTRIBUTIONS[dist]
    names = ", ".join(name for name, _ in spec)
    ok = True
    for name, kind in spec:
        expected, fix = kind
        what = _WHAT.get((dist, name))
        expected_text = f"{expected} ({what})" if what else expected
        if name not in values:
            problems.add(
                f"{field}.{name}",
                "nothing",
                f"{expected_text}; a {dist} prior takes {names}",
                f"add `{name} = ...` to the prior",
            )
            ok = False
            continue
        value = values[name]
        if not is_number(value) or not _fits(kind, float(value)):
            quotes = "; remove the quotes" if isinstance(value, str) else ""
            problems.add(f"{field}.{name}", found(value), expected_text, fix + quotes)
            ok = False
    if ok and "low" in values and "high" in values and not float(values["low"]) < float(values["high"]):
        problems.add(
            f"{field}.high",
            f"low = {show(values['low'])}, high = {show(values['high'])}",
            "low < high",
            "swap them or widen the interval",
        )


@dataclass(frozen=True)
class Prior:
    """A prior distribution.

    Attributes:
        dist: one of ``DISTRIBUTIONS`` (``"lognormal"``, ``"normal"``, ...).
        params: ``((name, value), ...)`` in the order ``DISTRIBUTIONS[dist]`` lists them;
            values in the unit of the quantity the prior is on.

    Construct with ``Prior("lognormal", (("median", 0.3), ("sd_log", 0.3)))`` or
    ``Prior.of("lognormal", median=0.3, sd_log=0.3)``; invalid values raise ``SpecError``.
    """

    dist: str
    params: tuple[tuple[str, float], ...]

    def __post_init__(self):
        problems = Problems("<spec>")
        given = dict(self.params)
        if not isinstance(self.dist, str) or self.dist not in DISTRIBUTIONS:
            problems.add(
                "prior.dist",
                show(self.dist),
                "one of " + ", ".join(DISTRIBUTIONS),
                "use one of the listed names" + suggestion(str(self.dist), DISTRIBUTIONS),
            )
        else:
            names = [name for name, _ in DISTRIBUTIONS[self.dist]]
            for name in given:
                if name not in names:
                    problems.add(
                        f"prior.{name}",
                        f"unknown parameter {name!r}",
                        f"only {', '.join(names)} for a {self.dist} prior",
                        "remove it",
                    )
            check_prior_values(self.dist, given, "prior", problems)
            if not problems:
                # Canonical order and float values, so that equal priors compare and hash equal.
                object.__setattr__(self, "params", tuple((n, float(given[n])) for n in names))
        problems.raise_if_any()

    @classmethod
    def of(cls, dist: str, **params: float) -> Prior:
        """``Prior.of("lognormal", median=0.3, sd_log=0.3)``."""
        return cls(dist, tuple(params.items()))

    def __getitem__(self, name: str) -> float:
        return dict(self.params)[name]

    def support(self) -> tuple[float, float]:
        """The interval ``(low, high)`` outside which the density is zero."""
        p = dict(self.params)
        if self.dist in ("lognormal", "halfnormal"):
            return (0.0, math.inf)
        if self.dist == "normal":
            return (-math.inf, math.inf)
        if self.dist in ("logitnormal", "beta"):
            return (0.0, 1.0)
        return (p["low"], p["high"])

    def median(self) -> float:
        """The median of the distribution (exact, computed on the host in float64)."""
        p = dict(self.params)
        if self.dist in ("lognormal", "logitnormal"):
            return p["median"]
        if self.dist == "normal":
            return p["mean"]
        if self.dist == "halfnormal":
            return p["scale"] * NormalDist().inv_cdf(0.75)
        if self.dist == "uniform":
            return 0.5 * (p["low"] + p["high"])
        if self.dist == "beta":
            return _beta_median(p["a"], p["b"])
        return _truncated_normal_median(p["mean"], p["sd"], p["low"], p["high"])

    def to_numpyro(self):
        """The ``numpyro.distributions`` object for this prior.

        ``lognormal`` → ``LogNormal(log(median), sd_log)``; ``logitnormal`` → a ``Normal(logit(median),
        sd_logit)`` pushed through the sigmoid; infinite ``truncatednormal`` limits → ``None``.
        """
        # Imported here: loading and checking a spec should not pay for importing NumPyro.
        import numpyro.distributions as dist

        p = dict(self.params)
        if self.dist == "lognormal":
            return dist.LogNormal(math.log(p["median"]), p["sd_log"])
        if self.dist == "normal":
            return dist.Normal(p["mean"], p["sd"])
        if self.dist == "halfnormal":
            return dist.HalfNormal(p["scale"])
        if self.dist == "logitnormal":
            m = p["median"]
            return dist.TransformedDistribution(
                dist.Normal(math.log(m) - math.log1p(-m), p["sd_logit"]),
                dist.transforms.SigmoidTransform(),
            )
        if self.dist == "beta":
            return dist.Beta(p["a"], p["b"])
        if self.dist == "uniform":
            return dist.Uniform(p["low"], p["high"])
        low = p["low"] if math.isfinite(p["low"]) else None
        high = p["high"] if math.isfinite(p["high"]) else None
        return dist.TruncatedNormal(p["mean"], p["sd"], low=low, high=high)


def _phi(x: float) -> float:
    """Standard normal CDF, accurate in the lower tail (erfc does not cancel there)."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _truncated_normal_median(mean: float, sd: float, low: float, high: float) -> float:
    alpha, beta = (low - mean) / sd, (high - mean) / sd
    # Work in the lower tail, where Φ keeps its relative precision: mirror when the
    # interval lies mostly above the mean.
    sign = 1.0
    if alpha + beta > 0:
        alpha, beta, sign = -beta, -alpha, -1.0
    target = 0.5 * (_phi(alpha) + _phi(beta))
    z = NormalDist().inv_cdf(min(max(target, 5e-324), 1.0 - 1e-16))
    return mean + sign * sd * min(max(z, alpha), beta)


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta (modified Lentz; Numerical Recipes §6.4)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1.0) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1.0)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-16:
            break
    return h


def _beta_cdf(a: float, b: float, x: float) -> float:
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def _beta_median(a: float, b: float) -> float:
    # Bisection on the logit scale keeps relative precision for medians near 0 or 1.
    lo, hi = -745.0, 37.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _beta_cdf(a, b, 1.0 / (1.0 + math.exp(-mid))) < 0.5:
            lo = mid
        else:
            hi = mid
    return 1.0 / (1.0 + math.exp(-0.5 * (lo + hi)))
