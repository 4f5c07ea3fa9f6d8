"""Convergence: R-hat, ESS, divergences, solver failures; trace, rank and loss plots.

R-hat and bulk/tail ESS are ArviZ's rank-normalised ones (Vehtari et al. 2021, Bayesian
Analysis 16:667). They measure the convergence of MCMC chains; for SVI the draws are
independent draws from the fitted approximation (the loss trace is what shows convergence),
and a MAP fit has a single point. A FOCE-I or Laplace fit (maximum likelihood) is judged by its
own criteria (the gradient, or the distance to the optimum in standard errors), its OFV per
iteration and its covariance step; its table is ``estimates.csv``.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd

from ..inference import population_sites
from .figures import pyplot, save

RHAT_LIMIT = 1.01  # Vehtari et al. 2021
ESS_LIMIT = 400  # bulk and tail ESS per parameter, ibid. (100 per chain for 4 chains)
MAXIMUM_LIKELIHOOD = ("focei", "laplace")


def draws_source(fit) -> str:
    """Where the fit's parameter draws come from, for captions: the posterior (NUTS, SVI,
    MAP), or, for FOCE-I/Laplace, the draws around the estimate (asymptotic normal or SIR)."""
    if fit.method in MAXIMUM_LIKELIHOOD:
        how = fit.diagnostics.get("draws_from", "asymptotic normal of the estimate")
        return f"the {'FOCE-I' if fit.method == 'focei' else 'Laplace'} estimate's parameter draws ({how})"
    return "the posterior"


def convergence_table(fit) -> pd.DataFrame:
    """The fit's summary table with a verdict column per population parameter; for FOCE-I and
    Laplace, ``estimates.csv`` (estimate, SE, RSE%, 95% interval, unit)."""
    if fit.method in MAXIMUM_LIKELIHOOD and (fit.directory / "estimates.csv").is_file():
        return pd.read_csv(fit.directory / "estimates.csv").set_index("parameter")
    table = fit.summary.copy()
    if fit.method == "nuts":
        ok = (table["r_hat"] <= RHAT_LIMIT) & (table["ess_bulk"] >= ESS_LIMIT) & (table["ess_tail"] >= ESS_LIMIT)
        table["verdict"] = np.where(ok, "ok", "check")
    return table


def convergence_facts(fit) -> list[str]:
    """One line per convergence figure, for the report's text."""
    d = fit.diagnostics
    if d["method"] in MAXIMUM_LIKELIHOOD:
        return _maximum_likelihood_facts(d)
    facts = [f"method: {d['method']}, {d['chains']} chain(s) × {d['draws']} draws; compile {d['compile_s']:.1f} s, "
             f"run {d['run_s']:.1f} s on {d['device']}",
             f"solver failures during the fit: {d['solver_failures']} log-density evaluations "
             "(each rejected, never crashed)"]
    if d["method"] == "nuts":
        facts.append(f"divergent transitions: {d['divergences']}")
        facts.append(f"max R-hat {d['max_rhat']:.3f} (limit {RHAT_LIMIT}); min bulk ESS {d['min_ess_bulk']:.0f}, "
                     f"min tail ESS {d['min_ess_tail']:.0f} (limit {ESS_LIMIT})")
    elif d["method"] == "svi":
        facts.append("SVI: R-hat and ESS do not apply to independent draws from the approximation; "
                     f"final loss {d['final_loss']:.6g} (see the loss trace)")
    else:
        facts.append(f"MAP: a single point, no uncertainty; final loss {d['final_loss']:.6g}")
    return facts


