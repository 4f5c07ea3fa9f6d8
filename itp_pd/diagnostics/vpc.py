"""Visual predictive checks: plain and prediction-corrected, BLQ-aware, by arm.

Observed 5th, 50th and 95th percentiles per time bin are drawn over the 90% intervals of the
same percentiles across replicate trials simulated from the posterior (new patients, new
residual error, the fitted design). Prediction correction (Bergstrand et al. 2011, AAPS J
13:143) divides out the design: ``pcY = Y · median(PRED in bin) / PRED``, so bins that pool
different doses or covariates compare like with like.

BLQ (Bergstrand & Karlsson 2009, AAPS J 11:371): observed BLQ rows and simulated values under
the limit stay in the percentile computation as "below the limit"; a percentile that falls
below the limit is not drawn, and a lower panel compares the observed share BLQ with its
simulated 90% interval.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .figures import log_axis_if_positive, pyplot, save

PERCENTILES = (5.0, 50.0, 95.0)
MAX_NOMINAL_BINS = 30  # more distinct times than this → bins of equal counts


def time_bins(times: np.ndarray, n_bins: int = 10) -> np.ndarray:
    """Bin index per observation: the nominal times when there are few distinct ones (trial
    visits), else ``n_bins`` bins with equal counts."""
    distinct = np.unique(times)
    if len(distinct) <= MAX_NOMINAL_BINS:
        return np.searchsorted(distinct, times)
    edges = np.unique(np.quantile(times, np.linspace(0, 1, n_bins + 1)))
    return np.clip(np.searchsorted(edges, times, side="right") - 1, 0, len(edges) - 2)


BELOW_LIMIT = -1e300  # stands for "below the limit" inside percentile computations


def _percentiles(values, bins, n_bins):
    """``(len(PERCENTILES), n_bins)`` percentiles of ``values``; ``BELOW_LIMIT`` entries count
    as smaller than every measured value, and a percentile they reach comes back as −inf."""
    out = np.full((len(PERCENTILES), n_bins), np.nan)
    for b in range(n_bins):
        chunk = values[..., bins == b]
        if chunk.shape[-1]:
            out[:, b] = np.percentile(chunk, PERCENTILES, axis=-1, method="linear")
    return np.where(out < BELOW_LIMIT / 1e10, -np.inf, out)


def vpc_statistics(rows: pd.DataFrame, sims: np.ndarray, pred_sims: np.ndarray | None, *,
                   corrected: bool) -> dict:
    """Observed and simulated percentiles per bin for one output and arm.

    Args:
        rows: the observation rows of one output and arm (with ``PRED``, ``BLQ``, ``LLOQ``).
        sims: simulated observations ``(K, len(rows))``.
        corrected: prediction-corrected (divide by PRED, times the bin's median PRED).
    Returns:
        ``time`` (bin median, days), ``observed`` ``(3, bins)``, ``simulated`` ``(3 percentiles,
        3 (5/50/95 over replicates), bins)``, ``blq_observed`` and ``blq_simulated`` (share
        below the limit, observed ``(bins,)`` and simulated ``(3, bins)``), ``limit``.
    """
    times = rows["TIME"].to_numpy()
    bins = time_bins(times)
    n_bins = int(bins.max()) + 1
    dv = rows["DV"].to_numpy(dtype=float).copy()
    blq = rows["BLQ"].to_numpy()
    limit = np.nanmax(rows["LLOQ"].to_numpy()) if blq.any() else None
    sims = sims.copy()
    below_sim = sims < limit if limit is not None else np.zeros(sims.shape, dtype=bool)
    if corrected:
        pred = rows["PRED"].to_numpy()
        bin_median = np.array([np.median(pred[bins == b]) for b in range(n_bins)])
        factor = bin_median[bins] / pred
        dv, sims = dv * factor, sims * factor[None, :]
    dv[blq] = BELOW_LIMIT
    sims[below_sim] = BELOW_LIMIT
    observed = _percentiles(dv, bins, n_bins)
    per_replicate = np.stack([_percentiles(s, bins, n_bins) for s in sims])  # (K, 3, bins)
    finite = np.where(np.isneginf(per_replicate), BELOW_LIMIT, per_replicate)
    simulated = np.percentile(finite, (5, 50, 95), axis=0).transpose(1, 0, 2)  # (3 pct, 3 band, bins)
    simulated = np.where(simulated < BELOW_LIMIT / 1e10, -np.inf, simulated)
    blq_observed = np.array([blq[bins == b].mean() for b in range(n_bins)])
    blq_replicates = np.stack([[below_sim[k, bins == b].mean() for b in range(n_bins)] for k in range(len(sims))])
    return {
        "time": np.array([np.median(times[bins == b]) for b in range(n_bins)]),
        "observed": observed,
        "simulated": simulated,
        "blq_observed": blq_observed,
        "blq_simulated": np.percentile(blq_replicates, (5, 50, 95), axis=0),
        "limit": limit,
        "n": len(rows),
    }


def _finite(values):
    return np.where(np.isfinite(values), values, np.nan)


def outside_share(stats) -> float:
    """Share of observed percentile points (drawn ones) outside their simulated 90% interval."""
    observed, simulated = stats["observed"], stats["simulated"]
    drawn = np.isfinite(observed)
    outside = (observed < simulated[:, 0]) | (observed > simulated[:, 2])
    return float(np.mean(outside[drawn])) if drawn.any() else float("nan")


def plot_vpc(rows: pd.DataFrame, replicates, folder, *, corrected: bool, units: dict | None = None,
             source: str = "the posterior"):
    """VPC (or pcVPC) for every output, one column per arm; BLQ panels when there is a limit.
    ``units``: output name → its unit, for the y axes; ``source``: where the replicates'
    parameters came from, for the caption (``convergence.draws_source``)."""
    plt = pyplot()
    groups = [(output, arm, part) for output, by_output in rows.groupby("output", sort=False)
              for arm, part in by_output.groupby("ARM", sort=True)]
    arms = sorted(rows["ARM"].unique())
    outputs = list(dict.fromkeys(rows["output"]))
    has_blq = rows["BLQ"].any()
    panel_rows = len(outputs) * (2 if has_blq else 1)
    fig, axes = plt.subplots(panel_rows, len(arms), figsize=(5.2 * len(arms), 3.9 * panel_rows),
                             squeeze=False, sharex=True)
    shares = []
    for output, arm, part in groups:
        o, a = outputs.index(output), arms.index(arm)
        ax = axes[o * (2 if has_blq else 1), a]
        sims = replicates.dv[:, part["patient"].to_numpy(), part["slot"].to_numpy()]
        stats = vpc_statistics(part, sims, None, corrected=corrected)
        shares.append(outside_share(stats))
        weeks = stats["time"] / 7
        for i, (pct, style) in enumerate(zip(PERCENTILES, ("--", "-", "--"))):
            band = _finite(stats["simulated"][i])
            colour = "C0" if pct != 50 else "C3"
            ax.fill_between(weeks, band[0], band[2], color=colour, alpha=0.25, linewidth=0,
                            label=f"simulated {pct:g}th pct, 90% interval" if a == 0 else None)
            ax.plot(weeks, _finite(stats["observed"][i]), color="black", linestyle=style, linewidth=1.3,
                    label=f"observed {pct:g}th pct" if a == 0 else None)
        measured = part[~part["BLQ"]]
        if not corrected:  # the raw observations behind the percentiles
            ax.scatter(measured["TIME"] / 7, measured["DV"], s=3, color="grey", alpha=0.35, linewidths=0)
        if stats["limit"] is not None:
            ax.axhline(stats["limit"], color="C3", linestyle=":", linewidth=0.9)
        log_axis_if_positive(ax, np.concatenate([_finite(stats["simulated"]).ravel(), measured["DV"]]))
        ax.set_title(f"{output}, {arm} ({stats['n']} observations)", fontsize=9)
        unit = (units or {}).get(output)
        unit = None if unit in (None, "", "1") else unit  # a dimensionless output gets no "(1)"
        ax.set_ylabel(("prediction-corrected " if corrected else "") + output + (f" ({unit})" if unit else ""))
        if has_blq:
            low = axes[o * 2 + 1, a]
            band = stats["blq_simulated"]
            low.fill_between(weeks, band[0], band[2], color="C3", alpha=0.25, linewidth=0)
            low.plot(weeks, stats["blq_observed"], color="black", linewidth=1.2)
            low.set_ylabel("share BLQ")
            low.set_ylim(0, 1)
    for ax in axes[-1]:
        ax.set_xlabel("weeks")
    # Below the panels, not on them: inside, it covered a band of the data (seen in the demo's report).
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=3, frameon=False)
    fig.tight_layout(rect=(0, 0.07 / panel_rows, 1, 1))
    outside = np.nanmean(shares)
    kind = "Prediction-corrected VPC" if corrected else "Visual predictive check"
    name = "pcvpc.png" if corrected else "vpc.png"
    caption = (f"{replicates.dv.shape[0]} replicate trials simulated from {source} (new patients and "
               "residual errors, the same doses, visits and covariates). Black: observed 5th, 50th (solid) and "
               "95th percentiles per visit; shaded: the 90% interval of the same percentile over replicates "
               "(red: median). Observed lines inside their bands mean the model reproduces the data's "
               f"central tendency and spread; {100 * outside:.0f}% of observed percentile points fall outside "
               "their band (about 10% expected by chance).")
    if corrected:
        caption += (" Observations and simulations are divided by their population prediction and multiplied "
                    "by the bin's median one (Bergstrand 2011), removing the spread the design itself causes.")
    if has_blq:
        caption += (" Lower panels: share of observations below the limit (black) against its simulated 90% "
                    "interval; percentiles below the limit (dotted red line) are not drawn.")
    return save(fig, folder, name, kind, caption)
