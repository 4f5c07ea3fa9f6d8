"""Forecast one patient: their first weeks of platelet counts → their posterior → each regimen.

Simulates one NCT07057778 patient on the control arm (rituximab 100 mg weekly) with counts
weekly for ``--weeks-observed`` weeks, written as NONMEM rows (``patient.csv``), or reads your
own dataset (``--data FILE --id N``). The patient's posterior given the population
(the default population prior, or ``--fit fits/<recipe>.toml``) is found by sampling
importance resampling, then each candidate arm is simulated for a year. Writes
``forecast.csv`` (probabilities of OR, CR, SR and relapse per arm) and ``forecast.png``
(observed counts and the 50%/90% posterior band of each arm).

    python examples/forecast_patient.py --out out/forecast
    python examples/forecast_patient.py --data my_trial.csv --id 17 --arms control combination
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np

DEFAULT_ARMS = ("control", "combination", "combination (iguratimod qd)")


def plot(forecast, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.0, 4.8))
    weeks = forecast.visits / 7.0
    table = forecast.table.set_index("arm")
    for index, (arm, counts) in enumerate(forecast.platelets.items()):
        p5, p25, p50, p75, p95 = np.percentile(counts, [5, 25, 50, 75, 95], axis=0)
        color = f"C{index}"
        ax.fill_between(weeks, p5, p95, color=color, alpha=0.12, linewidth=0)
        ax.fill_between(weeks, p25, p75, color=color, alpha=0.25, linewidth=0)
        ax.plot(weeks, p50, color=color,
                label=f"{arm}: P(OR) {100 * table.loc[arm, 'overall_response']:.0f}%, "
                      f"P(SR) {100 * table.loc[arm, 'sustained_response']:.0f}%")
    ax.plot(forecast.observed["TIME"] / 7.0, forecast.observed["DV"], "ko", label="observed counts")
    for level in (30.0, 100.0):
        ax.axhline(level, color="grey", linestyle="--", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_yticks([10, 20, 30, 50, 100, 200], labels=["10", "20", "30", "50", "100", "200"])
    ax.minorticks_off()
    ax.set_xlabel("weeks since first treatment")
    ax.set_ylabel("platelets (10⁹/L)")
    ax.set_title(f"Patient {forecast.patient_id:g}: posterior median, 50% and 90% bands per arm "
                 f"(ESS {forecast.ess:.0f} of {forecast.n_candidates})", fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="NONMEM-format dataset holding the patient")
    parser.add_argument("--id", type=float, default=1.0, help="the patient's ID")
    parser.add_argument("--weeks-observed", type=int, default=6, help="weeks of counts (simulated patient)")
    parser.add_argument("--arms", nargs="+", default=list(DEFAULT_ARMS))
    parser.add_argument("--fit", type=Path, default=None, help="a fit recipe whose posterior to use")
    parser.add_argument("--draws", type=int, default=20, help="population draws")
    parser.add_argument("--candidates", type=int, default=4000)
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--weeks", type=float, default=52.0, help="forecast horizon (weeks)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-cache", action="store_true", help="do not keep compiled programs on disk")
    parser.add_argument("--out", type=Path, default=Path("out/forecast"))
    args = parser.parse_args(argv)

    from itp_pd.runtime import configure_entry_point

    # Every core, float64, and (unless --no-cache) compiled programs kept for a second run.
    configure_entry_point(cache=not args.no_cache)
    from itp_pd.data import read_nonmem, write_nonmem
    from itp_pd.structural import model_from_spec
    from itp_pd.trial import TrialDesign, forecast_patient, make_arm, population_source
    from itp_pd.trial.dataset import simulate_trial_dataset

    key = jax.random.PRNGKey(args.seed)
    source_key, forecast_key = jax.random.split(key)
    source = population_source(args.fit, args.draws, key=source_key)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.data is None:
        visits = 7.0 * np.arange(args.weeks_observed + 1)
        dataset, truth = simulate_trial_dataset(source.spec, model_from_spec(source.spec),
                                                {"control": make_arm("control")}, 1, visits, seed=args.seed)
        write_nonmem(dataset, args.out / "patient.csv")
        print(f"simulated patient: PLT0 {truth['PLT0'][0]:.1f}, FL {truth['FL'][0]:.3g}, FT {truth['FT'][0]:.3g}")
        args.id = 1.0
    else:
        dataset = read_nonmem(args.data)

    start = time.perf_counter()
    forecast = forecast_patient(source, dataset, args.id, args.arms, key=forecast_key,
                                design=TrialDesign(follow_up_weeks=args.weeks),
                                n_candidates=args.candidates, n_samples=args.samples)
    seconds = time.perf_counter() - start
    forecast.table.to_csv(args.out / "forecast.csv", index=False)
    figure = plot(forecast, args.out / "forecast.png")
    print(forecast.table.round(3).to_string(index=False))
    print(f"forecast in {seconds:.1f} s (ESS {forecast.ess:.0f}); wrote {figure}")
    return forecast


if __name__ == "__main__":
    main(sys.argv[1:])
