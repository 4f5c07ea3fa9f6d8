"""Leave-one-patient-out cross-validation (PSIS-LOO, Vehtari et al. 2017, Stat Comput 27:1413).

The unit left out is a patient, not an observation: a patient's log-likelihood is the sum over
their observations, which is what predicting a new patient's series needs. Pareto k above 0.7
marks a patient whose removal the importance sampling cannot estimate (they are influential
or poorly fitted); such patients are listed by name.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from .figures import pyplot, save

K_LIMIT = 0.7


def patient_loo(fit):
    """``(loo, table)``: ArviZ's ELPDData and a per-patient table (ID, elpd, pareto_k), or
    ``(None, None)`` for a single-draw (MAP) fit."""
    if fit.n_draws < 2:
        return None, None
    log_likelihood = fit.idata.log_likelihood["DV"].sum(dim="obs")  # (chain, draw, patient)
    data = az.InferenceData(log_likelihood=xr.Dataset({"DV": log_likelihood}),
                            posterior=fit.idata.posterior)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # high-k warnings are reported in the table instead
        result = az.loo(data, pointwise=True)
    table = pd.DataFrame({"ID": log_likelihood["patient"].values, "elpd": result.loo_i.values,
                          "pareto_k": result.pareto_k.values})
    return result, table


def plot_loo(fit, result, table: pd.DataFrame, folder):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    ids = table["ID"].to_numpy()
    k = table["pareto_k"].to_numpy()
    high = k > K_LIMIT
    axes[0].scatter(ids, k, s=12, color=np.where(high, "C3", "C0"))
    axes[0].axhline(K_LIMIT, color="grey", linestyle="--", linewidth=0.9)
    axes[0].set_xlabel("patient ID")
    axes[0].set_ylabel("Pareto k")
    labelled = np.argsort(k)[::-1][:min(int(high.sum()), 8)]  # the most influential, not a wall of labels
    for pid, value in zip(ids[labelled], k[labelled]):
        axes[0].annotate(f"{pid:g}", (pid, value), fontsize=7, xytext=(2, 2), textcoords="offset points")
    elpd = table["elpd"].to_numpy()
    worst = np.argsort(elpd)[:5]
    axes[1].scatter(ids, elpd, s=12, color="C0")
    axes[1].scatter(ids[worst], elpd[worst], s=18, color="C3")
    for i in worst:
        axes[1].annotate(f"{ids[i]:g}", (ids[i], elpd[i]), fontsize=7, xytext=(2, 2), textcoords="offset points")
    axes[1].set_xlabel("patient ID")
    axes[1].set_ylabel("elpd of the patient left out")
    fig.tight_layout()
    flagged = (", ".join(f"{pid:g}" for pid in ids[high]) or "none") if high.sum() <= 10 else (
        f"{int(high.sum())} patients; the {len(labelled)} highest are labelled")
    caption = (f"PSIS-LOO with whole patients left out: elpd_loo {result.elpd_loo:.1f} (SE {result.se:.1f}), "
               f"p_loo {result.p_loo:.1f}. Left: Pareto k per patient; above {K_LIMIT} (dashed) the estimate is "
               f"unreliable and the patient is influential: {flagged}. Right: each patient's expected log "
               "predictive density; the five lowest (red) are the patients the model predicts worst — look at "
               "their individual fits first.")
    if high.mean() > 0.3:
        caption += (f" Here {100 * high.mean():.0f}% of patients exceed {K_LIMIT}: a patient's random effects are "
                    "informed by their own data alone, so leaving a whole patient out moves the posterior too far "
                    "for importance sampling, and elpd_loo is unreliable. Read k as a ranking of influence, and use "
                    "K-fold cross-validation (refits without groups of patients) for a trustworthy elpd.")
    if fit.method == "svi":
        caption += (" SVI: the draws come from an approximation of the posterior, so the importance weights "
                    "also correct for the approximation, and high k may reflect it.")
    return save(fig, folder, "loo.png", "Leave-one-patient-out cross-validation", caption)
