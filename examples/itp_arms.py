"""The two arms of NCT07057778 in the mechanistic ITP model, on calibrated virtual patients.

Shows the whole chain on the real model: the spec ``models/itp_v1.toml`` → the ITP model →
virtual patients of the calibrated population (all eligible: baseline platelets < 30×10⁹/L)
→ rituximab 100 mg IV weekly ×6, with or without iguratimod 25 mg twice daily for 26 weeks →
platelets, B cells, anti-platelet antibody and both drug concentrations twice a week to the
end of follow-up. Writes one figure (median and 5–95% band per arm) and a summary table.

    python examples/itp_arms.py --patients 300 --weeks 52 --out out/itp_arms
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

SPEC = Path(__file__).parents[1] / "models" / "itp_v1.toml"
ARMS = ("control", "combination")
OUTPUTS = ("PLT", "BCELL", "ANTIBODY", "C_RTX", "C_IGU")
PANELS = {  # output → (title, log axis)
    "PLT": ("platelets (10⁹/L)", False),
    "BCELL": ("CD20⁺ B cells (relative to baseline)", False),
    "ANTIBODY": ("anti-platelet IgG (relative to baseline)", False),
    "C_RTX": ("rituximab (mg/L)", True),
    # Every twice-weekly sample falls on a 12-hourly dose time and is taken before the dose.
    "C_IGU": ("iguratimod (mg/L, pre-dose trough)", False),
}
RTX_FLOOR = 0.1  # mg/L: bottom of the log axis; lower concentrations are drawn at the floor
QUANTILES = (5, 50, 95)


def summarise(times, results):
    """Long table: arm, week, output, p05, median, p95 (over patients the solver solved)."""
    import pandas as pd

    frames = []
    for key, (values, status) in results.items():
        solved = status == 0
        for output in OUTPUTS:
            low, mid, high = np.percentile(values[output][solved], QUANTILES, axis=0)
            frames.append(pd.DataFrame({
                "arm": key, "week": times / 7.0, "output": output,
                "p05": low, "median": mid, "p95": high,
            }))
    return pd.concat(frames, ignore_index=True)


def plot(summary, arms, n_patients, path):
    """Five panels, median line and 5–95% band per arm; writes a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, grid = plt.subplots(2, 3, figsize=(13.0, 7.5))
    axes, spare = grid.flat[: len(OUTPUTS)], grid.flat[len(OUTPUTS)]
    for ax, output in zip(axes, OUTPUTS):
        title, log = PANELS[output]
        for key in ARMS:
            rows = summary[(summary["arm"] == key) & (summary["output"] == output)]
            low, mid, high = (rows[c].to_numpy() for c in ("p05", "median", "p95"))
            if log:
                low, mid, high = (np.maximum(v, RTX_FLOOR) for v in (low, mid, high))
            (line,) = ax.plot(rows["week"], mid, label=arms[key].name)
            ax.fill_between(rows["week"], low, high, alpha=0.2, color=line.get_color(), linewidth=0)
        if output == "PLT":
            for level in (30.0, 100.0):
                ax.axhline(level, color="grey", linestyle="--", linewidth=0.8)
        if log:
            ax.set_yscale("log")
            ax.set_ylim(bottom=RTX_FLOOR)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("weeks")
    spare.axis("off")
    spare.legend(*axes[0].get_legend_handles_labels(), loc="center", title="arm (median, 5–95%)")
    fig.suptitle(
        f"NCT07057778 (rituximab ± iguratimod in ITP): {n_patients} virtual patients per arm",
        fontsize=11,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=300,
                        help="virtual patients (the same ones in both arms)")
    parser.add_argument("--weeks", type=float, default=52.0, help="follow-up (weeks)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("out/itp_arms"))
    args = parser.parse_args(argv)

    from itp_pd.runtime import configure_entry_point

    configure_entry_point()  # every core, float64, the compilation cache (entry points choose)
    from itp_pd.spec import load_spec
    from itp_pd.structural import model_from_spec
    from itp_pd.trial.calibration import calibrated_population
    from itp_pd.trial.design import nct07057778_arms
    from itp_pd.trial.simulate_arm import simulate_arm

    spec = load_spec(SPEC)
    model = model_from_spec(spec)
    params, bsa = calibrated_population(spec, args.patients, seed=args.seed)
    arms = nct07057778_arms()
    times = np.arange(0.0, 7.0 * args.weeks + 0.1, 3.5)  # twice weekly to the end of follow-up

    results = {}
    for key in ARMS:
        values, status = simulate_arm(model, params, arms[key], times, outputs=OUTPUTS, bsa=bsa)
        results[key] = (values, status)
        failures = int(np.sum(status != 0))
        print(f"{arms[key].name}: {failures} of {args.patients} patients failed to solve"
              + (" (left out of the summary)" if failures else ""))

    summary = summarise(times, results)
    args.out.mkdir(parents=True, exist_ok=True)
    summary.to_csv(args.out / "summary.csv", index=False)
    figure = plot(summary, arms, args.patients, args.out / "arms.png")
    print(f"wrote {figure} and {args.out / 'summary.csv'}")
    return {
        "times": times,
        **{key: {**values, "status": status} for key, (values, status) in results.items()},
    }


if __name__ == "__main__":
    main(sys.argv[1:])
