"""The built-in demo: a synthetic NCT07057778 → a FOCE-I population fit → its report → arm comparisons.

``run_demo(folder)`` does, in order, what a pharmacometrician would do with the real trial:

1. **Data.** 120 virtual patients (60 per arm) of the calibrated default population
   (``models/itp_v1.toml`` + ``fits/itp_v1_calibration.toml``, iguratimod's effects at the
   spec's values), dosed as NCT07057778 (rituximab 100 mg weekly ×6, with or without
   iguratimod 25 mg twice daily for 26 weeks), with platelets and CD20+ B cells measured at the
   trial's visits with the spec's residual error. The patients differ in the two random
   effects that the fit models (``simulate_demo_trial`` says why). Written as a NONMEM-format
   CSV (internal units: days, mg, 10⁹/L) with the true individual parameters beside it.
2. **Fit.** A recipe written next to the data, fitted by ``itp_pd.inference.fit`` with FOCE-I
   (maximum likelihood, as NONMEM's ``METHOD=1 INTER``) from the spec's prior medians: the
   typical PLT0, FL and KB (``ESTIMATE``), random effects on PLT0 and KB (``RANDOM_EFFECTS``)
   and the platelets' residual error; then the covariance step (sandwich) and parameter draws
   from the estimate's asymptotic normal for the comparisons.
3. **Report.** ``itp_pd.diagnostics.write_report`` on the fit folder.
4. **Comparison.** The parameter draws give virtual trials of the two arms and two
   alternatives (standard-dose rituximab 375 mg/m² weekly ×4 with iguratimod, and iguratimod
   once daily); every arm is compared with the control arm (``itp_pd.trial.compare``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import jax
import numpy as np
import pandas as pd

TRIAL_ARMS = ("control", "combination")
ALTERNATIVES = ("rituximab 375 mg/m2 weekly x4 + iguratimod 25 mg bid 26 weeks", "combination (iguratimod qd)")
# The typical values that this trial's platelets and B cells inform: PLT0 (the baseline count),
# FL (the long-lived plasma-cell share: non-response) and KB (the B-cell turnover: relapse).
# iguratimod's IMAX_PC (truth 0.3) stays at its value: measured with FOCE-I on this design
# (docs/benchmarks.md), the OFV fell only 2.4 as IMAX_PC went from 0.92 to its bound 0, where R
# is singular, so every value between lies inside a likelihood-ratio 95% interval.
ESTIMATE = ("PLT0", "FL", "KB")
# The random effects that the data inform. Measured with platelets alone: random effects on FL
# and KB went to zero variance (FL's spread hardly moves platelets; KB's shows in B cells,
# hence BCELL in OUTPUTS); one on FT (calibrated logit sd 2.9) explained each patient's
# response so fully that IMAX_PC, the arms' difference, went to 0.
RANDOM_EFFECTS = ("PLT0", "KB")
OUTPUTS = ("PLT", "BCELL")
# Maximum likelihood needs a smooth objective: the solver's rtol sets how many digits of the OFV
# and its gradient are real (1e-4 leaves the BFGS line search noise), and at rtol 1e-6 Tsit5
# needs ~2.5x the steps of 1e-4 (hence max_steps 4096 per segment). Iguratimod's 364 oral doses
# enter as their mean input rate ("averaged"): measured on the 120-patient benchmark, 279 s
# and max |z| 1.16 against 1,092 s and 1.10 with the doses one by one.
FIT_SOLVER = {"solver": "tsit5", "rtol": 1e-6, "atol": 1e-9, "max_steps": 4096, "oral_doses": "averaged"}
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo (defaults: the full run, minutes on a 2-core CPU).

    Attributes:
        per_arm: patients per arm of the synthetic trial. weeks: follow-up (weeks).
        max_iterations: FOCE-I's BFGS iterations at most (the full demo converges in ~20).
        draws: parameter draws from the estimate's asymptotic normal, kept for simulation.
        sir_samples: with more than 0, the draws come instead from sampling importance
            resampling of this many proposals from that normal (PsN's ``sir``; ``draws``
            resamples), one OFV each, and the estimates gain SIR's 95% intervals.
        vpc_draws: replicate trials for the VPC and NPD.
        trial_draws, trial_patients: posterior draws and virtual patients per arm and draw of
            the arm comparison.
        seed: seed of everything (data, fit, report, trial).
    """

    per_arm: int = 60
    weeks: float = 52.0
    max_iterations: int = 100
    draws: int = 50
    sir_samples: int = 0
    vpc_draws: int = 40
    trial_draws: int = 20
    trial_patients: int = 150
    seed: int = 1


def demo_spec():
    """The population that generates the demo's data: ``itp_v1`` with the calibrated values."""
    from .spec import load_spec
    from .trial.calibration import load_calibration

    return load_spec(ROOT / "models" / "itp_v1.toml").with_values(*load_calibration())


