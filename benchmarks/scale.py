"""Scale benchmark: simulation throughput over batch sizes, and a packed bootstrap.

1. **Throughput.** Virtual trials of N patients (half on each NCT07057778 arm: rituximab
   100 mg weekly ×6, with or without iguratimod 25 mg twice daily for 26 weeks), followed one
   year: N patient-years, simulated with ``simulate_trial`` (one population draw; patients
   sampled, solved in batches of at most ``BATCH_PATIENTS``, measured, scored). A warm-up run
   of one batch compiles the programs first; the figure is the median wall time of
   ``--repeats`` runs (a single run where one run exceeds ``--single-run-over`` seconds).
   Peak RSS after each size shows whether memory stays bounded as N grows.
2. **Bootstrap.** MAP refits of case-bootstrap replicates (patients resampled with
   replacement) of the 120-patient benchmark dataset of ``benchmarks/fit.py`` (same estimated
   parameters, random effects and solver): one after another through one compiled program,
   and packed into one program (``vmap`` over replicates). Both start from the same point and
   take the same steps; the estimates' largest relative difference is recorded. Seconds
   exclude compilation, which is recorded apart.
3. ``--crossover`` (only with a GPU): simulation wall time of B patients on the CPU and on
   the GPU for B = 64 … 8,192, and the smallest B where the GPU wins: the value for
   ``itp_pd.devices.GPU_MIN_BATCH``.

    python benchmarks/scale.py                         # → benchmarks/results/scale.json
    python benchmarks/scale.py --patients 1000 --bootstrap-replicates 2 --out /tmp/scale.json
    python benchmarks/scale.py --device gpu --patients 1000 10000 100000 1000000 --crossover

Defaults depend on the device: on a CPU the bootstrap is 4 replicates × 10 steps (one MAP
step of this model costs ~0.6 s there); on a GPU 100 replicates × 200 steps, the issue's protocol.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import jax

from itp_pd.runtime import use_every_core  # noqa: E402

use_every_core()  # one XLA device per core, as every entry point (before JAX starts)
jax.config.update("jax_enable_x64", True)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import environment, write_figures  # noqa: E402

from itp_pd.devices import choose_device  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "scale.json"
ARMS = ("control", "combination")


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def throughput(n_patients: int, *, repeats: int, single_run_over: float, seed: int) -> dict:
    """Patient-years per second of a one-year virtual trial of ``n_patients``."""
    from itp_pd.trial.population import prior_population
    from itp_pd.trial.virtual_trial import BATCH_PATIENTS, TrialDesign, simulate_trial

    key = jax.random.PRNGKey(seed)
    source = prior_population(n_draws=1, key=key)
    per_arm = n_patients // len(ARMS)
    batch = min(BATCH_PATIENTS, per_arm)
    started = time.perf_counter()
    simulate_trial(source, ARMS, TrialDesign(n_per_arm=batch), key=key, batch_patients=batch)
    warmup_s = time.perf_counter() - started
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = simulate_trial(source, ARMS, TrialDesign(n_per_arm=per_arm), key=key, batch_patients=batch)
        runs.append(time.perf_counter() - started)
        if runs[-1] > single_run_over:
            break
    wall = statistics.median(runs)
    years = per_arm * len(ARMS)  # one year each
    figures = dict(patients=years, runs_s=[round(r, 2) for r in runs], warmup_s=round(warmup_s, 2),
                   patient_years_per_s=round(years / wall, 1), peak_rss_mb=peak_rss_mb(),
                   solver_failures=int(result.table["solver_failures"].sum()))
    print(f"{years} patients: {figures['patient_years_per_s']} patient-years/s (runs {figures['runs_s']} s, "
          f"warm-up {warmup_s:.1f} s, peak RSS {figures['peak_rss_mb']} MB)", file=sys.stderr)
    return figures


def bootstrap(replicates: int, steps: int, *, seed: int, patients: int = 120) -> dict:
    """Packed against one-by-one MAP refits of bootstrap replicates of the ``patients``-patient
    dataset (120: the fit benchmark's)."""
    import numpy as np
    from fit import FIT_SOLVER, simulated_trial

    from itp_pd.inference import FitRecipe, MapSettings
    from itp_pd.inference.bootstrap import bootstrap_indices, fit_map_one_by_one, fit_map_packed, resample_patients
    from itp_pd.inference.fit import recipe_spec, recipe_structural
    from itp_pd.stats import build_model

    # The design of its recorded runs (the fit benchmark's until it moved to PLT0 and KB with B cells).
    estimate, random_effects = ("PLT0", "FL", "KB", "IMAX_PC"), ("PLT0", "FL", "KB")
    spec, dataset, _ = simulated_trial(patients, seed, iiv="all")
    recipe = FitRecipe(name="bootstrap", method="map", seed=seed, data_path=None, data_sha256=None,
                       spec_path=spec.path, estimate=estimate, random_effects=random_effects, solver=FIT_SOLVER)
    spec = recipe_spec(recipe, spec)
    model, _, observed = build_model(spec, dataset, structural=recipe_structural(recipe, spec),
                                     random_effects=random_effects)
    settings = MapSettings(steps=steps, learning_rate=0.02)
    key_indices, key_start = jax.random.split(jax.random.PRNGKey(seed))
    data, obs = resample_patients(model.data, observed.value, bootstrap_indices(model.n_patients, replicates,
                                                                                key=key_indices))
    sequential = fit_map_one_by_one(model, data, obs, settings, key=key_start)
    print(f"bootstrap one by one: {sequential.run_s:.1f} s (+{sequential.compile_s:.1f} s compile)", file=sys.stderr)
    packed = fit_map_packed(model, data, obs, settings, key=key_start)
    print(f"bootstrap packed: {packed.run_s:.1f} s (+{packed.compile_s:.1f} s compile)", file=sys.stderr)
    difference = max(float(np.max(np.abs(packed.estimates[k] - sequential.estimates[k])
                                  / (np.abs(sequential.estimates[k]) + 1e-12)))
                     for k in packed.estimates if k.startswith(("pop_", "omega_", "sigma_")))
    return dict(
        bootstrap_replicates=replicates, bootstrap_steps=steps, bootstrap_patients=model.n_patients,
        bootstrap_packed_s=round(packed.run_s, 2), bootstrap_sequential_s=round(sequential.run_s, 2),
        bootstrap_packed_compile_s=round(packed.compile_s, 2),
        bootstrap_sequential_compile_s=round(sequential.compile_s, 2),
        bootstrap_packed_speedup=round(sequential.run_s / packed.run_s, 2),
        bootstrap_max_relative_difference=difference,
        bootstrap_pop_IMAX_PC_spread=[round(float(v), 4) for v in np.percentile(packed.estimates["pop_IMAX_PC"], [5, 50, 95])],
    )


def crossover(sizes, *, seed: int) -> dict:
    """Seconds to simulate B one-year combination-arm patients on the CPU and on the GPU (the
    second of two runs, so compilation is excluded), and the smallest B where the GPU wins."""
    from itp_pd.devices import gpu_devices
    from itp_pd.trial.population import prior_population
    from itp_pd.trial.virtual_trial import TrialDesign, simulate_trial

    if not gpu_devices():
        return {}
    source = prior_population(n_draws=1, key=jax.random.PRNGKey(seed))
    timings = {"cpu": [], "gpu": []}
    for platform, seconds in timings.items():
        for size in sizes:
            with jax.default_device(jax.devices(platform)[0]):
                for _ in range(2):
                    started = time.perf_counter()
                    simulate_trial(source, ("combination",), TrialDesign(n_per_arm=size), key=jax.random.PRNGKey(seed),
                                   batch_patients=size)
                seconds.append(round(time.perf_counter() - started, 3))
    wins = [size for size, cpu, gpu in zip(sizes, timings["cpu"], timings["gpu"]) if gpu < cpu]
    return dict(crossover_sizes=list(sizes), crossover_cpu_s=timings["cpu"], crossover_gpu_s=timings["gpu"],
                gpu_min_batch=min(wins) if wins else None)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                        help="auto: the GPU when present (the batches here are all wide)")
    parser.add_argument("--patients", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--single-run-over", type=float, default=60.0,
                        help="stop repeating a size after a run longer than this (s)")
    parser.add_argument("--bootstrap-replicates", type=int, default=None, help="default: 100 on a GPU, 4 on a CPU")
    parser.add_argument("--bootstrap-steps", type=int, default=None, help="default: 200 on a GPU, 10 on a CPU")
    parser.add_argument("--bootstrap-patients", type=int, default=120, help="patients of the bootstrapped dataset")
    parser.add_argument("--crossover", action="store_true", help="CPU against GPU over batch sizes (needs a GPU)")
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    device = choose_device(args.device)
    on_gpu = device.platform == "gpu"
    replicates = args.bootstrap_replicates or (100 if on_gpu else 4)
    steps = args.bootstrap_steps or (200 if on_gpu else 10)
    with jax.default_device(device):
        sizes = [throughput(n, repeats=args.repeats, single_run_over=args.single_run_over, seed=args.seed)
                 for n in args.patients]
        figures = dict(
            device=f"{device.platform}: {device.device_kind}",
            patients=[s["patients"] for s in sizes],
            patient_years_per_s=[s["patient_years_per_s"] for s in sizes],
            runs_s=[s["runs_s"] for s in sizes],
            warmup_s=[s["warmup_s"] for s in sizes],
            peak_rss_mb=[s["peak_rss_mb"] for s in sizes],
            solver_failures=[s["solver_failures"] for s in sizes],
        )
        figures.update(bootstrap(replicates, steps, seed=args.seed, patients=args.bootstrap_patients))
    if args.crossover:
        figures.update(crossover((64, 256, 1024, 2048, 4096, 8192), seed=args.seed))
    figures.update(environment())
    return write_figures(figures, args.out)


if __name__ == "__main__":
    main(sys.argv[1:])
