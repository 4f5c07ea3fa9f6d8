"""Model specs: the example loads as written, broken specs name every problem, individual values."""

import hashlib
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from itp_pd.errors import SpecError
from itp_pd.spec import (
    IIV,
    CovariateEffect,
    ModelSpec,
    Parameter,
    Prior,
    individual_value,
    load_spec,
)

PK = Path(__file__).parents[1] / "models" / "pk_2cmt_iv.toml"

# A small valid spec; each broken case below edits one or more lines of it.
BASE = """\
[model]
name = "m"
version = "1.0"
structural = "two_compartment_iv"

[parameters.CL]
value = 0.3
unit = "L/day"
description = "clearance"
source = "test"
estimate = true
prior = { dist = "lognormal", median = 0.3, sd_log = 0.3 }
iiv = { sd = 0.25, prior = { dist = "halfnormal", scale = 0.5 } }

[parameters.F]
value = 0.4
unit = "1"
description = "a fraction"
source = "test"
iiv = { sd = 0.5, scale = "logit" }

[observations.CP]
dvid = 1
unit = "mg/L"
error = "proportional"
sigma_prop = { value = 0.15, prior = { dist = "halfnormal", scale = 0.5 } }
"""

PLT = """
[observations.PLT]
dvid = 1
unit = "10^9/L"
error = "additive"
sigma_add = { value = 5.0 }
"""


