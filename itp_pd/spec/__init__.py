"""Model specs: parameters with units, values, sources, priors, IIV and covariates, as data.

A model version is one TOML file in ``models/``, read with ``tomllib`` and checked in full on
load (``load_spec``): every problem is collected and one ``SpecError`` lists them all, each with
the file, the field path (``parameters.CL.prior.median``), what was found, what was expected and
how to fix it. Specs hold no code; nothing read from them is evaluated.

File format
-----------
::

    [model]
    name = "pk_2cmt_iv"                 # required
    version = "1.0"                     # required, text
    structural = "two_compartment_iv"   # required: key of the structural model
    description = "..."                 # optional

    [parameters.CL]                     # one table per parameter; the name is the model's
    value = 0.30                        # required: typical value, in `unit`
    unit = "L/day"                      # required ("1" if dimensionless)
    description = "clearance"           # required
    source = "Candelaria 2018 ... [lit]"  # required: where the value comes from
    estimate = true                     # optional, default false (fixed at `value`)
    prior = { dist = "lognormal", median = 0.30, sd_log = 0.3 }   # required if estimate = true
    iiv = { sd = 0.25, scale = "log", prior = { dist = "halfnormal", scale = 0.5 } }  # optional
    covariates = [ { covariate = "BSA", form = "power", reference = 1.8, exponent = 1.0 } ]  # optional
    bounds = [0.0, inf]                 # optional

    [observations.CP]                   # one table per observed output
    dvid = 1                            # required, unique positive integer
    unit = "mg/L"                       # required
    error = "proportional"              # required: additive | proportional | combined | lognormal
    sigma_prop = { value = 0.15, prior = { dist = "halfnormal", scale = 0.5 } }
    description = "..."                 # optional

Rules
-----
- **Priors** (``dist``): ``lognormal`` (median > 0, sd_log > 0), ``normal`` (mean, sd > 0),
  ``halfnormal`` (scale > 0), ``logitnormal`` (0 < median < 1, sd_logit > 0), ``beta`` (a, b > 0),
  ``uniform`` (low < high, finite), ``truncatednormal`` (mean, sd > 0, low < high; ±inf allowed).
  A prior on a fixed parameter is kept, so that a fit recipe can free it (``with_estimated``).
- **IIV**: ``sd`` > 0 is ω, the sd of η. ``scale = "log"`` (default): P = θ·exp(η);
  ``scale = "logit"`` for fractions: P = expit(logit(θ) + η). With a ``prior`` ω is estimated
  (the prior must be on values >= 0); without one ω is fixed at ``sd``.
- **Covariates**, applied before IIV (see ``individual_value``):
  ``power`` θ·(cov/reference)^exponent (reference > 0); ``exponential``
  θ·exp(exponent·(cov − reference)); both take ``estimate_exponent`` (default false; if true,
  ``prior`` is the exponent's prior and ``exponent`` its start). ``categorical``
  θ·exp(effects[level]) with ``reference`` (the level with effect 0) and
  ``effects = { "1" = 0.2 }`` (level codes as in the dataset → log effect; unlisted levels
  have effect 0). Each covariate at most once per parameter.
- **Bounds** ``[low, high]``: a closed interval containing ``value`` and the prior's support.
  Default ``[0, inf]``, or ``[0, 1]`` for logit-scale IIV. Log-scale IIV needs ``value > 0``,
  logit-scale ``0 < value < 1``. A ``value`` must lie strictly inside its prior's support.
- **Residual error**: ``additive`` needs ``sigma_add`` (sd in the DV unit), ``proportional``
  ``sigma_prop`` (a fraction of the prediction), ``combined`` both, ``lognormal`` ``sigma_log``
  (sd of log DV); each ``{ value = ..., prior = {...} }`` (no prior: fixed). Sigma fields the
  error model does not use are errors.
- Names of parameters, observations and covariates are identifiers (they become sample-site
  names such as ``pop_CL``). Unknown keys anywhere are errors, with a suggestion for typos.
  ``inf`` is allowed only in ``bounds`` and truncation limits; ``nan`` nowhere.
"""

from ._problems import SpecProblem
from .individual import covariate_factor, individual_value
from .load import load_spec, read_values
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
from .priors import DISTRIBUTIONS, Prior

__all__ = [
    "read_values",
    "COVARIATE_FORMS",
    "DISTRIBUTIONS",
    "ERROR_MODELS",
    "IIV",
    "IIV_SCALES",
    "CovariateEffect",
    "ModelSpec",
    "Observation",
    "Parameter",
    "Prior",
    "SpecProblem",
    "covariate_factor",
    "individual_value",
    "load_spec",
]
