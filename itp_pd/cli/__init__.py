"""Command line ``itp-pd``: thin wrappers over the library, one module per subcommand.

Exit codes: 0 success; 2 bad input (dataset, recipe, arguments, regimen, an output folder
that exists, that ``--force`` may not replace, or that another run is writing); 1 an
unexpected internal error (run again with ``--debug`` for the traceback); 3 ``fit`` ran to the end
without converging (``EXIT_NOT_CONVERGED``; the folder is written and says so); 130 interrupted
(Ctrl-C). Results go to stdout, progress and errors to stderr.

Output folders (``itp_pd.output_folder``): ``--out`` names a new folder in a folder that exists,
checked and locked before any work; ``--force`` replaces only an earlier itp-pd output folder
(recognised by its ``.itp-pd-output.json``) holding nothing itp-pd did not write and none of
the run's inputs: no command deletes what it did not create.
"""

from __future__ import annotations

import argparse
import sys

from . import batch, data_commands, demo, fit_commands, simulate, trial
from ..runtime import configure_entry_point
from .common import EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK

__all__ = ["EXIT_INPUT", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_OK", "build_parser", "main"]

SUBCOMMANDS = (demo, data_commands, simulate, fit_commands, trial, batch)

EPILOG = """exit codes: 0 success; 2 bad input (the message says what and how to fix it);
3 a fit ran to the end without converging (its folder is written and says so);
1 internal error (run again with --debug and report the traceback); 130 interrupted.

output folders: --out must be new, in a folder that exists; one run at a time writes it;
--force replaces an earlier itp-pd output folder, never a folder itp-pd did not write.

start with:  itp-pd demo          (synthetic trial → fit → report → arm comparison)
more:        itp-pd <command> --help
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="itp-pd",
        description="Mechanistic PD of immune thrombocytopenia: check data, simulate regimens, "
                    "fit hierarchically, diagnose fits, run virtual trials.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of any error")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    for module in SUBCOMMANDS:
        module.register(commands)
    return parser


def main(argv=None) -> int:
    from ..errors import ItpPdError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        # One XLA device per core (patients split across them), float64, the compilation cache.
        configure_entry_point()
        return args.run(args)
    except KeyboardInterrupt:
        print(f"itp-pd {args.command}: interrupted; no output folder was written or replaced", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ItpPdError, FileExistsError, FileNotFoundError, IsADirectoryError, NotADirectoryError) as error:
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
