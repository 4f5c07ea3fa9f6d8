"""Simulation benchmark: the ITP model, 10,000 virtual patients for 1 year, both trial arms.

Patients are drawn from the calibrated default population (``models/itp_v1.toml`` with
``fits/itp_v1_calibration.toml`` where it exists; ``calibrated_population``, fixed seed) and
simulated on NCT07057778's visit schedule over 52 weeks (``trial_visits()``), with platelets
and B cells as outputs, once for the control arm (rituximab 100 mg weekly ×6) and once for
the combination arm (plus iguratimod 25 mg twice daily for 26 weeks: 364 more dose events
per patient). Records, dataset and event grids are built once per arm, outside the timed
region (``itp_pd.trial.simulate_arm.prepare_arm``); what is timed is ``simulate_population``
until its predictions are ready. ``wall_s`` is the median over ``--repeats`` calls after the
first; ``compile_s`` is the first call minus that median. Peak RSS is the process's maximum
resident set size at the end (``resource.getrusage``). ``--compare-unchunked`` also times the
control arm solved as one batch (``chunk_size`` = all patients) in the same run, the baseline
for the engine's stiffness-sorted chunks.

    python benchmarks/simulate.py          # writes benchmarks/results/simulate.json
    python benchmarks/simulate.py --patients 2000 --compare-unchunked --out /tmp/chunks.json
    python benchmarks/simulate.py --patients 2000 --solver tsit5 --rtol 1e-7 --atol 1e-10 --out /tmp/tsit5.json
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

import numpy as np  # noqa: E402
from _report import environment, write_figures  # noqa: E402 (benchmarks/ is on sys.path)

from itp_pd.engine import default_chunk_size, simulate_population  # noqa: E402
from itp_pd.spec import load_spec  # noqa: E402
from itp_pd.structural import model_from_spec  # noqa: E402
from itp_pd.trial.calibration import calibrated_population  # noqa: E402
from itp_pd.trial.design import nct07057778_arms, trial_visits  # noqa: E402
from itp_pd.trial.simulate_arm import prepare_arm  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "simulate.json"
SPEC = Path(__file__).parents[1] / "models" / "itp_v1.toml"
OUTPUTS = ("PLT", "BCELL")
YEARS = 1


def time_arm(model, params, arm, visits, bsa, repeats, chunk_size=None, mesh="auto"):
    """``(first_call_s, runs_s, failures, predictions)`` for one arm; only the simulation is
    timed. ``mesh``: ``"auto"`` (the default: patients split over every core) or ``None`` (one
    device, the baseline)."""
    population, params_jax, _ = prepare_arm(model, params, arm, visits, outputs=OUTPUTS, bsa=bsa)

    def call():
        start = time.perf_counter()
        result = simulate_population(model, params_jax, population, chunk_size=chunk_size, mesh=mesh)
        result.predictions.block_until_ready()
        return time.perf_counter() - start, result

    first, _ = call()
    runs = []
    for _ in range(repeats):
        elapsed, result = call()
        runs.append(elapsed)
    failures = int(np.sum(np.asarray(result.status) != 0))
    return first, runs, failures, np.asarray(result.predictions)


def peak_rss_mb():
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--solver", default=None, help="override the model's solver (tsit5, bosh3, ...)")
    parser.add_argument("--rtol", type=float, default=None)
    parser.add_argument("--atol", type=float, default=None)
    parser.add_argument("--compare-unchunked", action="store_true",
                        help="also time the control arm as one unsorted batch of all patients")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1 (compile_s is the first call minus their median)")

    spec = load_spec(SPEC)
    model = model_from_spec(spec)
    overrides = {k: v for k, v in dict(solver=args.solver, rtol=args.rtol, atol=args.atol).items() if v is not None}
    if overrides:  # SolverConfig refuses an unknown solver or a non-positive tolerance
        model = dataclasses.replace(model, solver_config=dataclasses.replace(model.solver, **overrides))
    params, bsa = calibrated_population(spec, args.patients, seed=args.seed)
    visits = trial_visits(52.0 * YEARS)
    arms = nct07057778_arms()

    averaged = dataclasses.replace(model, solver_config=dataclasses.replace(model.solver, oral_doses="averaged"))
    # (name, model, arm, mesh): the defaults (every core), the one-device baselines, and the
    # combination arm with iguratimod's doses averaged (the same patients, for its error).
    cases = [("control", model, "control", "auto"), ("combination", model, "combination", "auto"),
             ("control, one device", model, "control", None), ("combination, one device", model, "combination", None),
             ("combination, averaged oral doses", averaged, "combination", "auto")]
    if args.compare_unchunked:
        cases.append(("control, one batch", model, "control", "auto"))
    timings, predictions = {}, {}
    for key, case_model, arm, mesh in cases:
        first, runs, failures, predictions[key] = time_arm(
            case_model, params, arms[arm], visits, bsa, args.repeats,
            chunk_size=args.patients if key == "control, one batch" else None, mesh=mesh)
        median = statistics.median(runs)
        timings[key] = dict(wall_s=median, compile_s=first - median, runs=runs, failures=failures)
        print(f"{key}: {median:.2f} s (median of {len(runs)}; first call {first:.1f} s)", file=sys.stderr, flush=True)
    # Rows alternate PLT, BCELL per visit (prepare_arm's outputs order): the platelet error.
    exact, approx = predictions["combination"][:, 0::2], predictions["combination, averaged oral doses"][:, 0::2]
    measured = np.isfinite(exact) & (exact > 0)  # padding slots of the grid hold no prediction
    plt_error = np.abs(approx[measured] - exact[measured]) / exact[measured]

    control, combination = timings["control"], timings["combination"]
    figures = dict(
        patients=args.patients,
        years=YEARS,
        wall_s=round(control["wall_s"], 4),
        compile_s=round(control["compile_s"], 2),
        combination_wall_s=round(combination["wall_s"], 4),
        combination_compile_s=round(combination["compile_s"], 2),
        runs_s={key: [round(t, 4) for t in value["runs"]] for key, value in timings.items()},
        peak_rss_mb=round(peak_rss_mb(), 1),
        chunk_size=default_chunk_size(),
        arms_s={key: round(value["wall_s"], 4) for key, value in timings.items()},
        control_speedup_vs_one_device=round(timings["control, one device"]["wall_s"] / control["wall_s"], 2),
        combination_speedup_vs_one_device=round(
            timings["combination, one device"]["wall_s"] / combination["wall_s"], 2),
        combination_averaged_wall_s=round(timings["combination, averaged oral doses"]["wall_s"], 4),
        combination_averaged_speedup_vs_one_device=round(
            timings["combination, one device"]["wall_s"] / timings["combination, averaged oral doses"]["wall_s"], 2),
        averaged_plt_max_relative_error=float(f"{np.nanmax(plt_error):.3g}"),
        averaged_plt_median_relative_error=float(f"{np.nanmedian(plt_error):.3g}"),
        devices=len(jax.devices()),
        **(
            dict(
                unchunked_wall_s=round(timings["control, one batch"]["wall_s"], 4),
                chunked_speedup=round(timings["control, one batch"]["wall_s"] / control["wall_s"], 2),
            )
            if args.compare_unchunked
            else {}
        ),
        repeats=args.repeats,
        visits=len(visits),
        outputs=list(OUTPUTS),
        solver_failures={key: value["failures"] for key, value in timings.items()},
        solver=model.solver.solver,
        rtol=model.solver.rtol,
        atol=model.solver.atol,
        **environment(),
    )
    return write_figures(figures, args.out)


if __name__ == "__main__":
    main(sys.argv[1:])