def write(tmp_path, text, name="spec.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def edit(text, *replacements):
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def load_error(tmp_path, text) -> SpecError:
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    error = info.value
    # Every listed problem names the file.
    for line in str(error).splitlines()[1:]:
        assert str(path) in line, line
    return error


# --- the example spec ---------------------------------------------------------------------


def test_base_spec_is_valid(tmp_path):
    spec = load_spec(write(tmp_path, BASE))
    assert spec.parameter_names == ("CL", "F")
    assert spec.parameter("F").bounds == (0.0, 1.0)  # default for logit-scale IIV


def test_pk_example_loads_as_written():
    spec = load_spec(PK)
    assert (spec.name, spec.version, spec.structural) == ("pk_2cmt_iv", "1.0", "two_compartment_iv")
    assert spec.parameter_names == ("CL", "V1", "Q", "V2")
    assert spec.typical_values() == {"CL": 0.30, "V1": 3.19, "Q": 0.446, "V2": 4.15}
    assert {p.name: p.unit for p in spec.parameters} == {"CL": "L/day", "V1": "L", "Q": "L/day", "V2": "L"}
    assert [p.name for p in spec.estimated()] == ["CL", "V1"]
    assert [p.name for p in spec.fixed()] == ["Q", "V2"]
    assert all("Candelaria 2018" in p.source for p in spec.parameters)

    cl = spec.parameter("CL")
    assert cl.prior == Prior.of("lognormal", median=0.30, sd_log=0.3)
    assert cl.iiv == IIV(sd=0.25, scale="log", prior=Prior.of("halfnormal", scale=0.5))
    assert cl.bounds == (0.0, math.inf)
    v1 = spec.parameter("V1")
    assert v1.prior == Prior.of("lognormal", median=3.19, sd_log=0.2)
    assert v1.iiv == IIV(sd=0.18, scale="log", prior=Prior.of("halfnormal", scale=0.5))
    assert v1.covariates == (CovariateEffect(covariate="BSA", form="power", reference=1.8, exponent=1.0),)
    assert spec.parameter("Q").prior == Prior.of("lognormal", median=0.446, sd_log=0.5)
    assert spec.parameter("Q").iiv is None

    (cp,) = spec.observations
    assert (cp.name, cp.dvid, cp.unit, cp.error) == ("CP", 1, "mg/L", "proportional")
    assert cp.sigmas == (("sigma_prop", 0.15, Prior.of("halfnormal", scale=0.5)),)
    assert cp.sigma("sigma_prop") == 0.15

    assert spec.sha256 == hashlib.sha256(PK.read_bytes()).hexdigest()
    assert spec.path == PK
    hash(spec)  # static configuration: usable as a jit static argument or cache key


def _priors(spec):
    for p in spec.parameters:
        yield p.prior
        if p.iiv is not None and p.iiv.prior is not None:
            yield p.iiv.prior
    for o in spec.observations:
        for _, _, prior in o.sigmas:
            yield prior


def test_pk_example_priors_have_their_median():
    spec = load_spec(PK)
    priors = [p for p in _priors(spec) if p is not None]
    assert len(priors) == 7
    for prior in priors:
        d = prior.to_numpyro()
        # CDF at the stated median is 1/2 to rounding (float64 erf).
        assert float(d.cdf(prior.median())) == pytest.approx(0.5, abs=1e-12)
        if prior.dist == "lognormal":
            assert prior.median() == prior["median"]
    # Median of a half-normal: scale · Φ⁻¹(3/4).
    assert Prior.of("halfnormal", scale=0.5).median() == pytest.approx(0.5 * 0.6744897501960817, rel=1e-14)


ALL_PRIORS = [
    Prior.of("lognormal", median=0.3, sd_log=0.3),
    Prior.of("normal", mean=-1.0, sd=2.0),
    Prior.of("halfnormal", scale=0.5),
    Prior.of("logitnormal", median=0.2, sd_logit=0.8),
    Prior.of("beta", a=2.0, b=5.0),
    Prior.of("uniform", low=1.0, high=3.0),
    Prior.of("truncatednormal", mean=1.0, sd=0.5, low=0.0, high=math.inf),
    Prior.of("truncatednormal", mean=5.0, sd=1.0, low=-math.inf, high=3.0),
]


@pytest.mark.parametrize("prior", ALL_PRIORS, ids=lambda p: p.dist)
def test_every_distribution_has_the_stated_median(prior):
    d = prior.to_numpyro()
    median = prior.median()
    # The CDF of each NumPyro distribution is exact to ~1e-12 in float64 (betainc: ~1e-10).
    assert float(d.cdf(median)) == pytest.approx(0.5, abs=1e-9)
    # Independent check by sampling: the fraction of 40,000 draws below the median is 1/2 with
    # sd 0.0025; 4 sd is the tolerance.
    draws = np.asarray(d.sample(jax.random.key(0), (40_000,)))
    assert np.mean(draws < median) == pytest.approx(0.5, abs=0.01)
    low, high = prior.support()
    assert np.all((draws >= low) & (draws <= high))


def test_beta_median_matches_known_value():
    # Beta(2, 5) median 0.26444998329566… (e.g. scipy.stats.beta(2, 5).median()).
    assert Prior.of("beta", a=2.0, b=5.0).median() == pytest.approx(0.2644499832956, rel=1e-10)


def test_prior_built_in_python_is_checked():
    with pytest.raises(SpecError, match=r"prior\.median: found -1\.0"):
        Prior.of("lognormal", median=-1.0, sd_log=0.3)
    with pytest.raises(SpecError, match="did you mean 'normal'"):
        Prior.of("nromal", mean=0.0, sd=1.0)
    # Parameters given in any order compare equal.
    assert Prior("normal", (("sd", 1.0), ("mean", 0.0))) == Prior.of("normal", mean=0.0, sd=1)


# --- broken specs -------------------------------------------------------------------------

# case -> (edits to BASE, fragments of its one problem: field path, what was found, the fix).
BROKEN = {
    "missing required field": (
        [('unit = "L/day"\n', "")],
        ["parameters.CL.unit", "found nothing", "add `unit = ...` to [parameters.CL]"],
    ),
    "missing source": (
        [('source = "test"\nestimate', "estimate")],
        ["parameters.CL.source", "found nothing", "add `source = ...`"],
    ),
    "empty source": (
        [('source = "test"\nestimate', 'source = " "\nestimate')],
        ["parameters.CL.source", "non-empty text", "cite where the value comes from"],
    ),
    "missing model field": (
        [('structural = "two_compartment_iv"\n', "")],
        ["model.structural", "found nothing", "add `structural = ...`"],
    ),
    "unknown key": (
        [("estimate = true", "estimat = true"), ("\nprior = {", "\nestimate = false\nprior = {")],
        ["parameters.CL.estimat", "unknown key 'estimat'", "did you mean 'estimate'?"],
    ),
    "estimate without prior": (
        [('prior = { dist = "lognormal", median = 0.3, sd_log = 0.3 }\n', "")],
        ["parameters.CL.prior", "found nothing", "because estimate = true", "set estimate = false"],
    ),
    "negative sd": (
        [("sd_log = 0.3", "sd_log = -0.3")],
        ["parameters.CL.prior.sd_log", "found -0.3", "expected a finite number > 0", "give a positive number"],
    ),
    "lognormal median zero": (
        [("median = 0.3", "median = 0.0")],
        ["parameters.CL.prior.median", "found 0.0", "> 0", "the median of a lognormal prior"],
    ),
    "number as text": (
        [("median = 0.3", 'median = "0.3"')],
        ["parameters.CL.prior.median", "'0.3' (text)", "remove the quotes"],
    ),
    "unknown dist": (
        [('dist = "lognormal"', 'dist = "lognorm"')],
        ["parameters.CL.prior.dist", "found 'lognorm' (text)", "did you mean 'lognormal'?"],
    ),
    "negative value with default bounds": (
        [("value = 0.4", "value = -0.4")],
        ["parameters.F.value", "found -0.4", "within the default bounds [0.0, 1.0]", "give `bounds = [low, high]`"],
    ),
    "prior support outside bounds": (
        [('dist = "lognormal", median = 0.3, sd_log = 0.3', 'dist = "normal", mean = 0.3, sd = 0.1')],
        ["parameters.CL.prior", "normal prior with support [-inf, inf]", "default bounds [0.0, inf]", "lognormal"],
    ),
    "logit IIV on value 1": (
        [("value = 0.4", "value = 1.0")],
        ["parameters.F.value", "found 1.0", "strictly between 0 and 1", 'use `scale = "log"`'],
    ),
    "unknown IIV scale": (
        [('scale = "logit"', 'scale = "logt"')],
        ["parameters.F.iiv.scale", "'logt'", "did you mean 'logit'?"],
    ),
    "IIV prior on negative values": (
        [('iiv = { sd = 0.25, prior = { dist = "halfnormal", scale = 0.5 } }',
          'iiv = { sd = 0.25, prior = { dist = "normal", mean = 0.25, sd = 0.1 } }')],
        ["parameters.CL.iiv.prior", "support from -inf", "use halfnormal"],
    ),
    "unknown error model": (
        [('error = "proportional"', 'error = "proportionl"')],
        ["observations.CP.error", "'proportionl'", "did you mean 'proportional'?"],
    ),
    "missing sigma for the error model": (
        [('error = "proportional"', 'error = "combined"')],
        ["observations.CP.sigma_add", "found nothing", "because error = 'combined'", "add `sigma_add = {"],
    ),
    "sigma the error model does not use": (
        [('error = "proportional"', 'error = "additive"'), ("sigma_prop", "sigma_add = { value = 1.0 }\nsigma_prop")],
        ["observations.CP.sigma_prop", "does not use", "or set error = 'combined'"],
    ),
    "duplicate DVID": (
        [("sigma_prop = { value = 0.15, prior = { dist = \"halfnormal\", scale = 0.5 } }\n",
          "sigma_prop = { value = 0.15, prior = { dist = \"halfnormal\", scale = 0.5 } }\n" + PLT)],
        ["observations.PLT.dvid", "DVID 1, also used by observations.CP", "give each observation its own DVID"],
    ),
    "version as a number": (
        [('version = "1.0"', "version = 1.0")],
        ["model.version", "found 1.0", 'quote it: `version = "1.0"`'],
    ),
    "dvid not an integer": (
        [("dvid = 1", "dvid = 0")],
        ["observations.CP.dvid", "found 0", "positive integer"],
    ),
    "nan value": (
        [("value = 0.3", "value = nan")],
        ["parameters.CL.value", "found nan", "a finite number"],
    ),
    "exponent estimated without prior": (
        [("value = 0.3\n",
          'value = 0.3\ncovariates = [ { covariate = "WT", form = "power", reference = 70.0, exponent = 0.75, '
          "estimate_exponent = true } ]\n")],
        ["parameters.CL.covariates[0].prior", "found nothing", "estimate_exponent = true"],
    ),
    "categorical effect for the reference level": (
        [("value = 0.3\n",
          'value = 0.3\ncovariates = [ { covariate = "SEX", form = "categorical", reference = 0, '
          'effects = { "0" = 0.1, "1" = 0.2 } } ]\n')],
        ['parameters.CL.covariates[0].effects."0"', "reference level", "remove it from effects"],
    ),
    "invalid TOML syntax": (
        [("value = 0.3", "value = = 0.3")],
        ["line 7", "invalid TOML", "correct the TOML syntax on line 7"],
    ),
}


@pytest.mark.parametrize("case", list(BROKEN), ids=str)
def test_broken_spec_names_its_problem(tmp_path, case):
    edits, fragments = BROKEN[case]
    error = load_error(tmp_path, edit(BASE, *edits))
    assert len(error.problems) == 1, str(error)
    message = str(error)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in:\n{message}"


def test_one_spec_with_several_problems_reports_all_of_them(tmp_path):
    text = edit(
        BASE,
        ('unit = "L/day"\n', ""),  # missing required field
        ("sd_log = 0.3 }\niiv", "sdlog = 0.3 }\niiv"),  # typo in a prior (unknown + missing)
        ("value = 0.4", "value = 1.0"),  # logit IIV on 1
        ('error = "proportional"', 'error = "combined"'),  # missing sigma_add
        ("[observations.CP]", "[observation.CP]"),  # unknown section (and none left)
    )
    error = load_error(tmp_path, text)
    fields = [p.field for p in error.problems]
    assert sorted(fields) == sorted([
        "observation",
        "observations",
        "parameters.CL.unit",
        "parameters.CL.prior.sdlog",
        "parameters.CL.prior.sd_log",
        "parameters.F.value",
    ]), str(error)
    message = str(error)
    assert message.startswith(f"6 problems found in {tmp_path / 'spec.toml'}:")
    assert "did you mean 'sd_log'?" in message
    assert "did you mean 'observations'?" in message
    # The sigma of an error model in an unknown section is not checked: that section is dropped.
    assert "sigma_add" not in message


def test_value_outside_explicit_bounds(tmp_path):
    text = edit(BASE, ("value = 0.3\n", "value = 0.3\nbounds = [0.0, 0.2]\n"))
    error = load_error(tmp_path, text)
    assert [p.field for p in error.problems] == ["parameters.CL.value", "parameters.CL.prior"]
    assert "found 0.3; expected a value within its bounds [0.0, 0.2]" in str(error)
    assert "or widen `bounds`" in str(error)


def test_missing_file_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "nope.toml")


