"""``itp-pd batch``: many independent fit recipes, one Ray task each (``itp_pd.batch``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..devices import DEVICE_CHOICES
from .common import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, positive_int

BATCH_EPILOG = """examples:
  itp-pd batch recipes/*.toml                       # local Ray, one fit per CPU → batch/<name>-<key>/
  itp-pd batch recipes/*.toml --out sens --num-cpus 4 --device cpu
  itp-pd batch recipes/*.toml --address auto        # the Ray cluster started on this machine (ray start --head)
  itp-pd batch recipes/*.toml --address ray://head:10001 --out /shared/batch

Each fit's folder is named after the recipe's name and a key hashing its inputs (recipe, data,
spec, values, itp-pd version); it holds what `itp-pd fit` writes. A folder that exists is a
finished fit and is skipped, so running the same command again resumes a batch that was
interrupted or had failures. OUT/batch.csv lists every fit, its status and any error.
With a cluster, OUT must be on a file system every node sees, and itp-pd must be installed on
every node. Needs Ray: pip install 'itp-pd[batch]'.
exit codes: 0 every fit done or skipped; 1 some fit failed (the others are kept); 2 bad input.
"""


def run_batch_command(args) -> int:
    from ..batch import require_ray, run_batch

    require_ray()  # before reading recipes: without Ray nothing can run
    try:
        report = run_batch(args.recipes, Path(args.out), address=args.address, num_cpus=args.num_cpus,
                           device=args.device, progress=not args.quiet)
    except KeyboardInterrupt:
        print(f"itp-pd batch: interrupted; finished fits are kept in {args.out}/ and a fit cut short left "
              "no folder; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(report.table())
    if not report.failed:
        return EXIT_OK
    for row in report.failed:
        print(f"itp-pd batch: {row.recipe} ({Path(row.folder).name}) failed: {row.error}", file=sys.stderr)
    print(f"itp-pd batch: {len(report.failed)} of {len(report.rows)} fit(s) failed (listed above and in "
          f"{report.summary_path}); the others are kept. Fix the cause, then run the same command again: "
          "finished fits are skipped and only the failed ones run.", file=sys.stderr)
    return EXIT_INTERNAL


def register(commands) -> None:
    batch = commands.add_parser(
        "batch", help="run many fit recipes as independent Ray tasks; re-running resumes",
        description="Fit many recipes (sensitivity analyses, bootstrap or simulation replicates, "
                    "per-site fits) in parallel on a local Ray instance or a Ray cluster.",
        epilog=BATCH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    batch.add_argument("recipes", nargs="+", help="fit recipe TOML files")
    batch.add_argument("--out", default="batch", help="output folder (default: %(default)s/)")
    batch.add_argument("--address", default=None,
                       help="Ray cluster to use: auto (the one started on this machine), host:6379 or "
                            "ray://host:10001 (default: start a local Ray instance)")
    batch.add_argument("--num-cpus", type=positive_int, default=None,
                       help="CPUs of the local Ray instance, i.e. fits at once (default: all)")
    batch.add_argument("--device", choices=DEVICE_CHOICES, default="auto",
                       help="auto: each recipe's own device; cpu or gpu: for every fit (default %(default)s)")
    batch.add_argument("--quiet", action="store_true", help="no progress on stderr")
    batch.set_defaults(run=run_batch_command)
