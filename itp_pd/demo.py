"""The built-in demo: a synthetic NCT07057778 → a hierarchical fit → its report → arm comparisons.

``run_demo(folder)`` does, in order, what a pharmacometrician would do with the real trial:

1. **Data.** 120 virtual patients (60 per arm) of the calibrated default population
   (``models/itp_v1.toml`` + ``fits/itp_v1_calibration.toml``, iguratimod's effects at the
   spec's values), dosed as NCT07057778 (rituximab 100 mg weekly ×6, with or without
   iguratimod 25 mg twice daily for 26 weeks) and measured at the trial's 25 visits with the
   spec's residual error. Written as a NONMEM-format CSV (internal units: days, mg, 10⁹/L)
   with the true individual parameters beside it.
2. **Fit.** A recipe written next to the data and fitted by ``itp_pd.inference.fit``:
   iguratimod's maximal inhibition of plasma-cell formation (IMAX_PC, what the comparison
   between arms informs) is estimated, with random effects on PLT0, KB, FL and FT (their
   omegas estimated: the calibrated population's main between-patient variability) and the
   residual error; every typical value but IMAX_PC stays at its calibrated value (a free
   typical PLT0 trades off against the 120 patients' PLT0 deviations along a ridge that a few
   hundred SVI steps do not cross: it ended at 25 against a true 16). Quick settings:
   mean-field SVI, 100 steps, so the demo runs in about 10 minutes on a 2-core CPU; the
   report shows what that buys. A real analysis runs NUTS (``itp-pd fit <recipe> --method
   nuts``, on a GPU for this model).
3. **Report.** ``itp_pd.diagnostics.write_report`` on the fit folder.
4. **Comparison.** The posterior's population draws give virtual trials of the two arms and two
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
ESTIMATE = ("IMAX_PC",)
RANDOM_EFFECTS = ("PLT0", "KB", "FL", "FT")
FIT_SOLVER = {"solver": "tsit5", "rtol": 1e-4, "atol": 1e-7, "max_steps": 512}
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo (defaults: the 10-minute run on a 2-core CPU).

    Attributes:
        per_arm: patients per arm of the synthetic trial. weeks: follow-up (weeks).
        steps, learning_rate, draws: SVI steps, Adam step size, posterior draws kept.
        vpc_draws: replicate trials for the VPC and NPD.
        trial_draws, trial_patients: posterior draws and virtual patients per arm and draw of
            the arm comparison.
        seed: seed of everything (data, fit, report, trial).
    """

    per_arm: int = 60
    weeks: float = 52.0
    steps: int = 100
    learning_rate: float = 0.03
    draws: int = 50
    vpc_draws: int = 40
    trial_draws: int = 20
    trial_patients: int = 150
    seed: int = 1


def demo_spec():
    """The population that generates the demo's data: ``itp_v1`` with the calibrated values."""
    from .spec import load_spec
    from .trial.calibration import load_calibration

    return load_spec(ROOT / "models" / "itp_v1.toml").with_values(*load_calibration())


def true_population_values() -> dict[str, float]:
    """The fitted sites' true values (the generating population), by site name."""
    from .stats.model import sigma_sites

    spec = demo_spec()
    truth = {f"pop_{name}": spec.parameter(name).value for name in ESTIMATE}
    truth.update({f"omega_{name}": spec.parameter(name).iiv.sd for name in RANDOM_EFFECTS})
    for _, site, value, _ in sigma_sites(spec.observation(1)):
        truth[site] = value
    return truth


def write_demo_data(folder: Path, settings: DemoSettings) -> tuple[Path, pd.DataFrame]:
    """Simulate the synthetic trial; write ``nct07057778_synthetic.csv`` and ``truth.csv``."""
    from .data import write_nonmem
    from .structural import model_from_spec
    from .trial import make_arm
    from .trial.dataset import simulate_trial_dataset
    from .trial.design import trial_visits

    spec = demo_spec()
    arms = {name: make_arm(name) for name in TRIAL_ARMS}
    dataset, truth = simulate_trial_dataset(spec, model_from_spec(spec), arms, settings.per_arm,
                                            trial_visits(settings.weeks), seed=settings.seed, expand_doses=False)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "nct07057778_synthetic.csv"
    write_nonmem(dataset, path)
    truth = pd.DataFrame({"ID": np.arange(1, 2 * settings.per_arm + 1), **truth})
    truth.to_csv(folder / "truth.csv", index=False, float_format="%.6g")
    return path, truth


