"""``itp-pd check-data`` and ``itp-pd hash``."""

from __future__ import annotations

import argparse

from .common import EXIT_OK

CHECK_EPILOG = """examples:
  itp-pd check-data examples/data/itp_trial.csv
  itp-pd check-data examples/data/example_pk.csv
      (units come from the sidecar examples/data/example_pk.units.toml when present)

Every problem in the file is listed at once with its row, column and fix; exit code 2 when
there are any, 0 when the file is fit to use.
"""
HASH_EPILOG = """examples:
  itp-pd hash examples/data/itp_trial.csv     # paste into a recipe's [data] sha256
"""


def run_check_data(args) -> int:
    from ..data import read_nonmem

    dataset = read_nonmem(args.path)
    table = dataset.table
    n_obs = int(((table["EVID"] == 0) & (table["MDV"] == 0)).sum())
    n_doses = int(table["EVID"].isin([1, 4]).sum())
    print(
        f"{args.path}: OK — {len(dataset.patients())} patients, {len(table)} records, "
        f"{n_doses} dose records, {n_obs} observations; covariates: "
        f"{', '.join(dataset.covariates) or 'none'}"
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
    check.add_argument("path", help="CSV file (NONMEM column names, case-insensitive)")
    check.set_defaults(run=run_check_data)

    digest = commands.add_parser(
        "hash", help="print a file's sha256 (for a recipe's [data] section)",
        epilog=HASH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    digest.add_argument("path")
    digest.set_defaults(run=run_hash)
