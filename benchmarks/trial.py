"""Virtual-trial benchmark: 100 posterior draws × 1,000 virtual patients × 2 arms × 1 year.

The draws come from the default population prior (``prior_population``: the calibrated
``itp_v1`` population with iguratimod's four effect sizes drawn from their priors); each draw
enrols 1,000 new patients who receive both NCT07057778 arms (control: rituximab 100 mg weekly ×6;
combination: plus iguratimod 25 mg twice daily for 26 weeks, 364 oral doses), seen at the
trial's 25 visits, measured with residual error, and scored for OR, CR, SR, time to response
and relapse. That is 200,000 simulated patient-years.

What is timed: ``simulate_trial`` end to end (sampling patients, building grids, solving,
measurement, endpoints, table). A warm-up call with 3 draws compiles the programs first (its
batches have the full run's shape); ``compile_s`` is the warm-up's time minus its share of the
full run's per-draw time. ``wall_s`` is the median over ``--repeats`` full runs. Peak RSS is
the process's maximum resident set size (``resource.getrusage``).

    python benchmarks/trial.py            # writes benchmarks/results/trial.json
    python benchmarks/trial.py --draws 10 --out /tmp/trial_small.json
    python benchmarks/trial.py --oral-doses averaged --out benchmarks/results/trial_averaged.json
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import statistics
import sys
import time
from pathlib import Path

import jax

from itp_pd.runtime import use_every_core  # noqa: E402

use_every_core()  # one XLA device per core, as every entry point (before JAX starts)
jax.config.update("jax_enable_x64", True)

from _report import environment, write_figures  # noqa: E402 (benchmarks/ is on sys.path)

from itp_pd.trial.population import prior_population  # noqa: E402
from itp_pd.trial.virtual_trial import TRIAL_SOLVER, TrialDesign, simulate_trial, trial_structural  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "trial.json"
ARMS = ("control", "combination")
WARMUP_DRAWS = 3


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=100)
    parser.add_argument("--patients", type=int, default=1000, help="virtual patients per arm and draw")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--batch-patients", type=int, default=2048)
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--oral-doses", choices=("exact", "averaged"), default="exact",
                        help="the trial model's oral doses (itp_pd.structural.SolverConfig.oral_doses)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    solver = dataclasses.replace(TRIAL_SOLVER, oral_doses=args.oral_doses)

    design = TrialDesign(n_per_arm=args.patients)
    key = jax.random.PRNGKey(args.seed)
    source = prior_population(n_draws=args.draws, key=key)
    structural = dataclasses.replace(trial_structural(source.spec), solver_config=solver)
    warmup_source = prior_population(n_draws=WARMUP_DRAWS, key=key)

    def run(population):
        start = time.perf_counter()
        result = simulate_trial(population, ARMS, design, key=key, batch_patients=args.batch_patients,
                                chunk_size=args.chunk_size, structural=structural)
        return time.perf_counter() - start, result

    warmup_s, _ = run(warmup_source)
    print(f"warm-up ({WARMUP_DRAWS} draws): {warmup_s:.1f} s", file=sys.stderr)
    runs, result = [], None
    for repeat in range(args.repeats):
        seconds, result = run(source)
        runs.append(seconds)
        print(f"run {repeat + 1}: {seconds:.1f} s", file=sys.stderr)
    wall = statistics.median(runs)
    summary = result.table.groupby("arm")[["overall_response", "complete_response", "sustained_response"]].mean()
    figures = dict(
        draws=args.draws,
        patients_per_arm=args.patients,
        arms=list(ARMS),
        wall_s=round(wall, 2),
        compile_s=round(max(warmup_s - wall * WARMUP_DRAWS / args.draws, 0.0), 2),
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        runs_s=[round(r, 2) for r in runs],
        warmup_s=round(warmup_s, 2),
        patient_years=args.draws * args.patients * len(ARMS) * design.follow_up_weeks / 52.0,
        patient_years_per_s=round(args.draws * args.patients * len(ARMS) / wall, 1),
        batch_patients=args.batch_patients,
        chunk_size=args.chunk_size,
        solver=dict(solver=solver.solver, rtol=solver.rtol, atol=solver.atol, oral_doses=solver.oral_doses),
        devices=len(jax.devices()),
        solver_failures=int(result.table["solver_failures"].sum()),
        mean_rates={arm: {k: round(float(v), 4) for k, v in row.items()} for arm, row in summary.iterrows()},
        target_wall_s=120.0,
        **environment(),
    )
    return write_figures(figures, args.out)


if __name__ == "__main__":
    main()
