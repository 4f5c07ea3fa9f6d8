"""Goodness of fit: observations against population (PRED) and individual (IPRED) predictions,
normalised prediction discrepancies, and a page of individual fits.

NPD (Brendel et al. 2006, Pharm Res 23:2036; Comets et al. 2008, Comput Methods Programs
Biomed 90:154): for each observation, ``pd`` = the share of its simulated replicates below
it; ``npd = Φ⁻¹(pd)``. Under the model the NPD are standard normal. They are not decorrelated
within a patient (that is the NPDE), so neighbouring values of one patient may move together.
A BLQ observation gets ``pd`` drawn uniformly between 0 and the simulated share below its
limit (Nguyen et al. 2012, CPT:PSP 1:e4).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm

from .figures import log_axis_if_positive, pyplot, save

ARM_COLOURS = ("C0", "C3", "C2", "C1", "C4", "C5")


def prediction_discrepancies(rows: pd.DataFrame, replicates, *, seed: int = 0) -> np.ndarray:
    """NPD of each observation row (see the module docstring).

    Args:
        rows: ``observation_rows`` of the fit.
        replicates: ``Replicates`` (its ``dv`` has shape ``(K, n_patients, n_obs)``).
    Returns:
        ``(n_rows,)`` NPD; ``pd`` is kept in ``[1/(2K), 1 − 1/(2K)]`` so no value is infinite.
    """
    sims = replicates.dv[:, rows["patient"].to_numpy(), rows["slot"].to_numpy()]  # (K, rows)
    k = sims.shape[0]
    dv = rows["DV"].to_numpy()
    below = (sims < dv[None, :]).mean(axis=0) + 0.5 * (sims == dv[None, :]).mean(axis=0)
    blq = rows["BLQ"].to_numpy()
    if blq.any():
        rng = np.random.default_rng(seed)
        limit = rows["LLOQ"].to_numpy()
        share_below = (sims[:, blq] < limit[None, blq]).mean(axis=0)
        below[blq] = rng.uniform(0.0, 1.0, blq.sum()) * share_below
    pd_values = np.clip(below, 1.0 / (2 * k), 1.0 - 1.0 / (2 * k))
    return norm.ppf(pd_values)


def _by_output(rows):
    return [(name, group) for name, group in rows.groupby("output", sort=False)]


def plot_observed_vs_predicted(rows: pd.DataFrame, folder):
    """DV against PRED and against IPRED (posterior median), one row of panels per output."""
    plt = pyplot()
    outputs = _by_output(rows)
    fig, axes = plt.subplots(len(outputs), 2, figsize=(9.5, 4.2 * len(outputs)), squeeze=False)
    facts = []
    for (name, group), pair in zip(outputs, axes):
        measured = group[~group["BLQ"]]
        for ax, column, label in zip(pair, ("PRED", "IPRED"), ("population prediction (PRED)",
                                                               "individual prediction (IPRED)")):
            for colour, (arm, part) in zip(ARM_COLOURS, measured.groupby("ARM", sort=True)):
                ax.scatter(part[column], part["DV"], s=6, alpha=0.45, color=colour, label=arm, linewidths=0)
            values = np.concatenate([measured[column].to_numpy(), measured["DV"].to_numpy()])
            low, high = np.nanmin(values), np.nanmax(values)
            ax.plot([low, high], [low, high], color="black", linewidth=0.9)
            log_axis_if_positive(ax, values, "y")
            log_axis_if_positive(ax, values, "x")
            ax.set_xlabel(f"{label}, {name}")
            ax.set_ylabel(f"observed {name}")
            ratio = np.median(measured["DV"] / measured[column])
            facts.append(f"{name}: median DV/{column} {ratio:.3f}")
            ax.set_title(f"{name}: DV vs {column} (median ratio {ratio:.2f})", fontsize=9)
        if measured["ARM"].nunique() > 1:
            pair[0].legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    return save(fig, folder, "observed_vs_predicted.png", "Observed vs predicted",
                "Observations (BLQ rows left out) against population predictions (all etas 0, posterior "
                "medians) and individual predictions (median over posterior draws); the line is identity. "
                "IPRED should hug the line; PRED scatters more (between-patient variability) but should "
                "not bend away from it. " + "; ".join(facts) + ".")


def plot_npd(rows: pd.DataFrame, folder):
    """NPD against time and PRED, and their histogram against N(0, 1)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    npd = rows["NPD"].to_numpy()
    for colour, (arm, part) in zip(ARM_COLOURS, rows.groupby("ARM", sort=True)):
        axes[0].scatter(part["TIME"], part["NPD"], s=5, alpha=0.4, color=colour, label=arm, linewidths=0)
        axes[1].scatter(part["PRED"], part["NPD"], s=5, alpha=0.4, color=colour, linewidths=0)
    for ax, column in zip(axes[:2], ("TIME", "PRED")):
        _running_median(ax, rows[column].to_numpy(), npd)
        for level in (-1.96, 0.0, 1.96):
            ax.axhline(level, color="grey", linestyle="--" if level else "-", linewidth=0.8)
        ax.set_ylabel("NPD")
    axes[0].set_xlabel("time (days)")
    axes[1].set_xlabel("PRED")
    log_axis_if_positive(axes[1], rows["PRED"].to_numpy(), "x")
    if rows["ARM"].nunique() > 1:
        axes[0].legend(fontsize=7, markerscale=2)
    grid = np.linspace(-4, 4, 200)
    axes[2].hist(npd, bins=40, density=True, alpha=0.6, label="NPD")
    axes[2].plot(grid, norm.pdf(grid), color="black", linewidth=1, label="N(0, 1)")
    axes[2].set_xlabel("NPD")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    outside = np.mean(np.abs(npd) > 1.96)
    return save(fig, folder, "npd.png", "Normalised prediction discrepancies (NPD)",
                f"NPD of every observation (not decorrelated within a patient) against time and PRED, with a "
                f"running median (black); right: their distribution against N(0, 1). Mean {npd.mean():.2f} "
                f"(expected 0), sd {npd.std():.2f} (expected 1), {100 * outside:.1f}% outside ±1.96 "
                "(expected 5%). A trend against time or PRED shows where the structural model misses.")


