"""A virtual NCT07057778 and its alternatives: endpoints with uncertainty, comparisons and power.

Draws population values from the default population prior (calibrated ``itp_v1``, iguratimod's
effect sizes from their priors) or from a finished fit (``--fit fits/<recipe>.toml``), enrols
new virtual patients for every draw, gives each of them every arm, and writes:

- ``endpoints.csv``: OR, CR, SR, median time to response, relapse by 6 and 12 months per draw × arm;
- ``comparison.csv``: each arm against the first (difference, 90% credible interval,
  probability of being better);
- ``power.json`` and ``power_curve.csv``: power of the trial as analysed (60 per arm, OR within
  a year, two-sided chi-square at 0.05) with its 90% interval, and patients per arm for 80%;
- ``response_over_time.png``, ``trajectories.png``, ``power_curve.png``.

    python examples/virtual_trial.py --draws 50 --patients 500 --out out/virtual_trial
    python examples/virtual_trial.py --arms control "rituximab 100 mg x4" "rituximab 375 mg/m2 x4"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax

DEFAULT_ARMS = ("control", "combination", "combination (iguratimod qd)", "rituximab 100 mg x4")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=20, help="population draws (prior or posterior)")
    parser.add_argument("--patients", type=int, default=300, help="virtual patients per arm and draw")
    parser.add_argument("--trial-patients", type=int, default=60, help="patients per arm of the analysed trial")
    parser.add_argument("--weeks", type=float, default=52.0, help="follow-up (weeks)")
    parser.add_argument("--arms", nargs="+", default=list(DEFAULT_ARMS),
                        help="arms (named arms or regimens joined by '+'); the first is the reference")
    parser.add_argument("--fit", type=Path, default=None, help="a fit recipe whose posterior to use")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("out/virtual_trial"))
    args = parser.parse_args(argv)

    from itp_pd.runtime import configure_entry_point

    configure_entry_point()  # every core, float64, the compilation cache (entry points choose)
    from itp_pd.trial import TrialDesign, compare, population_source, simulate_trial, trial_power
    from itp_pd.trial.plots import plot_power_curve, plot_response_over_time, plot_trajectories

    key = jax.random.PRNGKey(args.seed)
    source_key, trial_key = jax.random.split(key)
    source = population_source(args.fit, args.draws, key=source_key)
    design = TrialDesign(n_per_arm=args.patients, follow_up_weeks=args.weeks)
    result = simulate_trial(source, args.arms, design, key=trial_key, trajectories=True)

    args.out.mkdir(parents=True, exist_ok=True)
    result.table.to_csv(args.out / "endpoints.csv", index=False)
    reference = result.arms[0]
    comparisons = [compare(result, arm, reference).assign(comparison=f"{arm} vs {reference}")
                   for arm in result.arms[1:]]
    if comparisons:
        import pandas as pd

        pd.concat(comparisons, ignore_index=True).to_csv(args.out / "comparison.csv", index=False)
    figures = [plot_response_over_time(result, args.out / "response_over_time.png"),
               plot_trajectories(result, args.out / "trajectories.png")]
    power = None
    if len(result.arms) > 1:
        power = trial_power(result, result.arms[1], reference, n_per_arm=args.trial_patients)
        (args.out / "power.json").write_text(json.dumps(power.summary(), indent=2) + "\n")
        power.curve_table().to_csv(args.out / "power_curve.csv", index=False)
        figures.append(plot_power_curve(power, args.out / "power_curve.png"))
        print(f"power of {power.arm} vs {reference} at {power.n_per_arm} per arm: {100 * power.power:.1f}% "
              f"(90% interval {100 * power.interval[0]:.1f}-{100 * power.interval[1]:.1f}%); "
              f"80% power needs {power.n_for_target} per arm")
    print(result.table.groupby("arm", sort=False)[["overall_response", "complete_response",
                                                    "sustained_response"]].mean().round(3).to_string())
    print("wrote " + ", ".join(str(f) for f in figures))
    return result, power


if __name__ == "__main__":
    main(sys.argv[1:])
