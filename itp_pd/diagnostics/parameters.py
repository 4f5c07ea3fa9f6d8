"""What the data did to the parameters: eta shrinkage, and each population parameter's prior
against its posterior.

Eta shrinkage (Savic & Karlsson 2009, AAPS J 11:558): ``1 − sd_i(E[eta_i]) / omega``, with the
posterior mean of each patient's eta and the posterior mean of omega (or its fixed value). Above
about 30%, individual estimates (and plots made from them) are pulled towards the population
and say little about the individual.

Prior against posterior: the prior of every population-level site comes from the spec that
was fitted (``pop_``, ``omega_``, ``beta_``, ``sigma_``); "contraction" is
``1 − var(posterior) / var(prior)`` (Schad et al. 2021, Psychol Methods 26:103): near 1 the data
decided, near 0 the prior did.
"""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd

from ..stats.model import sigma_sites
from .figures import pyplot, save

SHRINKAGE_WARNING = 0.3


def eta_shrinkage(fit) -> pd.DataFrame:
    """Per random effect: omega (posterior mean or fixed), sd of the patients' posterior-mean
    etas, and the shrinkage."""
    posterior = fit.idata.posterior
    rows = []
    for name in sorted(v for v in posterior.data_vars if v.startswith("eta_")):
        parameter = name[len("eta_"):]
        etas = posterior[name].values.reshape(-1, posterior[name].shape[-1])
        omega_site = f"omega_{parameter}"
        omega = (float(posterior[omega_site].values.mean()) if omega_site in posterior
                 else float(fit.spec.parameter(parameter).iiv.sd))
        spread = float(etas.mean(axis=0).std(ddof=1))
        rows.append({"parameter": parameter, "omega": omega, "sd_of_mean_etas": spread,
                     "shrinkage": 1.0 - spread / omega})
    return pd.DataFrame(rows, columns=["parameter", "omega", "sd_of_mean_etas", "shrinkage"]).set_index("parameter")


def plot_shrinkage(table: pd.DataFrame, folder):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(table) + 2), 3.4))
    colours = ["C3" if s > SHRINKAGE_WARNING else "C0" for s in table["shrinkage"]]
    ax.bar(table.index, 100 * table["shrinkage"], color=colours)
    ax.axhline(100 * SHRINKAGE_WARNING, color="grey", linestyle="--", linewidth=0.9)
    ax.set_ylabel("eta shrinkage (%)")
    ax.set_ylim(min(0, 100 * table["shrinkage"].min() - 5), 100)
    for x, s in enumerate(table["shrinkage"]):
        ax.text(x, 100 * s + 2, f"{100 * s:.0f}%", ha="center", fontsize=8)
    fig.tight_layout()
    listing = ", ".join(f"{p} {100 * s:.0f}%" for p, s in table["shrinkage"].items())
    return save(fig, folder, "shrinkage.png", "Eta shrinkage",
                f"1 − sd(posterior-mean etas)/omega per random effect: {listing}. Red bars are above "
                f"{100 * SHRINKAGE_WARNING:.0f}% (dashed), where individual estimates lean on the population and "
                "individual-level plots (IPRED, eta-covariate plots) should be read with care.")


def prior_distributions(spec) -> dict:
    """``site → numpyro distribution`` of every population-level site the spec can sample."""
    priors = {}
    for p in spec.parameters:
        if p.estimate and p.prior is not None:
            priors[f"pop_{p.name}"] = p.prior.to_numpyro()
        if p.iiv is not None and p.iiv.prior is not None:
            priors[f"omega_{p.name}"] = p.iiv.prior.to_numpyro()
        for effect in p.covariates:
            if effect.estimate_exponent:
                priors[f"beta_{p.name}_{effect.covariate}"] = effect.exponent_prior.to_numpyro()
    for observation in spec.observations:
        for _, name, _, prior in sigma_sites(observation):
            if prior is not None:
                priors[name] = prior.to_numpyro()
    return priors


def prior_posterior_table(fit, *, n_prior: int = 4000, key=None) -> tuple[pd.DataFrame, dict]:
    """Prior and posterior median, 90% interval and sd of each population parameter, the
    shift of the median in prior sds, and the contraction; plus the prior draws."""
    key = jax.random.PRNGKey(0) if key is None else key
    posterior = fit.idata.posterior
    priors = prior_distributions(fit.spec)
    rows, prior_draws = [], {}
    for name, distribution in priors.items():
        if name not in posterior:
            continue  # e.g. omega of a parameter fitted without a random effect
        key, sub = jax.random.split(key)
        with jax.numpy_dtype_promotion("standard"):
            draws = np.asarray(distribution.sample(sub, (n_prior,)), dtype=float)
        post = posterior[name].values.reshape(-1)
        prior_draws[name] = draws
        prior_sd, post_sd = draws.std(), post.std() if post.size > 1 else np.nan
        rows.append({
            "parameter": name,
            "prior_median": np.median(draws), "prior_q5": np.quantile(draws, 0.05), "prior_q95": np.quantile(draws, 0.95),
            "posterior_median": np.median(post), "posterior_q5": np.quantile(post, 0.05),
            "posterior_q95": np.quantile(post, 0.95),
            "shift_in_prior_sd": (np.median(post) - np.median(draws)) / prior_sd,
            "contraction": 1.0 - post_sd**2 / prior_sd**2 if post.size > 1 else np.nan,
        })
    return pd.DataFrame(rows).set_index("parameter"), prior_draws


def plot_prior_posterior(fit, table: pd.DataFrame, prior_draws: dict, folder):
    """One panel per population parameter: prior and posterior densities (histograms)."""
    plt = pyplot()
    posterior = fit.idata.posterior
    names = list(table.index)
    cols = min(4, len(names))
    n_rows = -(-len(names) // cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(3.3 * cols, 2.6 * n_rows), squeeze=False)
    for ax, name in zip(axes.ravel(), names):
        prior = prior_draws[name]
        post = posterior[name].values.reshape(-1)
        positive = prior.min() > 0 and post.min() > 0
        transform = np.log10 if positive and np.quantile(prior, 0.95) / np.quantile(prior, 0.05) > 20 else None
        shown_prior = transform(prior) if transform else prior
        shown_post = transform(post) if transform else post
        low, high = np.quantile(np.concatenate([shown_prior, shown_post]), [0.005, 0.995])
        bins = np.linspace(low, high, 50)
        ax.hist(shown_prior, bins=bins, density=True, alpha=0.45, color="grey", label="prior")
        if post.size > 1:
            ax.hist(shown_post, bins=bins, density=True, alpha=0.6, color="C0", label="posterior")
        else:
            ax.axvline(shown_post[0], color="C0", linewidth=1.5, label="MAP")
        row = table.loc[name]
        ax.set_title(f"{name}\ncontraction {row['contraction']:.2f}", fontsize=8)
        ax.set_xlabel("log10 value" if transform else "value", fontsize=8)
        ax.set_yticks([])
    for ax in axes.ravel()[len(names):]:
        ax.set_visible(False)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    moved = table.index[table["contraction"] > 0.5].tolist()
    return save(fig, folder, "prior_posterior.png", "Prior vs posterior",
                "Prior (grey, the fitted spec's) and posterior (blue) of each population parameter; contraction = "
                "1 − var(posterior)/var(prior): near 1 the data decided, near 0 the prior did. "
                f"Contraction above 0.5: {', '.join(moved) or 'none'}. A posterior piled against the edge of "
                "its prior means the prior and the data disagree.")