def _running_median(ax, x, y, bins: int = 12):
    order = np.argsort(x)
    chunks = np.array_split(order, min(bins, max(1, len(order) // 10)))
    centres = [np.median(x[c]) for c in chunks if len(c)]
    medians = [np.median(y[c]) for c in chunks if len(c)]
    ax.plot(centres, medians, color="black", linewidth=1.4)


def choose_patients(rows: pd.DataFrame, count: int) -> list:
    """``count`` patient IDs spread evenly over the ID range, shared fairly between arms."""
    chosen = []
    arms = list(rows.groupby("ARM", sort=True))
    per_arm = max(1, count // len(arms))
    for _, part in arms:
        ids = part["ID"].drop_duplicates().to_numpy()
        take = np.unique(np.linspace(0, len(ids) - 1, min(per_arm, len(ids))).round().astype(int))
        chosen.extend(ids[take].tolist())
    return chosen[:count]


def plot_individual_fits(rows: pd.DataFrame, band: np.ndarray, pred: np.ndarray, fit, folder, *,
                         count: int = 16):
    """A page of patients: observations, IPRED median and 90% posterior band, PRED."""
    plt = pyplot()
    ids = choose_patients(rows, count)
    cols = 4
    n_rows = -(-len(ids) // cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(3.3 * cols, 2.6 * n_rows), squeeze=False, sharex=True)
    population = fit.population
    index_of = {float(i): k for k, i in enumerate(np.asarray(population.ids, dtype=float))}
    output_name = rows["output"].iloc[0]
    for ax, pid in zip(axes.ravel(), ids):
        part = rows[(rows["ID"] == pid) & (rows["output"] == output_name)]
        p = index_of[float(pid)]
        slots = part["slot"].to_numpy()
        time = part["TIME"].to_numpy()
        order = np.argsort(time)
        time, slots = time[order], slots[order]
        ax.fill_between(time / 7, band[0, p, slots], band[2, p, slots], alpha=0.25, color="C0", linewidth=0,
                        label="IPRED 90%")
        ax.plot(time / 7, band[1, p, slots], color="C0", linewidth=1.2, label="IPRED median")
        ax.plot(time / 7, pred[p, slots], color="grey", linestyle="--", linewidth=1, label="PRED")
        measured = part[~part["BLQ"]]
        ax.scatter(measured["TIME"] / 7, measured["DV"], s=10, color="black", zorder=3, label="observed")
        censored = part[part["BLQ"]]
        if len(censored):
            ax.scatter(censored["TIME"] / 7, censored["LLOQ"], marker="v", s=14, color="C3", zorder=3,
                       label="BLQ (at LLOQ)")
        log_axis_if_positive(ax, np.concatenate([measured["DV"], band[:, p, slots].ravel()]))
        ax.set_title(f"ID {pid:g} ({part['ARM'].iloc[0]})", fontsize=8)
    for ax in axes.ravel()[len(ids):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("weeks")
    axes[0][0].legend(fontsize=6)
    fig.suptitle(f"Individual fits, {output_name}", fontsize=10)
    fig.tight_layout()
    return save(fig, folder, "individual_fits.png", "Individual fits",
                f"{len(ids)} patients spread over the ID range and arms: observed {output_name} (dots), the "
                "median and 90% band of the individual prediction over posterior draws (blue) and the "
                "population prediction (grey dashed), joined between observation times. Observations should "
                "scatter around the band by the residual error; a run of points on one side means the model "
                "misses that patient's course.")