def test_structural_key_checked_when_keys_given(tmp_path):
    path = write(tmp_path, BASE)
    load_spec(path, structural_keys={"two_compartment_iv"})
    with pytest.raises(SpecError, match="did you mean 'two_compartment_ivv'"):
        load_spec(path, structural_keys={"two_compartment_ivv", "itp"})


def test_covariate_forms_parse(tmp_path):
    text = edit(BASE, ("value = 0.3\n", (
        "value = 0.3\ncovariates = [\n"
        '  { covariate = "WT", form = "power", reference = 70.0, exponent = 0.75, estimate_exponent = true,'
        ' prior = { dist = "normal", mean = 0.75, sd = 0.2 } },\n'
        '  { covariate = "AGE", form = "exponential", reference = 40.0, exponent = -0.01 },\n'
        '  { covariate = "SEX", form = "categorical", reference = 0, effects = { "1" = 0.2, "2" = -0.1 } },\n'
        "]\n")))
    cl = load_spec(write(tmp_path, text)).parameter("CL")
    wt, age, sex = cl.covariates
    assert wt.estimate_exponent and wt.exponent_prior == Prior.of("normal", mean=0.75, sd=0.2)
    assert (age.form, age.reference, age.exponent) == ("exponential", 40.0, -0.01)
    assert sex.effects == ((1.0, 0.2), (2.0, -0.1)) and sex.exponent is None


