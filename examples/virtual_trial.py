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
import numpy as np

DEFAULT_ARMS = ("control", "combination", "combination (iguratimod qd)", "rituximab 100 mg x4")
QUANTILES = (5, 25, 50, 75, 95)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_response_over_time(result, path):
    """Share of patients with a confirmed OR by each day: median over draws and 90% band."""
    plt = _pyplot()
    days = np.arange(0.0, 366.0, 1.0)
    curves = 100.0 * result.response_over_time(days)  # (draws, arms, days)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    styles = ("-", "--", "-.", ":")  # arms with equal curves (e.g. 100 mg x4 and x6) stay visible
    for a, arm in enumerate(result.arms):
        low, mid, high = np.percentile(curves[:, a], [5, 50, 95], axis=0)
        (line,) = ax.plot(days / 7.0, mid, label=arm, linestyle=styles[a % len(styles)], linewidth=1.6)
        ax.fill_between(days / 7.0, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("weeks since first treatment")
    ax.set_ylabel("patients with a confirmed OR (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"Overall response over time: median and 90% band over {result.n_draws} draws\n"
                 f"{result.design.n_per_arm} virtual patients per arm and draw; {result.source.split(',')[0]}",
                 fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_trajectories(result, path):
    """Predicted platelets per arm over all draws and patients: median, 50% and 90% bands."""
    plt = _pyplot()
    arms = result.arms
    fig, axes = plt.subplots(1, len(arms), figsize=(3.6 * len(arms), 4.2), sharey=True, squeeze=False)
    weeks = result.visits / 7.0
    for ax, (a, arm) in zip(axes[0], enumerate(arms)):
        counts = result.platelets[:, a].reshape(-1, len(weeks))
        p5, p25, p50, p75, p95 = np.percentile(counts, QUANTILES, axis=0)
        ax.fill_between(weeks, p5, p95, alpha=0.15, color="C0", linewidth=0, label="5–95%")
        ax.fill_between(weeks, p25, p75, alpha=0.35, color="C0", linewidth=0, label="25–75%")
        ax.plot(weeks, p50, color="C0", label="median")
        for level in (30.0, 100.0):
            ax.axhline(level, color="grey", linestyle="--", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_yticks([10, 20, 30, 50, 100, 200], labels=["10", "20", "30", "50", "100", "200"])
        ax.minorticks_off()
        ax.set_title(arm, fontsize=9)
        ax.set_xlabel("weeks")
    axes[0][0].set_ylabel("predicted platelets (10⁹/L)")
    axes[0][0].legend(fontsize=8, loc="upper left")
    fig.suptitle("Predicted platelet counts per arm, pooled over draws and patients; dashed: 30 and 100 ×10⁹/L",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_power_curve(power, path):
    """Expected power over patients per arm, 90% band over draws, the trial size and 80%."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 4.5))
    ax.plot(power.sample_sizes, 100 * power.curve, color="C0", label="expected power (mean over draws)")
    ax.fill_between(power.sample_sizes, 100 * power.curve_lower, 100 * power.curve_upper, color="C0", alpha=0.2,
                    linewidth=0, label="5–95% over draws")
    ax.axhline(100 * power.target, color="grey", linestyle="--", linewidth=0.8)
    ax.axvline(power.n_per_arm, color="C3", linestyle=":", label=f"trial: {power.n_per_arm} per arm, "
               f"power {100 * power.power:.0f}%")
    if power.n_for_target is not None:
        ax.axvline(power.n_for_target, color="C2", linestyle=":",
                   label=f"{100 * power.target:.0f}% power: {power.n_for_target} per arm")
    ax.set_xlabel("patients per arm (1:1)")
    ax.set_ylabel("power (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"Power: OR {power.arm} vs {power.reference}, two-sided chi-square, α = {power.alpha}", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


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

    jax.config.update("jax_enable_x64", True)  # entry points choose float64, not the library
    from itp_pd.trial import TrialDesign, compare, population_source, simulate_trial, trial_power

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
