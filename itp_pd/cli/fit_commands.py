"""``itp-pd fit`` (run a recipe) and ``itp-pd diagnose`` (the report of a finished fit)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .data_commands import add_data_options, check_recipe_data, recipe_with_data_options
from .common import EXIT_NOT_CONVERGED, EXIT_OK, add_device_option, add_output_options, claimed_output, positive_int, recipe_inputs, say, staged_output

FIT_EPILOG = """examples:
  itp-pd fit fits/pk_2cmt_example.toml              # NUTS as the recipe says → fits/pk_2cmt_example/
  itp-pd fit fits/pk_2cmt_example.toml --method focei --out results/pk_focei
  itp-pd fit fits/pk_2cmt_example.toml --force      # replace an earlier result (only an itp-pd output)

The output folder holds posterior.nc (ArviZ), summary.csv, diagnostics.json, losses.csv (SVI,
MAP, FOCE-I, Laplace), manifest.json (versions, hashes, seed) and, for FOCE-I and Laplace,
estimates.csv, individual.csv and residuals.csv. Next: itp-pd diagnose <that folder>.

exit codes: 0 converged; 3 the fit ran to the end but did not converge (NUTS: R-hat > 1.01 or
divergences; SVI/MAP: loss still falling; FOCE-I/Laplace: gradient criterion not met, an inner
problem failed, or the covariance step failed): its folder is written and says so; 2 bad input.
"""
DIAGNOSE_EPILOG = """examples:
  itp-pd diagnose fits/pk_2cmt_example              # → fits/pk_2cmt_example/report/index.html
  itp-pd diagnose fits/pk_2cmt_example --out review/pk --vpc-draws 200 --force

The fit folder must come from `itp-pd fit` (its manifest names the recipe, and the recipe the
dataset and model, which the visual predictive check simulates again).
"""


def run_fit(args) -> int:
    import dataclasses

    from ..inference import fit, load_recipe, write_fit

    recipe = load_recipe(args.recipe)
    if args.method:
        recipe = dataclasses.replace(recipe, method=args.method)
    if args.device:
        recipe = dataclasses.replace(recipe, device=args.device)
    recipe = recipe_with_data_options(recipe, args)  # --sep, --ignore, --drop, --keep
    check_recipe_data(recipe, "fit")  # data problems and assumed units before any fitting
    out = Path(args.out) if args.out else recipe.output_dir
    # Claimed before minutes of fitting, not after; the lock keeps a second run out meanwhile.
    with claimed_output(out, args.force, recipe_inputs(recipe)):
        result = fit(recipe, progress=not args.quiet)
        write_fit(result, out)
    d = result.diagnostics
    verdict = "CONVERGED" if result.converged else "NOT CONVERGED: these numbers are not results"
    print(f"{d['method']}: {verdict} ({d['convergence_message']})")
    if "estimates" in result.tables:
        print(result.tables["estimates"].round(5).to_string(index=False))
        cov = d["covariance_step"]
        print(f"OFV {d['ofv']:.4f} (-2 log L without n*log(2*pi), as NONMEM prints; with it "
              f"{d['ofv_with_constant']:.4f}); AIC {d['aic']:.2f}, BIC {d['bic']:.2f}; "
              f"{d['outer_iterations']} iterations, {d['objective_evaluations']} objective evaluations; "
              f"covariance step ({cov['kind']}): {cov['message']}; inner failures {d['inner_failures']}; "
              f"run {d['run_s']:.1f} s on {d['device']}")
    else:
        print(result.summary.round(4).to_string())
        print(f"{d['method']}: {d['chains']} chain(s) x {d['draws']} draws; divergences {d['divergences']}, "
              f"max R-hat {d['max_rhat']}, min bulk ESS {d['min_ess_bulk']}, solver failures {d['solver_failures']}; "
              f"compile {d['compile_s']:.1f} s, run {d['run_s']:.1f} s on {d['device']}")
    print(f"wrote {out}/ (posterior.nc, summary.csv, diagnostics.json, manifest.json"
          f"{', estimates.csv, individual.csv, residuals.csv' if result.tables else ''}); next: itp-pd diagnose {out}")
    if not result.converged:
        say(f"itp-pd fit: the fit did not converge ({d['convergence_message']}); exit code {EXIT_NOT_CONVERGED}")
        return EXIT_NOT_CONVERGED
    return EXIT_OK


def run_diagnose(args) -> int:
    from ..diagnostics import ReportSettings, load_fit, write_report

    fit_dir = Path(args.fit_dir)
    out = Path(args.out) if args.out else fit_dir / "report"
    finished = load_fit(fit_dir)  # reading only; its recipe names the other inputs
    settings = ReportSettings(vpc_draws=args.vpc_draws, patients_per_page=args.patients_per_page, seed=args.seed)
    with staged_output(out, args.force, [fit_dir, *recipe_inputs(finished.recipe)]) as staging:
        write_report(finished, staging, settings, progress=not args.quiet)
    say(f"report written to {out}/index.html", quiet=args.quiet)
    print(out / "index.html")
    return EXIT_OK


def register(commands) -> None:
    fit = commands.add_parser(
        "fit", help="fit a recipe (fits/<name>.toml) by FOCE-I, Laplace, NUTS, SVI or MAP and write its results",
        description="Fit a recipe: dataset + model spec + method and settings, all in one TOML file.",
        epilog=FIT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fit.add_argument("recipe", help="fit recipe TOML")
    fit.add_argument("--method", choices=("focei", "laplace", "nuts", "svi", "map"), help="override the recipe's method")
    add_device_option(fit, default=None, default_text="the recipe's [fit] device, else auto")
    add_output_options(fit, default=None, default_text="<recipe folder>/<name>/")
    add_data_options(fit, recipe=True)
    fit.set_defaults(run=run_fit)

    diagnose = commands.add_parser(
        "diagnose", help="write the diagnostic report (PNGs + index.html) of a finished fit",
        description="Convergence, goodness of fit, NPD, individual fits, VPC (plain and "
                    "prediction-corrected, by arm), shrinkage, prior vs posterior and LOO.",
        epilog=DIAGNOSE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    diagnose.add_argument("fit_dir", help="a fit's output folder (from itp-pd fit)")
    add_output_options(diagnose, default=None, default_text="<fit_dir>/report")
    diagnose.add_argument("--vpc-draws", type=positive_int, default=100,
                          help="simulated replicates of the dataset for the VPC and NPD (default %(default)s)")
    diagnose.add_argument("--patients-per-page", type=positive_int, default=16,
                          help="patients on the individual-fit page (default %(default)s)")
    diagnose.add_argument("--seed", type=int, default=1, help="seed of the simulations")
    diagnose.set_defaults(run=run_diagnose)
