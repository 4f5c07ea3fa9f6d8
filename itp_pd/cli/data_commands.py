"""``itp-pd check-data`` and ``itp-pd hash``."""

from __future__ import annotations

import argparse
import sys

from .common import EXIT_OK

CHECK_EPILOG = """examples:
  itp-pd check-data examples/data/itp_trial.csv
  itp-pd check-data examples/data/example_pk.csv
      (units come from the sidecar examples/data/example_pk.units.toml when present;
      without one, the units assumed are said on every run)
  itp-pd check-data run1.dta --ignore @ --drop SEX
      (a NONMEM .dta file: whitespace-separated, detected; IGNORE=@ comment lines; a text column)

Every problem in the file is listed at once with its row, column and fix; exit code 2 when
there are any, 0 when the file is fit to use.
"""
HASH_EPILOG = """examples:
  itp-pd hash examples/data/itp_trial.csv     # paste into a recipe's [data] sha256
"""


def add_data_options(parser, *, recipe: bool = False) -> None:
    """``--sep``, ``--ignore``, ``--drop`` and ``--keep``: how to read a dataset (for a fit, they
    override the recipe's [data] sep and ignore, and add to its drop)."""
    also = " (adds to the recipe's [data] drop)" if recipe else ""
    parser.add_argument("--sep", metavar="SEP",
                        help="field delimiter: comma, semicolon, tab or whitespace (NONMEM .dta); "
                             "default: detected from the header line")
    parser.add_argument("--ignore", metavar="CHARS",
                        help="lines starting with these characters are comments, as NONMEM's IGNORE "
                             "('@': lines starting with a letter or @); default '#'")
    parser.add_argument("--drop", metavar="COL[,COL]", action="append", default=[],
                        help=f"columns to ignore, e.g. a text column: --drop SEX,COMMENT{also}")
    parser.add_argument("--keep", metavar="COL[,COL]", action="append", default=None,
                        help="the only columns to read (all others are ignored)")


def _names(values) -> list[str]:
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def data_options(args) -> dict:
    """The reading options given on the command line (only those given)."""
    options = {}
    if args.sep is not None:
        options["sep"] = args.sep
    if args.ignore is not None:
        options["ignore"] = args.ignore
    if args.drop:
        options["drop"] = _names(args.drop)
    if args.keep is not None:
        options["keep"] = _names(args.keep)
    return options


def tell(command: str, report, extra=()) -> None:
    """The notes (units assumed) and warnings (implausible scales) of a read, on stderr."""
    for note in report.notes():
        print(f"itp-pd {command}: note: {note}", file=sys.stderr)
    for warning in (*report.warnings, *extra):
        print(f"itp-pd {command}: warning: {warning}", file=sys.stderr)


def run_check_data(args) -> int:
    from ..data.nonmem import read_nonmem_report

    report = read_nonmem_report(args.path, **data_options(args))
    tell("check-data", report)
    dataset = report.dataset
    table = dataset.table
    n_obs = int(((table["EVID"] == 0) & (table["MDV"] == 0)).sum())
    n_doses = int(table["EVID"].isin([1, 4]).sum())
    units = (f"units from {report.units_from}: {report.units_text()}" if report.units is not None
             else "units assumed, none declared: TIME in days, AMT in mg, RATE in mg/day, DV as given")
    print(
        f"{args.path}: OK — {len(dataset.patients())} patients, {len(table)} records, "
        f"{n_doses} dose records, {n_obs} observations; covariates: "
        f"{', '.join(dataset.covariates) or 'none'}; read as {report.reading()}; {units}"
    )
    return EXIT_OK


def run_hash(args) -> int:
    from ..inference import file_sha256

    print(f"{file_sha256(args.path)}  {args.path}")
    return EXIT_OK


def register(commands) -> None:
    check = commands.add_parser(
        "check-data", help="validate a NONMEM-format dataset and list every problem",
        description="Read a NONMEM-format CSV (and its units sidecar) and report every problem.",
        epilog=CHECK_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("path", help="data file: CSV or NONMEM .dta (NONMEM column names, case-insensitive)")
    add_data_options(check)
    check.set_defaults(run=run_check_data)

    digest = commands.add_parser(
        "hash", help="print a file's sha256 (for a recipe's [data] section)",
        epilog=HASH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    digest.add_argument("path")
    digest.set_defaults(run=run_hash)


def recipe_with_data_options(recipe, args):
    """The recipe with the command line's --sep/--ignore/--keep, and --drop added to its drop."""
    options = data_options(args)
    if "drop" in options:
        options["drop"] = list(dict.fromkeys([*recipe.data_drop, *options["drop"]]))
    return recipe.with_data_options(options) if options else recipe


def check_recipe_data(recipe, command: str) -> None:
    """Read the recipe's dataset as the fit will, and say the units assumed and any implausible
    scale (dose intervals; observations against the spec's units) before minutes of fitting.

    The fit reads the file again; its ``DataWarning`` s, said here already, are silenced.
    """
    import warnings

    from ..data.plausibility import DataWarning, dv_scale_warnings
    from ..inference import recipe_spec
    from ..inference.recipe import check_data_against_spec

    spec = recipe_spec(recipe)  # the recipe's names are checked against the spec first
    report = recipe.read_data_report()
    extra = dv_scale_warnings(report.dataset, spec.observations, source=str(recipe.data_path),
                              spec=str(recipe.spec_path))
    tell(command, report, extra)
    check_data_against_spec(recipe, spec, report.dataset)
    warnings.filterwarnings("ignore", category=DataWarning)
