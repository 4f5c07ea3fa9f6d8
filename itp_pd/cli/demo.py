"""``itp-pd demo``: synthetic NCT07057778 → fit → diagnostic report → arm comparisons."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import EXIT_INPUT, EXIT_NOT_CONVERGED, EXIT_OK, add_device_option, add_output_options, positive_int, say, staged_output

DEMO_EPILOG = """examples:
  itp-pd demo                          # the full demo into ./itp-pd-demo (minutes on a laptop CPU)
  itp-pd demo --out results --force    # replace an earlier demo (never a folder itp-pd did not write)
  itp-pd demo --per-arm 10 --max-iterations 5 --vpc-draws 10 --trial-draws 2 --trial-patients 20   # a smoke test

Output: DIR/report/index.html (diagnostic report), DIR/fit/estimates.csv (FOCE-I estimates, SE,
95% intervals), DIR/fit/posterior.nc (parameter draws, ArviZ NetCDF), DIR/comparison.csv (each
arm against control: difference, 90% interval, P(better)), DIR/data/ (the synthetic dataset and
the true parameters), DIR/fit.toml (the recipe).

Exit codes: 0 converged, 3 the fit did not converge (everything is still written, and the
console and DIR/demo.json say so), 2 bad input.
"""


def run_demo(args) -> int:
    from ..demo import ROOT, DemoSettings, run_demo as run
    from ..devices import on_device

    if args.sir is not None and args.sir < args.draws:  # SIR resamples --draws of its proposals, without replacement
        say(f"itp-pd demo: --sir {args.sir} is fewer proposals than --draws {args.draws} resamples; "
            f"give --sir {args.draws} or more (PsN: ten proposals or more per resample)")
        return EXIT_INPUT
    out = Path(args.out)
    inputs = [ROOT / "models" / "itp_v1.toml", ROOT / "fits" / "itp_v1_calibration.toml"]  # what the demo reads
    settings = DemoSettings(per_arm=args.per_arm, max_iterations=args.max_iterations, draws=args.draws,
                            sir_samples=args.sir or 0, vpc_draws=args.vpc_draws, trial_draws=args.trial_draws,
                            trial_patients=args.trial_patients, seed=args.seed)
    # The demo's widest batches are its 120-patient fit and its trial batches of patients.
    # staged_output claims --out (checks, lock) before any work, then writes it atomically.
    with staged_output(out, args.force, inputs) as staging, on_device(args.device, batch=2 * args.per_arm):
        result = run(staging, settings, progress=not args.quiet, say=lambda m: say(m, quiet=args.quiet))
    table = result.estimates
    if not result.converged:
        print(f"NOT CONVERGED: {result.convergence_message}\n"
              "The estimates below are not findings (raise --max-iterations).")
    else:
        print(f"FOCE-I: CONVERGED ({result.convergence_message})")
    inside = (table["lower95"] <= table["truth"]) & (table["truth"] <= table["upper95"])
    print("population parameters: FOCE-I estimate, SE, 95% interval, and the truth that generated the data "
          f"({int(inside.sum())} of {len(table)} truths inside their interval)")
    columns = ["parameter", "estimate", "se", "rse_pct", "lower95", "upper95", "truth", "unit"]
    if "sir_lower95" in table.columns:  # SIR's intervals (percentiles of its resamples) beside them
        columns[6:6] = ["sir_lower95", "sir_upper95"]
        sir_inside = (table["sir_lower95"] <= table["truth"]) & (table["truth"] <= table["sir_upper95"])
        print(f"SIR's 95% intervals (sir_lower95, sir_upper95): {int(sir_inside.sum())} of {len(table)} truths inside")
    print(table[columns].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    table = result.comparison
    rows = table[table["endpoint"].isin(["overall_response", "complete_response", "sustained_response"])]
    print("\neach arm against control (difference in response rate, 90% interval over the parameter draws, "
          "P(better)):")
    for _, row in rows.iterrows():
        print(f"  {row['comparison']:<70} {row['endpoint']:<19} {row['difference']:+.3f} "
              f"({row['lower']:+.3f} to {row['upper']:+.3f})  P {row['probability_better']:.2f}")
    t = result.timings
    print(f"\ntime: data {t['data_s']:.0f} s, fit {t['fit_s']:.0f} s, report {t['report_s']:.0f} s, "
          f"trials {t['trial_s']:.0f} s; total {t['total_s']:.0f} s")
    print(f"report:     {out / 'report' / 'index.html'}")
    print(f"estimates:  {out / 'fit' / 'estimates.csv'}")
    print(f"comparison: {out / 'comparison.csv'}")
    if not result.converged:
        say(f"itp-pd demo: the fit did not converge ({result.convergence_message}); exit code {EXIT_NOT_CONVERGED}")
        return EXIT_NOT_CONVERGED
    return EXIT_OK


def register(commands) -> None:
    demo = commands.add_parser(
        "demo", help="synthetic NCT07057778 trial → fit → diagnostic report → arm comparisons",
        description="Simulate a 120-patient NCT07057778-like trial from the default population, fit it "
                    "(FOCE-I, with its covariance step), write the diagnostic report, and compare the two "
                    "arms and two alternative regimens by virtual trials from the fit's parameter draws.",
        epilog=DEMO_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_output_options(demo, default="itp-pd-demo")
    add_device_option(demo)
    demo.add_argument("--per-arm", type=positive_int, default=60, help="patients per arm (default %(default)s)")
    demo.add_argument("--max-iterations", type=positive_int, default=100,
                      help="FOCE-I's BFGS iterations at most (default %(default)s)")
    demo.add_argument("--draws", type=positive_int, default=50,
                      help="parameter draws kept from the estimate's asymptotic normal (default %(default)s)")
    demo.add_argument("--sir", type=positive_int, default=None, metavar="N",
                      help="take the parameter draws by sampling importance resampling (PsN's sir) of N "
                           "proposals from the asymptotic normal (one OFV each: 7 s on a 2-core CPU; PsN's default "
                           "is 1000); without it, the draws come from the asymptotic normal")
    demo.add_argument("--vpc-draws", type=positive_int, default=40,
                      help="replicate trials for the VPC (default %(default)s)")
    demo.add_argument("--trial-draws", type=positive_int, default=20,
                      help="parameter draws for the arm comparison (default %(default)s)")
    demo.add_argument("--trial-patients", type=positive_int, default=150,
                      help="virtual patients per arm and draw (default %(default)s)")
    demo.add_argument("--seed", type=int, default=1, help="seed of everything (default %(default)s)")
    demo.set_defaults(run=run_demo)
