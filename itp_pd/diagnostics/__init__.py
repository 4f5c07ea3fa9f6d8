"""Diagnostics of a finished fit: a report folder of figures, tables and an index.html.

``write_report(load_fit("fits/<name>"), "report/")`` covers convergence (R-hat, ESS,
divergences, solver failures, trace/rank/loss plots), goodness of fit (DV vs PRED and IPRED,
normalised prediction discrepancies), a page of individual fits, visual predictive checks
(plain and prediction-corrected, BLQ-aware, by arm), eta shrinkage, prior vs posterior, and
leave-one-patient-out cross-validation. ``itp-pd diagnose <fit folder>`` runs it.
"""

from .fit_folder import FinishedFit, load_fit
from .report import ReportSettings, write_report

__all__ = ["FinishedFit", "ReportSettings", "load_fit", "write_report"]
