"""Simulate a NCT07057778-like trial from the calibrated ITP population (known truth) and write
it as a NONMEM-format CSV with its units sidecar: the dataset of ``fits/itp_trial_svi.toml``.

Both arms 1:1 (rituximab 100 mg weekly ×6, with or without iguratimod 25 mg twice daily for 26
weeks), the trial's 25 visits over a year, platelets measured with the spec's residual error,
BSA and ARM (0 control, 1 combination) as covariates; repeated doses as ADDL/II rows. The truth is the calibrated default
population (``fits/itp_v1_calibration.toml``) with the spec's iguratimod effects.

    python examples/simulate_itp_trial.py --per-arm 40 --out examples/data/itp_trial.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-arm", type=int, default=40)
    parser.add_argument("--weeks", type=float, default=52.0)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--out", type=Path, default=ROOT / "examples" / "data" / "itp_trial.csv")
    args = parser.parse_args(argv)

    from itp_pd.runtime import configure_entry_point

    configure_entry_point()  # every core, float64, the compilation cache (entry points choose)
    from itp_pd.data import write_nonmem
    from itp_pd.spec import load_spec
    from itp_pd.structural import model_from_spec
    from itp_pd.trial import make_arm
    from itp_pd.trial.calibration import load_calibration
    from itp_pd.trial.dataset import simulate_trial_dataset
    from itp_pd.trial.design import trial_visits

    spec = load_spec(ROOT / "models" / "itp_v1.toml").with_values(*load_calibration())
    arms = {name: make_arm(name) for name in ("control", "combination")}
    dataset, truth = simulate_trial_dataset(spec, model_from_spec(spec), arms, args.per_arm,
                                            trial_visits(args.weeks), seed=args.seed,
                                            expand_doses=False)
    write_nonmem(dataset, args.out)
    print(f"wrote {args.out}: {2 * args.per_arm} patients, {len(dataset.observations())} platelet counts")
    return dataset, truth


if __name__ == "__main__":
    main(sys.argv[1:])
