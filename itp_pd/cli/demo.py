"""``itp-pd demo``: synthetic NCT07057778 → fit → diagnostic report → arm comparisons."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import EXIT_OK, add_device_option, add_output_options, positive_float, positive_int, say, staged_output

DEMO_EPILOG = """examples:
  itp-pd demo                          # the full demo into ./itp-pd-demo (about 10 minutes on a laptop CPU)
  itp-pd demo --out results --force    # replace an earlier demo (never a folder itp-pd did not write)
  itp-pd demo --per-arm 10 --steps 20 --vpc-draws 10 --trial-draws 2 --trial-patients 20   # a smoke test

Output: DIR/report/index.html (diagnostic report), DIR/fit/posterior.nc (the posterior, ArviZ
NetCDF), DIR/comparison.csv (each arm against control: difference, 90% credible interval,
P(better)), DIR/data/ (the synthetic dataset and the true parameters), DIR/fit.toml (the recipe).
"""


def run_demo(args) -> int:
    from ..demo import ROOT, DemoSettings, run_demo as run
    from ..devices import on_device

    out = Path(args.out)
    inputs = [ROOT / "models" / "itp_v1.toml", ROOT / "fits" / "itp_v1_calibration.toml"]  # what the demo reads
    settings = DemoSettings(per_arm=args.per_arm, steps=args.steps, learning_rate=args.learning_rate,
                            draws=args.draws, vpc_draws=args.vpc_draws,
                            trial_draws=args.trial_draws, trial_patients=args.trial_patients, seed=args.seed)
    # The demo's widest batches are its 120-patient fit and its trial batches of patients.
    # staged_output claims --out (checks, lock) before any work, then writes it atomically.
    with staged_output(out, args.force, inputs) as staging, on_device(args.device, batch=2 * args.per_arm):
        result = run(staging, settings, progress=not args.quiet, say=lambda m: say(m, quiet=args.quiet))
    summary = result.fit_summary[["mean", "q5", "q95"]].copy()
    summary["truth"] = [result.truth.get(name, float("nan")) for name in summary.index]
    if not result.converged:
        print(f"NOT CONVERGED: {result.convergence_message}\n"
              "The fit below is the demo's quick look (raise --steps, or fit the recipe with --method nuts): "
              "its numbers are not findings.")
    print("population parameters: posterior mean and 90% interval, and the truth that generated the data")
    print(summary.round(4).to_string())
    table = result.comparison
    rows = table[table["endpoint"].isin(["overall_response", "complete_response", "sustained_response"])]
    print("\neach arm against control (difference in response rate, 90% credible interval, P(better)):")
    for _, row in rows.iterrows():
        print(f"  {row['comparison']:<70} {row['endpoint']:<19} {row['difference']:+.3f} "
              f"({row['lower']:+.3f} to {row['upper']:+.3f})  P {row['probability_better']:.2f}")
    t = result.timings
    print(f"\ntime: data {t['data_s']:.0f} s, fit {t['fit_s']:.0f} s, report {t['report_s']:.0f} s, "
          f"trials {t['trial_s']:.0f} s; total {t['total_s']:.0f} s")
    print(f"report:     {out / 'report' / 'index.html'}")
    print(f"posterior:  {out / 'fit' / 'posterior.nc'}")
    print(f"comparison: {out / 'comparison.csv'}")
    return EXIT_OK


def register(commands) -> None:
    demo = commands.add_parser(
        "demo", help="synthetic NCT07057778 trial → fit → diagnostic report → arm comparisons",
        description="Simulate a 120-patient NCT07057778-like trial from the default population, fit it "
                    "(quick SVI), write the diagnostic report, and compare the two arms and two "
                    "alternative regimens by virtual trials from the posterior.",
        epilog=DEMO_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_output_options(demo, default="itp-pd-demo")
    add_device_option(demo)
    demo.add_argument("--per-arm", type=positive_int, default=60, help="patients per arm (default %(default)s)")
    demo.add_argument("--steps", type=positive_int, default=100, help="SVI steps (default %(default)s)")
    demo.add_argument("--learning-rate", type=positive_float, default=0.03,
                      help="SVI step size (Adam; default %(default)s)")
    demo.add_argument("--draws", type=positive_int, default=50, help="posterior draws kept (default %(default)s)")
    demo.add_argument("--vpc-draws", type=positive_int, default=40,
                      help="replicate trials for the VPC (default %(default)s)")
    demo.add_argument("--trial-draws", type=positive_int, default=20,
                      help="posterior draws for the arm comparison (default %(default)s)")
    demo.add_argument("--trial-patients", type=positive_int, default=150,
                      help="virtual patients per arm and draw (default %(default)s)")
    demo.add_argument("--seed", type=int, default=1, help="seed of everything (default %(default)s)")
    demo.set_defaults(run=run_demo)
