"""``write_report``: every diagnostic of a finished fit as PNGs, CSV tables and an index.html."""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from ..runtime import progress_bar
from . import convergence, goodness_of_fit, loo, parameters, vpc
from .simulation import individual_predictions, observation_rows, population_predictions, simulate_replicates


@dataclass(frozen=True)
class ReportSettings:
    """How much the report simulates.

    Attributes:
        vpc_draws: replicate trials simulated from the posterior for the VPC and NPD (each is
            the whole dataset's design with new patients); 100 resolves the 5th/95th
            percentiles' intervals well enough to read, 500 for a final report.
        patients_per_page: patients on the individual-fit page.
        seed: seed of the replicate trials.
    """

    vpc_draws: int = 100
    patients_per_page: int = 16
    seed: int = 1


def write_report(fit, folder: str | Path, settings: ReportSettings = ReportSettings(), *,
                 progress: bool = True) -> Path:
    """Write the report of ``fit`` (``load_fit``) into ``folder``; returns ``folder/index.html``.

    Files: ``index.html``; figures ``trace.png`` (NUTS/SVI), ``rank.png`` (NUTS), ``loss.png`` (SVI/MAP),
    ``observed_vs_predicted.png``, ``npd.png``, ``individual_fits.png``, ``vpc.png``,
    ``pcvpc.png``, ``shrinkage.png``, ``prior_posterior.png``, ``loo.png`` (not for MAP);
    tables ``convergence.csv``, ``observations.csv`` (DV, PRED, IPRED, NPD per row),
    ``shrinkage.csv``, ``prior_posterior.csv``, ``loo.csv``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    steps = progress_bar(8 + settings.vpc_draws, "report", enabled=progress)
    sections = []

    table = convergence.convergence_table(fit)
    table.to_csv(folder / "convergence.csv", float_format="%.6g")
    figures = []
    if fit.method in ("nuts", "svi"):
        figures.append(convergence.plot_trace(fit, folder))
    if fit.method == "nuts":  # ranks compare chains; SVI's one "chain" of independent draws is flat by construction
        figures.append(convergence.plot_rank(fit, folder))
    if fit.losses is not None:
        figures.append(convergence.plot_losses(fit, folder))
    sections.append(("Convergence", convergence.convergence_facts(fit), table, figures))
    steps.update(1)

    rows = observation_rows(fit)
    pred = population_predictions(fit)
    band = individual_predictions(fit)
    rows["PRED"] = pred[rows["patient"], rows["slot"]]
    rows["IPRED"] = band[1][rows["patient"], rows["slot"]]
    steps.update(1)
    done = [0]

    def advance(count):
        steps.update(count - done[0])
        done[0] = count

    replicates = simulate_replicates(fit, settings.vpc_draws, key=jax.random.PRNGKey(settings.seed),
                                     progress=advance)
    rows["NPD"] = goodness_of_fit.prediction_discrepancies(rows, replicates, seed=settings.seed)
    rows.drop(columns=["patient", "slot"]).to_csv(folder / "observations.csv", index=False, float_format="%.6g")
    failed = int(np.sum(replicates.failed))
    sections.append(("Goodness of fit", [
        f"{len(rows)} observations of {rows['ID'].nunique()} patients; {int(rows['BLQ'].sum())} below the limit "
        "of quantification",
        f"{settings.vpc_draws} replicate trials simulated from {convergence.draws_source(fit)} for the NPD and "
        "the VPC; "
        f"{failed} simulated patients failed to solve",
    ], None, [goodness_of_fit.plot_observed_vs_predicted(rows, folder), goodness_of_fit.plot_npd(rows, folder)]))
    steps.update(1)
    sections.append(("Individual fits", [], None, [
        goodness_of_fit.plot_individual_fits(rows, band, pred, fit, folder, count=settings.patients_per_page)]))
    steps.update(1)
    units = {o.name: o.unit for o in fit.spec.observations}
    sections.append(("Visual predictive checks", [f"arms from the dataset's ARM column: "
                                                  f"{', '.join(sorted(rows['ARM'].unique()))}"], None,
                     [vpc.plot_vpc(rows, replicates, folder, corrected=False, units=units,
                                   source=convergence.draws_source(fit)),
                      vpc.plot_vpc(rows, replicates, folder, corrected=True, units=units,
                                   source=convergence.draws_source(fit))]))
    steps.update(1)

    shrinkage = parameters.eta_shrinkage(fit)
    shrinkage.to_csv(folder / "shrinkage.csv", float_format="%.6g")
    prior_table, prior_draws = parameters.prior_posterior_table(fit, key=jax.random.PRNGKey(settings.seed))
    prior_table.to_csv(folder / "prior_posterior.csv", float_format="%.6g")
    parameter_figures = []
    if len(shrinkage):
        parameter_figures.append(parameters.plot_shrinkage(shrinkage, folder))
    if len(prior_table):
        parameter_figures.append(parameters.plot_prior_posterior(fit, prior_table, prior_draws, folder))
    sections.append(("Parameters: shrinkage and what the data moved", [], prior_table, parameter_figures))
    steps.update(2)

    result, loo_table = loo.patient_loo(fit)
    if result is None:
        sections.append(("Leave-one-patient-out cross-validation",
                         ["not computed: a MAP fit has a single draw; fit by NUTS or SVI for LOO"], None, []))
    else:
        loo_table.to_csv(folder / "loo.csv", index=False, float_format="%.6g")
        worst = loo_table.nsmallest(5, "elpd")
        sections.append(("Leave-one-patient-out cross-validation", [
            f"elpd_loo {result.elpd_loo:.1f} (SE {result.se:.1f}), p_loo {result.p_loo:.1f}; "
            f"{int((loo_table['pareto_k'] > loo.K_LIMIT).sum())} of {len(loo_table)} patients with Pareto k > "
            f"{loo.K_LIMIT}"], worst.set_index("ID"), [loo.plot_loo(fit, result, loo_table, folder)]))
    steps.update(1)
    steps.close()
    index = folder / "index.html"
    index.write_text(_html(fit, sections, folder))
    return index


def _table_html(table: pd.DataFrame) -> str:
    return table.to_html(float_format=lambda v: f"{v:.4g}", border=0, classes="numbers", na_rep="—")


def _convergence_banner(diagnostics: dict) -> str:
    """The fit's convergence verdict, first thing on the page: an unconverged fit's numbers are
    not results."""
    message = html.escape(str(diagnostics.get("convergence_message", "no convergence verdict recorded")))
    if diagnostics.get("converged") is True:
        return f'<p style="padding:0.5em;background:#e8f5e9"><b>Converged.</b> {message}</p>'
    return (f'<p style="padding:0.5em;background:#fdecea;border:2px solid #c62828"><b>NOT CONVERGED.</b> {message}. '
            "The numbers below describe this run, not the model: they are not results.</p>")


def _provenance(fit, folder) -> str:
    """Where the fit and its inputs are, as paths that resolve from the report: the fit folder
    relative to the report's folder (a report is built in a staging folder beside its final
    place, so the relative path holds after the rename), and the recipe, data and spec as the
    manifest records them (relative to the fit folder, ``relative_to_fit_folder``), with the
    first 12 hex digits of their sha256."""
    m = fit.manifest
    fit_folder = os.path.relpath(Path(fit.directory).resolve(), Path(folder).resolve())
    files = []
    for key in ("recipe", "data", "spec", "values"):
        if m.get(key) is None:
            continue
        digest = m.get(f"{key}_sha256")
        files.append(f"{key} <code>{html.escape(str(m[key]))}</code>"
                     + (f" (sha256 {html.escape(str(digest)[:12])}…)" if digest else ""))
    return (f"<p>Fit folder <code>{html.escape(fit_folder)}</code> (relative to this report); "
            f"{'; '.join(files)} (relative to the fit folder); method {html.escape(str(m.get('method')))}, "
            f"seed {m.get('seed')}; itp-pd {html.escape(str(m.get('packages', {}).get('itp-pd')))}.</p>")


def _html(fit, sections, folder) -> str:
    title = f"Fit report: {html.escape(fit.recipe.name)}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{title}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4;color:#222}"
        "img{max-width:100%;border:1px solid #ddd}figure{margin:1.5em 0}figcaption{font-size:0.9em;color:#444}"
        "table.numbers{border-collapse:collapse;font-size:0.85em}table.numbers td,table.numbers th"
        "{padding:2px 8px;text-align:right;border-bottom:1px solid #eee}nav a{margin-right:1em}</style>",
        "</head><body>",
        f"<h1>{title}</h1>",
        _convergence_banner(fit.diagnostics),
        _provenance(fit, folder),
        "<nav>" + "".join(f'<a href="#s{i}">{html.escape(name)}</a>' for i, (name, *_rest) in enumerate(sections))
        + "</nav>",
    ]
    for i, (name, facts, table, figures) in enumerate(sections):
        parts.append(f'<h2 id="s{i}">{html.escape(name)}</h2>')
        if facts:
            parts.append("<ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in facts) + "</ul>")
        if table is not None and len(table):
            parts.append(_table_html(table))
        for figure in figures:
            parts.append(f'<figure><a href="{figure.file}"><img src="{figure.file}" alt="{html.escape(figure.title)}">'
                         f"</a><figcaption><b>{html.escape(figure.title)}.</b> {html.escape(figure.caption)}"
                         "</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
