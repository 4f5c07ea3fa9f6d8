"""``itp-pd simulate``: arms on the same virtual patients of one population → CSV tables + plot."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import (EXIT_OK, add_device_option, add_output_options, claimed_output, fit_inputs, positive_float,
                     positive_int, progress_bar, say, staged_output)

EPILOG = """examples:
  itp-pd simulate control combination
  itp-pd simulate "rituximab 100 mg weekly x4" "rituximab 100 mg weekly x4 + iguratimod 25 mg qd 12 weeks" \\
      --patients 300 --weeks 26 --out out/simulate
  itp-pd simulate control "rituximab 200 mg x4 + short iguratimod" --regimens examples/regimens.toml
  itp-pd simulate control combination --fit fits/itp_trial_svi.toml --force

ARM: a named arm (control, combination, "iguratimod alone", untreated, "rituximab 375 mg/m2 x4",
...), an arm of the --regimens file, or regimen names joined by '+'; an unknown name is refused
with the closest known one before anything is simulated.

Every arm is given to the same virtual patients (baseline platelets < 30 x10^9/L), drawn from one
population: the calibrated default (iguratimod's effects at the spec's values) or, with --fit, the
posterior median of a finished fit. For parameter uncertainty run `itp-pd trial`.

writes into --out:
  trajectories.csv  arm, ID, TIME (days), output, unit, value, status (0 = solved) at weekly visits;
                    outputs PLT (10^9/L), BCELL and ANTIBODY (relative to baseline), C_RTX and
                    C_IGU (mg/L); value is empty where the solver failed
  patients.csv      ID, BSA (m2), AGE (years) and every model parameter of each patient
  simulate.png      platelets per arm: median and 5-95% band, log axis, lines at 30 and 100
"""


def one_population(fit, seed: int):
    """The default calibrated population, or the posterior median of a finished fit."""
    import jax

    from ..trial import fitted_population, prior_population
    from ..trial.trajectories import central_population

    if fit is None:
        return prior_population(n_draws=1, key=jax.random.PRNGKey(seed), uncertain=())
    return central_population(fitted_population(fit), "median")


def run_simulate(args) -> int:
    from ..trial.plots import plot_platelet_bands
    from ..trial.regimens import resolve_arms

    out = Path(args.out)
    arms = resolve_arms(args.arms, args.regimens)  # fail fast: unknown names, bad regimen file
    inputs = [args.regimens, *fit_inputs(args.fit)]
    with claimed_output(out, args.force, inputs):  # before any work; the lock lasts the whole run
        result, population = simulate(args, arms)
        with staged_output(out, args.force, inputs) as staging:
            result.table.to_csv(staging / "trajectories.csv", index=False)
            result.patients.to_csv(staging / "patients.csv", index=False)
            plot_platelet_bands(result.visits, {arm: result.values(arm, "PLT") for arm in result.arms},
                                staging / "simulate.png",
                                title=f"{args.patients} virtual patients, the same in every arm; {population.description}")

    summary = result.summary()
    print(f"median platelets (10^9/L) of {args.patients} virtual patients by week; share ≥30 at end: "
          f"fraction of patients with platelets ≥ 30 at week {args.weeks:g}")
    print(summary.to_string(float_format=lambda v: f"{v:.3g}"))
    print(f"wrote {out}/ (trajectories.csv, patients.csv, simulate.png)")
    return EXIT_OK


def simulate(args, arms):
    """The arms' trajectories on one population's virtual patients, and that population."""
    from ..devices import on_device
    from ..trial.trajectories import simulate_trajectories, weekly_visits

    population = one_population(args.fit, args.seed)
    visits = weekly_visits(args.weeks)
    say(f"simulating {args.patients} virtual patients × {len(arms)} arm(s) for {args.weeks:g} weeks "
        f"({population.description}); the first arm includes compilation", quiet=args.quiet)
    with on_device(args.device, batch=args.patients), \
            progress_bar(args.patients * len(arms), "patient-arms", enabled=not args.quiet) as bar:
        result = simulate_trajectories(population, arms, args.patients, visits, seed=args.seed,
                                       progress=lambda done: bar.update(done - bar.n))
    return result, population


def register(commands) -> None:
    parser = commands.add_parser(
        "simulate", help="simulate arms on the same virtual patients; write trajectories and a plot",
        description="Simulate one or more arms on the same virtual ITP patients of one population "
                    "(no parameter uncertainty) and write their trajectories, parameters and a "
                    "platelet plot.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("arms", nargs="+", metavar="ARM",
                        help="named arm or regimen names joined by '+' (see below)")
    parser.add_argument("--patients", type=positive_int, default=100,
                        help="virtual patients, the same in every arm (default: %(default)s)")
    parser.add_argument("--weeks", type=positive_float, default=52.0,
                        help="follow-up in weeks; visits weekly (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the virtual patients (default: %(default)s)")
    parser.add_argument("--regimens", type=Path, metavar="FILE.toml",
                        help="extra regimens and arms (format: itp_pd/trial/regimens.py, "
                             "example: examples/regimens.toml)")
    parser.add_argument("--fit", type=Path, metavar="RECIPE.toml",
                        help="use the posterior median of this finished fit instead of the default "
                             "calibrated population")
    add_output_options(parser, default="itp-pd-simulate")
    add_device_option(parser)
    parser.set_defaults(run=run_simulate)
