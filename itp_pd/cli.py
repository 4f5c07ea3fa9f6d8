"""Command line: thin wrappers over the library.

Exit codes: 0 success; 2 bad input (dataset, arguments, existing output folder); 1 an
unexpected internal error (run again with ``--debug`` for the traceback).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT = 0, 1, 2

DEMO_EPILOG = """examples:
  itp-pd demo                      # 50 virtual patients per arm, outputs in ./itp-pd-demo
  itp-pd demo --out results --patients 200 --force
"""
CHECK_EPILOG = """examples:
  itp-pd check-data examples/data/example_pk.csv
      (units come from the sidecar examples/data/example_pk.units.toml when present)
"""
FIT_EPILOG = """examples:
  itp-pd fit fits/pk_2cmt_example.toml            # NUTS as the recipe says; fits/pk_2cmt_example/
  itp-pd fit fits/pk_2cmt_example.toml --method map
  itp-pd hash examples/data/pk_trial.csv          # the sha256 a recipe's [data] needs
"""


def _enable_float64():
    import jax

    jax.config.update("jax_enable_x64", True)


def _fresh_output_folder(out: Path, force: bool) -> None:
    if out.exists() and not force:
        raise FileExistsError(
            f"output folder {out} already exists; choose another --out or add --force to replace it"
        )


def _publish(staging: Path, out: Path) -> None:
    """Move a finished staging folder into place, so a killed run leaves nothing half-written."""
    if out.exists():
        shutil.rmtree(out)
    shutil.move(str(staging), str(out))


def run_demo(args) -> int:
    from .demo import example_arms, plot_arms, simulate_arms

    out = Path(args.out)
    _fresh_output_folder(out, args.force)
    print(f"simulating {args.patients} virtual patients per arm for 52 weeks ...", flush=True)
    frame = simulate_arms(example_arms(), n_patients=args.patients, seed=args.seed)
    failures = frame.loc[frame["status"] != 0, ["arm", "ID"]].drop_duplicates()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".itp-pd-", dir=out.parent))
    frame.to_csv(staging / "trajectories.csv", index=False)
    plot_arms(frame, staging / "arms.png")
    _publish(staging, out)
    summary = (
        frame[(frame["output"] == "R") & (frame["TIME"].isin([28.0, 182.0, 364.0]))]
        .groupby(["arm", "TIME"])["value"]
        .median()
        .unstack()
    )
    print("median B-cell-like response (relative to baseline) at days 28, 182, 364:")
    print(summary.round(3).to_string())
    print(f"solver failures: {len(failures)}")
    print(f"wrote {out / 'trajectories.csv'} and {out / 'arms.png'}")
    return EXIT_OK


def run_check_data(args) -> int:
    from .data import read_nonmem

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


def run_fit(args) -> int:
    import dataclasses

    from .inference import fit, load_recipe, write_fit

    recipe = load_recipe(args.recipe)
    if args.method:
        recipe = dataclasses.replace(recipe, method=args.method)
    result = fit(recipe, progress=not args.quiet)
    out = write_fit(result, Path(args.out) if args.out else recipe.output_dir)
    print(result.summary.round(4).to_string())
    d = result.diagnostics
    print(f"{d['method']}: {d['chains']} chain(s) x {d['draws']} draws; divergences {d['divergences']}, "
          f"max R-hat {d['max_rhat']}, min bulk ESS {d['min_ess_bulk']}, solver failures {d['solver_failures']}; "
          f"compile {d['compile_s']:.1f} s, run {d['run_s']:.1f} s on {d['device']}")
    print(f"wrote {out}/ (posterior.nc, summary.csv, diagnostics.json, manifest.json)")
    return EXIT_OK


def run_hash(args) -> int:
    from .inference import file_sha256

    print(f"{file_sha256(args.path)}  {args.path}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="itp-pd",
        description="Mechanistic PD of immune thrombocytopenia: simulate, check data, fit.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo",
        help="simulate the NCT07057778 arms on virtual patients and plot them",
        epilog=DEMO_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--out", default="itp-pd-demo", help="output folder (default: %(default)s)")
    demo.add_argument("--patients", type=int, default=50, help="virtual patients per arm")
    demo.add_argument("--seed", type=int, default=1, help="seed of the virtual population")
    demo.add_argument("--force", action="store_true", help="replace an existing output folder")
    demo.set_defaults(run=run_demo)

    check = commands.add_parser(
        "check-data",
        help="validate a NONMEM-format dataset and list every problem",
        epilog=CHECK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("path", help="CSV file (NONMEM column names, case-insensitive)")
    check.set_defaults(run=run_check_data)

    fit = commands.add_parser(
        "fit",
        help="fit a recipe (fits/<name>.toml) by NUTS, SVI or MAP and write its results",
        epilog=FIT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fit.add_argument("recipe", help="fit recipe TOML")
    fit.add_argument("--method", choices=("nuts", "svi", "map"), help="override the recipe's method")
    fit.add_argument("--out", help="output folder (default: <recipe folder>/<name>/)")
    fit.add_argument("--quiet", action="store_true", help="no progress output")
    fit.set_defaults(run=run_fit)

    digest = commands.add_parser("hash", help="print a file's sha256 (for a recipe's [data] section)")
    digest.add_argument("path")
    digest.set_defaults(run=run_hash)
    return parser


def main(argv=None) -> int:
    from .errors import ItpPdError

    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "patients", 1) < 1:
        parser.error("--patients must be at least 1")
    _enable_float64()
    try:
        return args.run(args)
    except (ItpPdError, FileExistsError, FileNotFoundError) as error:
        if args.debug:
            raise
        print(f"itp-pd {args.command}: {error}", file=sys.stderr)
        return EXIT_INPUT
    except Exception as error:  # noqa: BLE001 - the user gets one paragraph, --debug the rest
        if args.debug:
            raise
        print(
            f"itp-pd {args.command}: internal error ({type(error).__name__}: {error}); "
            "run again with --debug and report the traceback",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
