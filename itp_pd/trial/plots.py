"""Figures of virtual trials: response over time, platelet trajectories, power curve.

Every function writes one PNG and returns its path. Matplotlib is imported, with the
non-interactive Agg backend, only when a figure is drawn: importing this module selects no
backend and costs nothing.

Units: time in weeks since the first treatment (results hold days), platelets in 10⁹/L,
response and power in percent (results hold fractions), patients per arm as counts.
"""

from __future__ import annotations

import numpy as np

QUANTILES = (5, 25, 50, 75, 95)  # percentiles of the trajectory bands
PLATELET_LEVELS = (30.0, 100.0)  # 10⁹/L: response (OR) and complete response (CR) thresholds
PLATELET_TICKS = (10, 20, 30, 50, 100, 200)  # 10⁹/L, labels of the log axis


def _pyplot():
    """``matplotlib.pyplot`` with the Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_response_over_time(result, path):
    """Share of patients with a confirmed OR by each day: median over draws and 90% band.

    Args:
        result: a ``TrialResult`` (``simulate_trial``); its per-patient ``time_to_response``
            (days) is read for days 0–365.
        path: PNG to write.

    Plots the percentage of patients (0–100) with a confirmed overall response by each week
    since first treatment, per arm: median over population draws and 5th–95th percentile band.

    Returns:
        ``path``.
    """
    plt = _pyplot()
    days = np.arange(0.0, 366.0, 1.0)
    curves = 100.0 * result.response_over_time(days)  # (draws, arms, days), %
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
    """Predicted platelets per arm over all draws and patients: median, 50% and 90% bands.

    Args:
        result: a ``TrialResult`` simulated with ``trajectories=True``: its ``platelets``
            ``(n_draws, n_arms, n_per_arm, n_visits)`` (10⁹/L) at ``visits`` (days).
        path: PNG to write.

    One panel per arm, weeks on the x axis, platelets (10⁹/L) on a log axis, dashed lines at
    30 and 100 ×10⁹/L; percentiles ``QUANTILES`` pooled over draws and patients.

    Returns:
        ``path``.
    """
    if result.platelets is None:
        raise ValueError("plot_trajectories needs a TrialResult simulated with trajectories=True")
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
        for level in PLATELET_LEVELS:
            ax.axhline(level, color="grey", linestyle="--", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_yticks(PLATELET_TICKS, labels=[str(t) for t in PLATELET_TICKS])
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
    """Expected power over patients per arm, 90% band over draws, the trial size and 80%.

    Args:
        power: a ``PowerResult`` (``trial_power``): power (fractions) over ``sample_sizes``
            (patients per arm, 1:1).
        path: PNG to write.

    Power in percent against patients per arm; dotted lines at the analysed trial's size and
    at the smallest size reaching the target power (when reached).

    Returns:
        ``path``.
    """
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


def plot_platelet_bands(visits, platelets, path, *, title: str = ""):
    """Platelets per arm over weeks: median and 5–95% band over patients, on a log axis.

    Args:
        visits: ``(n_visits,)`` visit days.
        platelets: arm name → ``(n_patients, n_visits)`` counts (10⁹/L); NaN (failed solves)
            are left out of the percentiles.
        path: PNG to write.
        title: a line under the figure's heading (e.g. where the population came from).

    One axis, one colour per arm, weeks since first treatment on the x axis, dashed lines at
    30 and 100 ×10⁹/L (response and complete response).

    Returns:
        ``path``.
    """
    plt = _pyplot()
    weeks = np.asarray(visits, dtype=float) / 7.0
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    styles = ("-", "--", "-.", ":")
    lowest, highest = 30.0, 100.0  # both reference lines stay in view
    for a, (arm, counts) in enumerate(platelets.items()):
        counts = np.asarray(counts, dtype=float)
        solved = np.isfinite(counts).all(axis=1)
        if not solved.any():
            continue
        low, mid, high = np.percentile(counts[solved], [5, 50, 95], axis=0)
        lowest, highest = min(lowest, float(np.min(low))), max(highest, float(np.max(high)))
        label = f"{arm} (n = {int(solved.sum())})"
        (line,) = ax.plot(weeks, mid, label=label, linestyle=styles[a % len(styles)], linewidth=1.6)
        ax.fill_between(weeks, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    for level in PLATELET_LEVELS:
        ax.axhline(level, color="grey", linestyle="--", linewidth=0.8)
    ax.set_yscale("log")
    ticks = [t for t in (1, 2, 5, *PLATELET_TICKS, 300, 500, 1000) if lowest / 1.5 <= t <= highest * 1.5]
    ax.set_yticks(ticks, labels=[str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("weeks since first treatment")
    ax.set_ylabel("predicted platelets (10⁹/L)")
    heading = "Platelets per arm: median and 5–95% band of virtual patients; dashed: 30 and 100 ×10⁹/L"
    ax.set_title(heading + (f"\n{title}" if title else ""), fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
