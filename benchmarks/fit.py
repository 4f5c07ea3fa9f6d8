"""Fitting benchmark: NUTS and SVI on a simulated NCT07057778 trial with the ITP model.

``--patients`` patients (both arms 1:1: rituximab 100 mg weekly ×6, with or without
iguratimod 25 mg twice daily for 26 weeks) are drawn from the calibrated default population
(``models/itp_v1.toml`` with ``fits/itp_v1_calibration.toml``), differing only in the
fitted random effects, and their platelet counts (the spec's 20% proportional error) and
CD20+ B cells measured at the trial visits over one year (``trial_visits()``, 24 visits);
``simulated_trial`` says why. The fit estimates the typical values these data inform, PLT0
(baseline), FL (long-lived plasma-cell share: non-response) and KB (B-cell return: relapse),
with IIV on PLT0 and KB, and the platelets' residual sd; everything else, iguratimod's IMAX_PC
among it (itp_pd/demo.py says why), is fixed at its
calibrated value. Solver for fitting: Tsit5, rtol 1e-4, atol 1e-7, at most 512 steps per segment (the counts
carry 20% error, so 1e-4 relative solver error is immaterial, and it halves the gradient cost
against 1e-6; see FIT_SOLVER for the step cap).

Timed: NUTS (``--chains`` vectorised chains, ``--warmup`` + ``--draws``, dense mass, started
from a MAP fit of ``--map-steps``), its compile time, bulk ESS per second (minimum over
population parameters), max R-hat, divergences and solver failures; SVI (low-rank guide,
``--svi-steps``) wall time and the largest relative difference of its posterior means of the
population parameters from the NUTS means. ``--gradient-repeats`` also times one gradient of
the log density (median of repeats), the unit every method pays for.

With ``--method focei`` (or ``laplace``) it times instead the maximum-likelihood fit from the
prior medians (``itp_pd.estimation``), ``--repeats`` times (median wall; the persistent
compilation cache is on, so the first run pays the compilation and the others reuse it), and
reports the objective, convergence, the covariance step and ``max_abs_z`` = the largest
|estimate − truth| / SE over the population parameters; then SVI with as many steps as the
FOCE-I fit made model solves, for comparison. Written to ``benchmarks/results/fit_<method>.json``.

    python benchmarks/fit.py                       # the issue's protocol: 120 patients, 4×(500+500)
    python benchmarks/fit.py --method focei        # 120 patients, FOCE-I, median of 3 runs
    python benchmarks/fit.py --warmup 10 --draws 10 --chains 1 --max-tree-depth 5 --out /tmp/fit.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import environment, write_figures  # noqa: E402

# The design is the demo's (itp_pd/demo.py says why each parameter is or is not estimated):
# typical PLT0, FL and KB; random effects on PLT0 and KB; platelets and B cells measured.
from itp_pd.demo import ESTIMATE as ESTIMATED  # noqa: E402
from itp_pd.demo import OUTPUTS, RANDOM_EFFECTS, simulate_demo_trial, true_population_values  # noqa: E402, F401

# max_steps 512 per segment: a typical patient needs < 250 between visits 4 weeks apart
# (stability-bound steps of ~0.14 day); extreme proposals then fail in seconds instead of
# running 4,096 steps in each of ~390 segments (measured: 3 min per NUTS iteration early in
# warm-up with the default).
FIT_SOLVER = (("atol", 1e-7), ("max_steps", 512), ("rtol", 1e-4), ("solver", "tsit5"))


def simulated_trial(n_patients: int, seed: int, iiv: str = "fitted", random_effects=RANDOM_EFFECTS):
    """``(spec, dataset, truth)``: the calibrated population's trial.

    ``iiv="fitted"``: the demo's trial (``itp_pd.demo.simulate_demo_trial``), which the fitted
    model made (random effects ``random_effects``), so its estimates can be judged against the truth. ``"all"``: the earlier data,
    every IIV of the spec (11 parameters), platelets only, the entry limit; a misspecified fit
    (measured: FOCE-I went from the prior medians towards KB 5.6/day, omega_KB 3.2, IMAX_PC ~1)."""
    from itp_pd.spec import load_spec
    from itp_pd.structural import model_from_spec
    from itp_pd.trial.calibration import load_calibration
    from itp_pd.trial.dataset import simulate_trial_dataset
    from itp_pd.trial.design import nct07057778_arms, trial_visits

    typical, omega = load_calibration()
    spec = load_spec(ROOT / "models" / "itp_v1.toml").with_values(typical, omega)
    arms = {name: arm for name, arm in nct07057778_arms().items() if name in ("control", "combination")}
    if iiv == "all":
        dataset, truth = simulate_trial_dataset(spec, model_from_spec(spec), arms, n_patients // 2, trial_visits(),
                                                seed=seed)
    else:
        dataset, truth = simulate_demo_trial(spec, arms, n_patients // 2, trial_visits(), seed=seed,
                                             random_effects=random_effects)
    return spec, dataset, truth


def recipe(options, method):
    from itp_pd.inference import FitRecipe, MapSettings, NutsSettings, SviSettings

    return FitRecipe(
        name="benchmark_itp", method=method, seed=options.seed, data_path=Path("<simulated>"), data_sha256=None,
        spec_path=ROOT / "models" / "itp_v1.toml", estimate=options.estimate, random_effects=options.random_effects,
        solver=FIT_SOLVER,
        nuts=NutsSettings(chains=options.chains, warmup=options.warmup, draws=options.draws,
                          max_tree_depth=options.max_tree_depth, init="map"),
        svi=SviSettings(guide="lowrank", steps=options.svi_steps, learning_rate=0.01, draws=options.svi_draws),
        map=MapSettings(steps=options.map_steps, learning_rate=0.02),
    )


def gradient_seconds(spec, dataset, fit_recipe, repeats, *, split: bool = True) -> dict:
    """One log-density gradient at the prior medians: ``{"s": median wall of ``repeats`` calls
    after the first, "first_call_s": the first call (tracing + compiling + one run),
    "devices": devices it ran on}``. ``split``: the patients split over every device (what a fit
    does, ``spread_over_devices``); else on one device, the baseline."""
    import jax.numpy as jnp
    from numpyro.infer.util import log_density

    from itp_pd.engine import patient_mesh
    from itp_pd.inference import recipe_spec, recipe_structural
    from itp_pd.inference.samplers import _latent_values
    from itp_pd.stats import build_model

    fitted = recipe_spec(fit_recipe, spec)
    model, _, observed = build_model(fitted, dataset, structural=recipe_structural(fit_recipe, fitted),
                                     random_effects=fit_recipe.random_effects)
    devices = len(jax.devices()) if split else 1
    if devices > 1:
        model = model.with_mesh(patient_mesh())
    obs = jnp.asarray(observed.value)
    values = _latent_values(model, model.data, obs, jax.random.PRNGKey(0))
    with jax.numpy_dtype_promotion("standard"):
        gradient = jax.jit(jax.grad(lambda v: log_density(model, (), {"obs": obs}, v)[0]))
        start = time.perf_counter()
        jax.block_until_ready(gradient(values))
        first = time.perf_counter() - start
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            jax.block_until_ready(gradient(values))
            times.append(time.perf_counter() - start)
    return {"s": statistics.median(times), "runs_s": times, "first_call_s": first, "devices": devices}


def marginal_benchmark(options, spec, dataset) -> dict:
    """FOCE-I/Laplace on the simulated trial, ``options.repeats`` times; then SVI to the same
    number of model solves."""
    import dataclasses

    from itp_pd.inference import FoceiSettings, fit
    from itp_pd.runtime import enable_compilation_cache

    enable_compilation_cache(options.cache)
    if options.log is not None:
        import logging

        handler = logging.FileHandler(options.log)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logging.getLogger("itp_pd.estimation").addHandler(handler)
        logging.getLogger("itp_pd.estimation").setLevel(logging.DEBUG)
    base = recipe(options, options.method)
    # Maximum likelihood needs a smooth objective: the solver's relative tolerance sets how many
    # digits of the OFV and its gradient are real (NUTS's 1e-4 leaves the BFGS line search noise).
    # And more steps: FIT_SOLVER's 512 per segment is sized for rtol 1e-4; at 1e-6 Tsit5 needs
    # about 2.5x as many (steps scale as rtol^(-1/5)), and a patient over the cap is a failed solve.
    solver = dict(base.solver, rtol=options.rtol, atol=options.rtol * 1e-3, max_steps=4096, oral_doses=options.oral_doses)
    fit_recipe = dataclasses.replace(base, solver=tuple(sorted(solver.items())),
                                     focei=FoceiSettings(max_iterations=options.max_iterations,
                                                         covariance=options.covariance, draws=options.focei_draws,
                                                         hessian_start=options.hessian_start,
                                                         sir=options.sir_samples > 0,
                                                         sir_samples=max(options.sir_samples, 1),
                                                         sir_resamples=options.sir_resamples))
    walls, result = [], None
    for _ in range(options.repeats):
        started = time.perf_counter()
        result = fit(fit_recipe, dataset=dataset, spec=spec, progress=not options.quiet)
        # The fit's wall time; SIR (when asked for) is timed apart, in "sir".
        walls.append(time.perf_counter() - started - result.diagnostics.get("sir", {}).get("run_s", 0.0))
    d = result.diagnostics
    truth = true_population_values(spec, options.estimate, options.random_effects)
    table = result.tables["estimates"].set_index("parameter")
    z = {name: abs(table.loc[name, "estimate"] - value) / table.loc[name, "se"]
         for name, value in truth.items() if name in table.index}
    figures = {
        "patients": options.patients, "method": options.method, "wall_s": statistics.median(walls),
        "wall_s_runs": walls, "compile_s": walls[0] - statistics.median(walls[1:]) if len(walls) > 1 else None,
        "outer_iterations": d["outer_iterations"], "objective_evaluations": d["objective_evaluations"],
        "model_solves": d["model_solves"], "ofv": d["ofv"], "converged": d["converged"],
        "convergence_message": d["convergence_message"], "covariance_step_ok": d["covariance_step"]["ok"],
        "covariance_step": d["covariance_step"], "max_abs_z": max(z.values()) if z else None,
        "z": z, "truth": truth, "estimates": table["estimate"].to_dict(), "se": table["se"].to_dict(),
        "inside95": {name: bool(table.loc[name, "lower95"] <= value <= table.loc[name, "upper95"])
                     for name, value in truth.items() if name in table.index},
        "device": d["device"], "estimated": list(options.estimate), "random_effects": list(options.random_effects),
        "solver": dict(fit_recipe.solver), "simulated_iiv": options.simulated_iiv, "environment": environment(),
    }
    if "sir" in d:  # SIR's cost, its importance ESS and its intervals (percentiles of the resamples)
        figures["sir"] = dict(d["sir"], intervals={
            name: [float(table.loc[name, "sir_lower95"]), float(table.loc[name, "sir_upper95"])]
            for name in truth if name in table.index and "sir_lower95" in table.columns})
        figures["sir"]["inside95"] = {name: bool(low <= truth[name] <= high)
                                      for name, (low, high) in figures["sir"]["intervals"].items()}
    return figures


def svi_comparison(options, spec, dataset, figures) -> dict:
    """SVI with as many steps as the FOCE-I/Laplace fit made model solves (``figures``)."""
    import dataclasses

    from itp_pd.inference import fit

    steps = max(1, int(figures["model_solves"]))
    svi_recipe = dataclasses.replace(recipe(options, "svi"), svi=dataclasses.replace(
        recipe(options, "svi").svi, steps=steps, draws=options.svi_draws))
    started = time.perf_counter()
    svi = fit(svi_recipe, dataset=dataset, spec=spec, progress=False)
    figures.update(svi_steps=steps, svi_wall_s=time.perf_counter() - started,
                   svi_converged=svi.diagnostics["converged"], svi_means=svi.summary["mean"].to_dict())
    return figures


def parse_options(args=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=120)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--max-tree-depth", type=int, default=10)
    parser.add_argument("--map-steps", type=int, default=500)
    parser.add_argument("--svi-steps", type=int, default=2000)
    parser.add_argument("--svi-draws", type=int, default=200, help="posterior draws taken from the SVI guide")
    parser.add_argument("--gradient-repeats", type=int, default=5)
    parser.add_argument("--skip-nuts", action="store_true", help="time the gradient and SVI only")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--method", choices=("nuts", "focei", "laplace"), default="nuts",
                        help="nuts: the NUTS/SVI protocol; focei/laplace: the maximum-likelihood fit")
    parser.add_argument("--repeats", type=int, default=3, help="FOCE-I/Laplace runs (median wall)")
    parser.add_argument("--max-iterations", type=int, default=200, help="FOCE-I/Laplace BFGS iterations at most")
    parser.add_argument("--covariance", choices=("sandwich", "r", "none"), default="sandwich")
    parser.add_argument("--focei-draws", type=int, default=200)
    parser.add_argument("--sir-samples", type=int, default=0,
                        help="FOCE-I/Laplace: SIR after the fit with this many proposals (0: none; PsN's "
                             "default is 1000), timed apart from the fit")
    parser.add_argument("--sir-resamples", type=int, default=200)
    parser.add_argument("--rtol", type=float, default=1e-6, help="FOCE-I/Laplace solver rtol (atol = rtol/1000)")
    parser.add_argument("--hessian-start", choices=("bhhh", "differences"), default="differences",
                        help="FOCE-I/Laplace: BFGS's first inverse Hessian ([focei] hessian_start)")
    parser.add_argument("--oral-doses", choices=("exact", "averaged"), default="exact",
                        help="FOCE-I/Laplace: iguratimod's doses one by one, or as their mean rate (model option)")
    parser.add_argument("--simulated-iiv", choices=("fitted", "all"), default="fitted",
                        help="the simulated patients differ in the fitted random effects only, or in every "
                             "IIV of the spec (which the fit does not model)")
    names = lambda text: tuple(name.strip() for name in text.split(",") if name.strip())  # noqa: E731
    parser.add_argument("--estimate", type=names, default=ESTIMATED,
                        help=f"typical values estimated, comma-separated (default {','.join(ESTIMATED)})")
    parser.add_argument("--random-effects", type=names, default=RANDOM_EFFECTS,
                        help="random effects, comma-separated; the simulated patients differ in these "
                             f"(with --simulated-iiv fitted; default {','.join(RANDOM_EFFECTS)})")
    parser.add_argument("--cache", type=Path, default=None, help="compilation cache folder (default itp-pd's)")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--log", type=Path, default=None,
                        help="FOCE-I/Laplace: write a line per objective evaluation (time, inner iterations) here")
    parser.add_argument("--out", type=Path, default=None,
                        help="default benchmarks/results/fit.json, or fit_<method>.json for focei/laplace")
    return parser.parse_args(args)


def main(args=None):
    import dataclasses

    from itp_pd.inference import fit

    options = parse_options(args)
    spec, dataset, truth = simulated_trial(options.patients, options.seed, options.simulated_iiv,
                                           options.random_effects)
    if options.method != "nuts":
        out = options.out or ROOT / "benchmarks" / "results" / f"fit_{options.method}.json"
        figures = marginal_benchmark(options, spec, dataset)
        write_figures(figures, out)  # kept if the SVI comparison is interrupted
        figures = svi_comparison(options, spec, dataset, figures)
        write_figures(figures, out)
        print(f"{options.method}: {options.patients} patients, median wall {figures['wall_s']:.1f} s, "
              f"converged {figures['converged']}, covariance step ok {figures['covariance_step_ok']}, "
              f"max |z| {figures['max_abs_z']}; SVI with {figures['svi_steps']} steps {figures['svi_wall_s']:.1f} s")
        return figures
    options.out = options.out or ROOT / "benchmarks" / "results" / "fit.json"
    figures = {"patients": options.patients, "chains": options.chains, "warmup": options.warmup,
               "draws": options.draws, "max_tree_depth": options.max_tree_depth,
               "estimated": list(options.estimate), "random_effects": list(options.random_effects),
               "solver": dict(FIT_SOLVER)}
    # The baseline (one device) and the default (patients split over every core), same run.
    baseline = gradient_seconds(spec, dataset, recipe(options, "svi"), options.gradient_repeats, split=False)
    split = gradient_seconds(spec, dataset, recipe(options, "svi"), options.gradient_repeats, split=True)
    svi_recipe = recipe(options, "svi")
    averaged_recipe = dataclasses.replace(svi_recipe, solver=tuple(sorted({**dict(svi_recipe.solver),
                                                                            "oral_doses": "averaged"}.items())))
    averaged = gradient_seconds(spec, dataset, averaged_recipe, options.gradient_repeats, split=True)
    figures.update(gradient_s=split["s"], gradient_baseline_s=baseline["s"],
                   gradient_speedup=baseline["s"] / split["s"], gradient_devices=split["devices"],
                   gradient_runs_s=split["runs_s"], gradient_baseline_runs_s=baseline["runs_s"],
                   gradient_first_call_s=split["first_call_s"],
                   gradient_baseline_first_call_s=baseline["first_call_s"],
                   gradient_averaged_oral_doses_s=averaged["s"],
                   gradient_averaged_oral_doses_speedup=baseline["s"] / averaged["s"])
    print(f"one log-density gradient, {options.patients} patients: {split['s']:.3f} s on {split['devices']} "
          f"device(s); {baseline['s']:.3f} s on one ({figures['gradient_speedup']:.2f}x); "
          f"{averaged['s']:.3f} s with averaged oral doses", flush=True)

    started = time.perf_counter()
    svi = fit(recipe(options, "svi"), dataset=dataset, spec=spec)
    figures["svi_wall_s"] = time.perf_counter() - started
    figures["svi_run_s"] = svi.diagnostics["run_s"]
    figures["svi_means"] = svi.summary["mean"].to_dict()
    figures["svi_solver_failures"] = svi.diagnostics["solver_failures"]
    figures["device"] = svi.diagnostics["device"]
    figures["environment"] = environment()
    write_figures(figures, options.out)  # kept if NUTS is interrupted

    if not options.skip_nuts:
        started = time.perf_counter()
        nuts = fit(recipe(options, "nuts"), dataset=dataset, spec=spec)
        figures["nuts_wall_s"] = time.perf_counter() - started
        d = nuts.diagnostics
        figures.update(compile_s=d["compile_s"], nuts_sampling_s=d["run_s"], min_bulk_ess_per_s=d["min_bulk_ess_per_s"],
                       max_rhat=d["max_rhat"], divergences=d["divergences"], solver_failures=d["solver_failures"],
                       mean_leapfrog_steps=float(nuts.draws.sample_stats["n_steps"].mean()),
                       nuts_means=nuts.summary["mean"].to_dict())
        relative = (svi.summary["mean"] - nuts.summary["mean"]).abs() / nuts.summary["mean"].abs()
        figures["svi_max_rel_diff_means"] = float(relative.max())
        write_figures(figures, options.out)


if __name__ == "__main__":
    from itp_pd.runtime import use_every_core

    use_every_core()  # one XLA device per core, as every entry point (before JAX starts)
    jax.config.update("jax_enable_x64", True)
    main()