def true_population_values(spec=None, estimate=ESTIMATE, random_effects=RANDOM_EFFECTS) -> dict[str, float]:
    """The fitted population values that made the data, named as in ``estimates.csv``:
    ``pop_<name>`` (typical values), ``omega2_<name>`` (IIV variances), ``sigma_<output>``."""
    spec = demo_spec() if spec is None else spec
    truth = {f"pop_{name}": spec.parameter(name).value for name in estimate}
    truth.update({f"omega2_{name}": spec.parameter(name).iiv.sd ** 2 for name in random_effects})
    for o in spec.observations:
        for field_name, value, _ in o.sigmas:
            truth[f"sigma_{o.name}" if len(o.sigmas) == 1 else f"{field_name}_{o.name}"] = value
    return truth


def simulate_demo_trial(spec, arms, per_arm: int, visits, *, seed: int, expand_doses: bool = True,
                        random_effects=RANDOM_EFFECTS):
    """``(dataset, truth)``: the trial that the demo's model describes (``simulate_trial_dataset``).

    The model that is fitted made the data, so the estimates can be judged against the truth:
    the patients differ only in ``random_effects`` (every other parameter at its typical value);
    platelets and B cells (OUTPUTS) are measured at every visit; and there is no entry limit
    on the baseline count (NCT07057778's < 30 cuts the top off PLT0's log-normal, which the
    model does not describe: measured, typical PLT0 14.8 against a true 16 with the limit).
    With every IIV of the spec instead (11 parameters), a fit with these random effects is
    misspecified: FOCE-I went from the prior medians towards KB 5.6/day, omega_KB 3.2."""
    from .structural import model_from_spec
    from .trial.dataset import simulate_trial_dataset

    omega = {p.name: 0.0 for p in spec.parameters if p.iiv is not None and p.name not in random_effects}
    return simulate_trial_dataset(spec, model_from_spec(spec), arms, per_arm, visits, seed=seed, omega=omega,
                                  outputs=OUTPUTS, entry_platelets=None, expand_doses=expand_doses)


def write_demo_data(folder: Path, settings: DemoSettings) -> tuple[Path, pd.DataFrame]:
    """Simulate the synthetic trial; write ``nct07057778_synthetic.csv`` and ``truth.csv``."""
    from .data import write_nonmem
    from .trial import make_arm
    from .trial.design import trial_visits

    arms = {name: make_arm(name) for name in TRIAL_ARMS}
    dataset, truth = simulate_demo_trial(demo_spec(), arms, settings.per_arm, trial_visits(settings.weeks),
                                         seed=settings.seed, expand_doses=False)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "nct07057778_synthetic.csv"
    write_nonmem(dataset, path)
    truth = pd.DataFrame({"ID": np.arange(1, 2 * settings.per_arm + 1), **truth})
    truth.to_csv(folder / "truth.csv", index=False, float_format="%.6g")
    return path, truth


def draws_text(settings: DemoSettings) -> str:
    """The recipe's lines on the parameter draws: the asymptotic normal, or SIR."""
    if settings.sir_samples > 0:
        return (f"# Parameter draws for the virtual trials: {settings.draws} by sampling importance resampling\n"
                f"# (PsN's sir) of {settings.sir_samples} proposals from the asymptotic normal, one OFV each.\n"
                f"sir = true\nsir_samples = {settings.sir_samples}\nsir_resamples = {settings.draws}\n")
    return ("# Parameter draws for the virtual trials: from the asymptotic normal of the estimate. SIR\n"
            "# (sir = true: PsN's sampling importance resampling) costs one OFV per proposal\n"
            "# (itp-pd demo --sir N).\n"
            f"draws = {settings.draws}\n")


def write_demo_recipe(folder: Path, data_path: Path, settings: DemoSettings) -> Path:
    """The demo's fit recipe (TOML) in ``folder``; the data path is relative to it, so the
    folder can be moved (the demo writes into a staging folder that is renamed at the end)."""
    from .inference import file_sha256

    solver = ", ".join(f"{k} = {json.dumps(v)}" for k, v in FIT_SOLVER.items())
    text = f"""# The itp-pd demo's fit (written by `itp-pd demo`; see itp_pd/demo.py).
# FOCE-I from the spec's prior medians, then the covariance step. Other estimators of the same
# model: itp-pd fit <this file> --method laplace (or nuts, which wants a GPU for this model).

[fit]
name = "fit"
method = "focei"
seed = {settings.seed}

[data]
path = {json.dumps(Path(data_path).relative_to(folder).as_posix())}
sha256 = "{file_sha256(data_path)}"

[model]
spec = {json.dumps(str(ROOT / "models" / "itp_v1.toml"))}
values = {json.dumps(str(ROOT / "fits" / "itp_v1_calibration.toml"))}
estimate = {json.dumps(list(ESTIMATE))}
random_effects = {json.dumps(list(RANDOM_EFFECTS))}
solver = {{ {solver} }}

[focei]
max_iterations = {settings.max_iterations}
covariance = "sandwich"
{draws_text(settings)}"""
    path = Path(folder) / "fit.toml"
    path.write_text(text)
    return path


@dataclass
class DemoResult:
    """Where the demo put things, its estimates (``estimates.csv`` with a ``truth`` column), its
    comparison table and how long each phase took (s)."""

    folder: Path
    report: Path
    posterior: Path
    comparison: pd.DataFrame
    estimates: pd.DataFrame
    truth: dict
    timings: dict
    converged: bool = False
    convergence_message: str = ""