# --- individual values --------------------------------------------------------------------


def test_power_covariate_scales_by_ratio():
    v1 = load_spec(PK).parameter("V1")
    got = individual_value(v1, 3.19, 0.0, {"BSA": 2.0})
    # One multiply and one power of exactly representable ratios: a few ulp.
    assert float(got) == pytest.approx(3.19 * 2.0 / 1.8, rel=1e-14)
    assert float(individual_value(v1, 3.19, 0.0, {"BSA": 1.8})) == pytest.approx(3.19, rel=1e-15)


def test_eta_zero_returns_typical_value():
    spec = load_spec(PK)
    assert float(individual_value(spec.parameter("CL"), 0.3, 0.0)) == 0.3
    assert float(individual_value(spec.parameter("Q"), 0.446, None)) == 0.446
    assert float(individual_value(spec.parameter("CL"), 0.3, 0.2)) == pytest.approx(0.3 * math.exp(0.2), rel=1e-15)


def _fraction(covariates=()):
    return Parameter(name="F", value=0.6, unit="1", description="fraction", source="test",
                     iiv=IIV(sd=1.0, scale="logit"), covariates=covariates, bounds=(0.0, 1.0))


def test_logit_scale_stays_in_unit_interval():
    eta = jnp.array([-40.0, -5.0, 0.0, 5.0, 30.0])
    got = np.asarray(individual_value(_fraction(), 0.6, eta))
    assert np.all((got > 0) & (got < 1))
    assert np.all(np.diff(got) > 0)
    assert got[2] == pytest.approx(0.6, rel=1e-15)
    logit = math.log(0.6 / 0.4)
    assert got[1] == pytest.approx(1 / (1 + math.exp(-(logit - 5.0))), rel=1e-13)
    # A covariate that would push θ·F past 1 multiplies the odds instead: still inside (0, 1).
    f = _fraction((CovariateEffect(covariate="BSA", form="power", reference=1.0, exponent=1.0),))
    got = float(individual_value(f, 0.6, 0.0, {"BSA": 2.0}))
    assert got == pytest.approx(1 / (1 + 0.4 / (0.6 * 2.0)), rel=1e-14)
    assert 0 < got < 1


