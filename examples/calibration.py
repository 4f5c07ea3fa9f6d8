"""Calibration of the default virtual population against the targets of science.md §4.

Prints the table C1–C10 (target, published value, simulated value with its 95% Monte Carlo
interval, acceptable range, pass/fail) for the calibrated population in
``fits/itp_v1_calibration.toml`` and writes it to JSON. With ``--fit`` it first re-runs the
calibration itself (Nelder–Mead on the population values the platelet data cannot pin,
common random numbers; see ``itp_pd.trial.calibration``) and rewrites that file.

    python examples/calibration.py --json out/calibration.json
    python examples/calibration.py --fit            # ~10 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


MODEL = Path(__file__).parents[1] / "models" / "itp_v1.toml"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None, help="write the table to this JSON file")
    parser.add_argument("--patients", type=int, default=2000, help="virtual patients per arm (>= 2000 for the targets)")
    parser.add_argument("--prior-draws", type=int, default=100, help="draws of the iguratimod-effect prior (C8; 40 draws give a ±12-point interval)")
    parser.add_argument("--prior-patients", type=int, default=250, help="patients per prior draw (C8)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fit", action="store_true", help="re-run the calibration first")
    parser.add_argument("--fit-patients", type=int, default=1000)
    parser.add_argument("--fit-evaluations", type=int, default=150)
    parser.add_argument("--calibration", type=Path, default=None, help="calibration file (default fits/itp_v1_calibration.toml)")
    args = parser.parse_args(argv)

    from itp_pd.runtime import configure_entry_point

    configure_entry_point()  # every core, float64, the compilation cache (entry points choose)
    from itp_pd.spec import load_spec
    from itp_pd.trial.calibration import CALIBRATION_FILE, calibrate, calibration_table, write_calibration

    spec = load_spec(MODEL)
    path = args.calibration or CALIBRATION_FILE
    if args.fit:
        fit_seed = 20261122
        typical, omega, values, loss = calibrate(
            spec, n_patients=args.fit_patients, seed=fit_seed, max_evaluations=args.fit_evaluations
        )
        write_calibration(typical, omega, values, loss, path, n_patients=args.fit_patients, seed=fit_seed)
        print(f"wrote {path}")
    rows, failures = calibration_table(
        spec, n_patients=args.patients, seed=args.seed, n_prior_draws=args.prior_draws,
        prior_patients=args.prior_patients, calibration=path,
    )
    print(f"{'id':5} {'quantity':72} {'simulated':>9} {'95% MC interval':>17} {'range':>13}  pass")
    for row in rows:
        low, high = row["interval"]
        print(f"{row['id']:5} {row['quantity'][:72]:72} {row['simulated']:9.2f} [{low:7.2f},{high:7.2f}] "
              f"[{row['range'][0]:5.1f},{row['range'][1]:5.1f}]  {'yes' if row['pass'] else 'NO'}")
    print(f"solver failures: {failures}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
        print(f"wrote {args.json}")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