def _maximum_likelihood_facts(d: dict) -> list[str]:
    cov = d["covariance_step"]
    facts = [f"method: {d['method']} (maximum likelihood), {d['outer_iterations']} BFGS iterations, "
             f"{d['objective_evaluations']} objective evaluations, {d['model_solves']} batched model solves; "
             f"run {d['run_s']:.1f} s on {d['device']}",
             f"OFV {d['ofv']:.4f} (-2 log L without n·log 2π, as NONMEM prints; with it "
             f"{d['ofv_with_constant']:.4f}); AIC {d['aic']:.2f}, BIC {d['bic']:.2f}; "
             f"{d['estimated_parameters']} estimated parameters, {d['observations']} observations of "
             f"{d['patients']} patients",
             f"covariance step ({cov['kind']}): " + (("ok" if cov["message"] == "ok" else f"ok: {cov['message']}")
                                                      if cov["ok"] else f"FAILED: {cov['message']}"),
             f"patients whose inner problem (the mode of their random effects) failed: {d['inner_failures']}",
             f"the {d['draws']} parameter draws used for simulation: {d.get('draws_from', 'not recorded')}"]
    sir = d.get("sir")
    if sir:  # how well the normal proposal covered the likelihood (PsN's sir)
        facts.append(f"SIR: {sir['resamples']} resamples of {sir['samples']} proposals, importance ESS "
                     f"{sir['ess']:.0f} of {sir['samples']} ({sir['failed']} proposals failed, weight 0); "
                     f"{sir.get('run_s', float('nan')):.0f} s")
    shrinkage = d.get("eta_shrinkage_pct") or {}
    if shrinkage:
        facts.append("eta-shrinkage: " + ", ".join(f"{name} {value:.1f}%" for name, value in shrinkage.items()))
    return facts


def plot_trace(fit, folder):
    """Trace plot (ArviZ) of every population parameter."""
    names = population_sites(fit.idata.posterior.data_vars)
    pyplot()  # selects the Agg backend before ArviZ draws
    axes = az.plot_trace(fit.idata, var_names=names, compact=True, figsize=(10, 1.7 * len(names)))
    fig = np.ravel(axes)[0].figure
    fig.tight_layout()
    chains = fit.idata.posterior.sizes["chain"]
    caption = (f"Left: posterior density of each population parameter, one line per chain ({chains}); right: "
               "the draws in order. Well-mixed chains overlap and look like stationary noise.")
    if fit.method == "svi":
        caption += " SVI: the 'chain' is independent draws from the fitted approximation, not a Markov chain."
    return save(fig, folder, "trace.png", "Trace plots", caption)


def plot_rank(fit, folder):
    """Rank plots (Vehtari et al. 2021): each chain's share of the pooled ranks."""
    names = population_sites(fit.idata.posterior.data_vars)
    plt = pyplot()
    n = len(names)
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    az.plot_rank(fit.idata, var_names=names, ax=axes.ravel()[:n])
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    return save(fig, folder, "rank.png", "Rank plots",
                "Histograms of each chain's ranks among all draws. Converged chains give flat, "
                "overlapping histograms; a chain stuck elsewhere shows as a slope or a hump.")


def plot_losses(fit, folder):
    """Optimisation loss per step (SVI: negative ELBO; MAP: negative log density; FOCE-I and
    Laplace: the OFV per BFGS iteration)."""
    plt = pyplot()
    losses = fit.losses
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    steps = np.arange(1, len(losses) + 1)
    unit = "iteration" if fit.method in MAXIMUM_LIKELIHOOD else "step"
    axes[0].plot(steps, losses, linewidth=0.8)
    axes[0].set_xlabel(unit)
    axes[0].set_ylabel("OFV (-2 log L)" if fit.method in MAXIMUM_LIKELIHOOD else "loss")
    axes[0].set_title(f"all {unit}s", fontsize=9)
    tail = max(1, len(losses) // 2)
    axes[1].plot(steps[-tail:], losses[-tail:], linewidth=0.8)
    axes[1].set_xlabel(unit)
    axes[1].set_title("second half (zoomed)", fontsize=9)
    fig.tight_layout()
    if fit.method in MAXIMUM_LIKELIHOOD:
        return save(fig, folder, "loss.png", "Objective function value",
                    f"The OFV after each BFGS iteration ({len(losses)}). It falls at every accepted "
                    "iteration by construction; convergence is judged by the gradient and the step "
                    "criteria in the banner above, not by this curve flattening.")
    what = "negative ELBO" if fit.method == "svi" else "negative log posterior density"
    third_quarter = np.median(losses[len(losses) // 2: 3 * len(losses) // 4]) if len(losses) >= 4 else np.nan
    last = np.median(losses[3 * len(losses) // 4:]) if len(losses) >= 4 else np.nan
    # What convergence looks like, not a verdict: the verdict is the report's banner (it read
    # "Converged: flat ..." under a NOT CONVERGED banner in the demo's report).
    return save(fig, folder, "loss.png", "Optimisation loss",
                f"The {what} per step. A converged run is flat in the second half, with noise only. Median "
                f"of the third quarter {third_quarter:.6g}, of the last quarter {last:.6g}.")