def test_exponential_and_categorical_covariates():
    p = Parameter(name="CL", value=1.0, unit="L/day", description="", source="test", iiv=IIV(sd=0.3),
                  covariates=(CovariateEffect(covariate="AGE", form="exponential", reference=40.0, exponent=-0.01),
                              CovariateEffect(covariate="SEX", form="categorical", reference=0.0,
                                              effects=((1.0, 0.2), (2.0, -0.1)))))
    age = jnp.array([40.0, 50.0, 40.0, 30.0])
    sex = jnp.array([0, 1, 2, 3])  # integer codes; 3 is unlisted, so effect 0
    got = np.asarray(individual_value(p, 2.0, jnp.zeros(4), {"AGE": age, "SEX": sex}))
    expected = 2.0 * np.exp(-0.01 * (np.asarray(age) - 40.0)) * np.exp([0.0, 0.2, -0.1, 0.0])
    np.testing.assert_allclose(got, expected, rtol=1e-14)


def test_individual_value_under_jit_on_arrays():
    v1 = load_spec(PK).parameter("V1")
    f = jax.jit(lambda typical, eta, bsa: individual_value(v1, typical, eta, {"BSA": bsa}))
    eta = jnp.array([-0.3, 0.0, 0.1, 0.5])
    bsa = jnp.array([1.5, 1.8, 2.0, 2.2])
    got = f(jnp.asarray(3.19), eta, bsa)
    assert got.shape == (4,) and got.dtype == jnp.float64
    np.testing.assert_allclose(got, 3.19 * np.asarray(bsa) / 1.8 * np.exp(np.asarray(eta)), rtol=1e-14)
    # Gradient with respect to the typical value is the ratio value/typical.
    grad = jax.grad(lambda t: f(t, eta, bsa).sum())(jnp.asarray(3.19))
    assert float(grad) == pytest.approx(float(got.sum()) / 3.19, rel=1e-13)