def run_demo(folder: str | Path, settings: DemoSettings = DemoSettings(), *, progress: bool = True,
             say=print) -> DemoResult:
    """Run the whole demo into ``folder`` (which must be new or empty; see the module docstring).

    Files: ``data/nct07057778_synthetic.csv`` and ``data/truth.csv``; ``fit.toml`` and ``fit/``
    (``posterior.nc`` with the parameter draws, ``estimates.csv``, ``individual.csv``, ``residuals.csv``,
    ``diagnostics.json``, ``manifest.json``);
    ``report/index.html`` and its figures; ``trial/`` (endpoints per draw and arm, figures);
    ``comparison.csv``; ``demo.json`` (settings and timings).
    """
    from .diagnostics import ReportSettings, load_fit, write_report
    from .inference import fit, recipe_spec, write_fit
    from .trial import TrialDesign, compare, make_arm, posterior_population, simulate_trial
    from .runtime import progress_bar
    from .trial.plots import plot_response_over_time

    folder = Path(folder)
    arms = {name: make_arm(name) for name in (*TRIAL_ARMS, *ALTERNATIVES)}  # fail before minutes of work
    timings = {}
    started = time.perf_counter()
    say(f"[1/4] simulating a synthetic NCT07057778: {2 * settings.per_arm} patients, both arms, "
        f"{settings.weeks:g} weeks")
    data_path, _ = write_demo_data(folder / "data", settings)
    timings["data_s"] = time.perf_counter() - started

    say(f"[2/4] fitting it: FOCE-I ({', '.join(ESTIMATE)} estimated; IIV on "
        f"{', '.join(RANDOM_EFFECTS)}; residual error)")
    phase = time.perf_counter()
    recipe_path = write_demo_recipe(folder, data_path, settings)
    result = fit(recipe_path, progress=progress)
    fit_dir = write_fit(result, folder / "fit")
    timings["fit_s"] = time.perf_counter() - phase
    converged = bool(result.diagnostics.get("converged", False))
    message = str(result.diagnostics.get("convergence_message", ""))
    if not converged:
        say(f"NOT CONVERGED: the demo's fit ({message}); what follows shows the workflow, "
            "its numbers are not findings")

    say(f"[3/4] writing the diagnostic report ({settings.vpc_draws} replicate trials for the VPC)")
    phase = time.perf_counter()
    finished = load_fit(fit_dir)
    report = write_report(finished, folder / "report",
                          ReportSettings(vpc_draws=settings.vpc_draws, seed=settings.seed), progress=progress)
    timings["report_s"] = time.perf_counter() - phase

    say(f"[4/4] virtual trials from the fit's parameter draws: {settings.trial_draws} draws × {settings.trial_patients} "
        f"patients × {len(arms)} arms")
    phase = time.perf_counter()
    key = jax.random.PRNGKey(settings.seed)
    source_key, trial_key = jax.random.split(key)
    available = int(result.idata.posterior.sizes["chain"] * result.idata.posterior.sizes["draw"])
    if available < settings.trial_draws:  # a failed covariance step leaves the estimate alone
        say(f"the fit holds {available} parameter draw(s) ({result.diagnostics.get('draws_from', '')}); "
            f"the virtual trials use {'them' if available > 1 else 'it'}, not {settings.trial_draws}")
    source = posterior_population(result.idata, recipe_spec(result.recipe), min(available, settings.trial_draws),
                                  key=source_key,
                                  description="demo FOCE-I parameter draws")
    bar = progress_bar(source.n_draws * settings.trial_patients * len(arms), "virtual trials", enabled=progress)
    trial = simulate_trial(source, arms, TrialDesign(n_per_arm=settings.trial_patients,
                                                           follow_up_weeks=settings.weeks),
                           key=trial_key, progress=lambda done: bar.update(done - bar.n))
    bar.close()
    (folder / "trial").mkdir(exist_ok=True)
    trial.table.to_csv(folder / "trial" / "endpoints.csv", index=False, float_format="%.6g")
    plot_response_over_time(trial, folder / "trial" / "response_over_time.png")
    comparison = pd.concat([compare(trial, arm, "control").assign(comparison=f"{arm} vs control")
                            for arm in list(arms)[1:]], ignore_index=True)
    comparison.to_csv(folder / "comparison.csv", index=False, float_format="%.6g")
    timings["trial_s"] = time.perf_counter() - phase
    timings["total_s"] = time.perf_counter() - started

    truth_summary = true_population_values()
    (folder / "demo.json").write_text(json.dumps({"settings": asdict(settings),
                                                  "timings_s": {k: round(v, 1) for k, v in timings.items()},
                                                  "truth": truth_summary, "converged": converged,
                                                  "convergence_message": message}, indent=2) + "\n")
    estimates = result.tables["estimates"].copy()
    estimates["truth"] = [truth_summary.get(name, float("nan")) for name in estimates["parameter"]]
    return DemoResult(folder, report, fit_dir / "posterior.nc", comparison, estimates, truth_summary, timings,
                      converged, message)

