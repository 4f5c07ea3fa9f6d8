"""``itp-pd fit`` (run a recipe) and ``itp-pd diagnose`` (the report of a finished fit)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .data_commands import add_data_options, check_recipe_data, recipe_with_data_options
from .common import EXIT_OK, add_device_option, add_output_options, claimed_output, positive_int, recipe_inputs, say, staged_output

FIT_EPILOG = """examples:
  itp-pd fit fits/pk_2cmt_example.toml              # NUTS as the recipe says → fits/pk_2cmt_example/
  itp-pd fit fits/pk_2cmt_example.toml --method map --out results/pk_map
  itp-pd fit fits/pk_2cmt_example.toml --force      # replace an earlier result (only an itp-pd output)

The output folder holds posterior.nc (ArviZ), summary.csv, diagnostics.json, losses.csv (SVI,
MAP) and manifest.json (versions, hashes, seed). Next: itp-pd diagnose <that folder>.
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
    print(result.summary.round(4).to_string())
    d = result.diagnostics
    print(f"{d['method']}: {d['chains']} chain(s) x {d['draws']} draws; divergences {d['divergences']}, "
          f"max R-hat {d['max_rhat']}, min bulk ESS {d['min_ess_bulk']}, solver failures {d['solver_failures']}; "
          f"compile {d['compile_s']:.1f} s, run {d['run_s']:.1f} s on {d['device']}")
    print(f"wrote {out}/ (posterior.nc, summary.csv, diagnostics.json, manifest.json); "
          f"next: itp-pd diagnose {out}")
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
        "fit", help="fit a recipe (fits/<name>.toml) by NUTS, SVI or MAP and write its results",
        description="Fit a recipe: dataset + model spec + method and settings, all in one TOML file.",
        epilog=FIT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fit.add_argument("recipe", help="fit recipe TOML")
    fit.add_argument("--method", choices=("nuts", "svi", "map"), help="override the recipe's method")
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