def write_demo_recipe(folder: Path, data_path: Path, settings: DemoSettings) -> Path:
    """The demo's fit recipe (TOML) in ``folder``; the data path is relative to it, so the
    folder can be moved (the demo writes into a staging folder that is renamed at the end)."""
    from .inference import file_sha256

    solver = ", ".join(f"{k} = {json.dumps(v)}" for k, v in FIT_SOLVER.items())
    text = f"""# The itp-pd demo's fit (written by `itp-pd demo`; see itp_pd/demo.py).
# Quick settings: mean-field SVI. For a final analysis: itp-pd fit <this file> --method nuts

[fit]
name = "fit"
method = "svi"
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

[svi]
guide = "meanfield"
steps = {settings.steps}
learning_rate = {settings.learning_rate}
draws = {settings.draws}
"""
    path = Path(folder) / "fit.toml"
    path.write_text(text)
    return path


@dataclass
class DemoResult:
    """Where the demo put things, its comparison table and how long each phase took (s)."""

    folder: Path
    report: Path
    posterior: Path
    comparison: pd.DataFrame
    fit_summary: pd.DataFrame
    truth: dict
    timings: dict
    converged: bool = False
    convergence_message: str = ""


def run_demo(folder: str | Path, settings: DemoSettings = DemoSettings(), *, progress: bool = True,
             say=print) -> DemoResult:
    """Run the whole demo into ``folder`` (which must be new or empty; see the module docstring).

    Files: ``data/nct07057778_synthetic.csv`` and ``data/truth.csv``; ``fit.toml`` and ``fit/``
    (``posterior.nc``, ``summary.csv``, ``diagnostics.json``, ``losses.csv``, ``manifest.json``);
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

    say(f"[2/4] fitting it: SVI, {settings.steps} steps ({', '.join(ESTIMATE)} estimated; IIV on "
        f"{', '.join(RANDOM_EFFECTS)}; residual error)")
    phase = time.perf_counter()
    recipe_path = write_demo_recipe(folder, data_path, settings)
    result = fit(recipe_path, progress=progress)
    fit_dir = write_fit(result, folder / "fit")
    timings["fit_s"] = time.perf_counter() - phase
    converged = bool(result.diagnostics.get("converged", False))
    message = str(result.diagnostics.get("convergence_message", ""))
    if not converged:
        say(f"NOT CONVERGED: the demo's quick fit ({message}); what follows shows the workflow, "
            "its numbers are not findings")

    say(f"[3/4] writing the diagnostic report ({settings.vpc_draws} replicate trials for the VPC)")
    phase = time.perf_counter()
    finished = load_fit(fit_dir)
    report = write_report(finished, folder / "report",
                          ReportSettings(vpc_draws=settings.vpc_draws, seed=settings.seed), progress=progress)
    timings["report_s"] = time.perf_counter() - phase

    say(f"[4/4] virtual trials from the posterior: {settings.trial_draws} draws × {settings.trial_patients} "
        f"patients × {len(arms)} arms")
    phase = time.perf_counter()
    key = jax.random.PRNGKey(settings.seed)
    source_key, trial_key = jax.random.split(key)
    source = posterior_population(result.idata, recipe_spec(result.recipe), settings.trial_draws, key=source_key,
                                  description="demo posterior")
    bar = progress_bar(settings.trial_draws * settings.trial_patients * len(arms), "virtual trials", enabled=progress)
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
    return DemoResult(folder, report, fit_dir / "posterior.nc", comparison, result.summary, truth_summary, timings,
                      converged, message)