def test_sampled_exponent_overrides_the_spec():
    p = Parameter(name="CL", value=1.0, unit="L/day", description="", source="test",
                  covariates=(CovariateEffect(covariate="WT", form="power", reference=70.0, exponent=0.75,
                                              estimate_exponent=True,
                                              exponent_prior=Prior.of("normal", mean=0.75, sd=0.2)),))
    wt = jnp.array([35.0, 140.0])
    np.testing.assert_allclose(individual_value(p, 1.0, None, {"WT": wt}), [0.5**0.75, 2.0**0.75], rtol=1e-14)
    got = individual_value(p, 1.0, None, {"WT": wt}, exponents={"WT": jnp.asarray(1.0)})
    np.testing.assert_allclose(got, [0.5, 2.0], rtol=1e-14)


def test_missing_covariate_is_a_spec_error():
    v1 = load_spec(PK).parameter("V1")
    with pytest.raises(SpecError, match="BSA"):
        individual_value(v1, 3.19, 0.0, {"WT": 70.0})


# --- fit recipes toggle parameters ----------------------------------------------------------


def test_with_fixed_with_estimated_round_trip():
    spec = load_spec(PK)
    fixed = spec.with_fixed(["CL"])
    assert [p.name for p in fixed.estimated()] == ["V1"]
    assert fixed.parameter("CL").prior == spec.parameter("CL").prior
    assert fixed.with_estimated("CL") == spec
    assert [p.name for p in spec.estimated()] == ["CL", "V1"]  # the original is unchanged

    freed = spec.with_estimated(["Q", "V2"])
    assert [p.name for p in freed.estimated()] == ["CL", "V1", "Q", "V2"]
    assert freed.with_fixed(("Q", "V2")) == spec
    assert isinstance(freed, ModelSpec) and freed.sha256 == spec.sha256


def test_toggling_unknown_or_priorless_parameters_is_an_error(tmp_path):
    spec = load_spec(PK)
    with pytest.raises(SpecError, match="did you mean 'V1'"):
        spec.with_fixed(["v1"])
    base = load_spec(write(tmp_path, BASE))
    with pytest.raises(SpecError, match=r"parameters\.F\.prior: found nothing"):
        base.with_estimated(["F"])
    with pytest.raises(SpecError, match="did you mean 'CL'"):
        spec.parameter("CLL")


def test_read_values_reads_typical_and_omega_and_names_every_problem(tmp_path):
    from itp_pd.spec import read_values

    good = tmp_path / "values.toml"
    good.write_text("[typical]\nCL = 0.3\n\n[omega]\nCL = 0.2\n")
    assert read_values(good) == ({"CL": 0.3}, {"CL": 0.2})
    bad = tmp_path / "bad.toml"
    bad.write_text('[typicals]\nCL = 1\n\n[omega]\nCL = "high"\n')
    with pytest.raises(SpecError) as error:
        read_values(bad)
    message = str(error.value)
    assert "typicals" in message and "did you mean 'typical'" in message
    assert "omega" in message and "a table of parameter = number" in message
    with pytest.raises(SpecError, match="TOML file"):
        read_values(tmp_path / "missing.toml")
