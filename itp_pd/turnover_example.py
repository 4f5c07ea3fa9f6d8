"""A two-drug turnover example: NCT07057778's two arms through the engine, as data → plot.

A small, fast stand-in for the mechanistic model (engine tests and
``examples/simulate_regimen.py``): the two-drug ``TurnoverModel``, a CD20⁺-B-cell-like turnover
that rituximab depletes (Emax on loss) and iguratimod slows (inhibition of production). The PK parameters are the literature values of science.md §3;
the response parameters are illustrative, not fitted.
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd

from .data import Dataset
from .dosing import Arm, Infusion, Oral, Regimen, every, population_records, weekly
from .engine import population_from_dataset, simulate_population
from .structural import TurnoverModel

TURNOVER_TYPICAL = dict(
    # Rituximab, two-compartment (Candelaria 2018, Cancer Chemother Pharmacol 81:515): L/day, L.
    CL_IV=0.30, V1_IV=3.19, Q_IV=0.446, V2_IV=4.15,
    # Iguratimod, oral one-compartment (science.md §3, derived from the label): 1/day, L/day, L.
    KA_PO=14.4, CL_PO=38.4, V_PO=19.0,
    # B-cell-like turnover: k_B 0.02/day (Pan 2019), 35-fold maximal kill, EC50 1 mg/L [weak];
    # iguratimod inhibition sized for illustration (IMAX 0.4, IC50 1.3 mg/L).
    KIN=0.02, KOUT=0.02, EMAX=35.0, EC50=1.0, IMAX=0.4, IC50=1.3,
)  # fmt: skip
BETWEEN_PATIENT_CV = 0.25  # log-normal, all parameters, for the virtual patients


def example_arms(model=None) -> tuple[Arm, ...]:
    """NCT07057778: rituximab 100 mg IV over 4 h weekly ×6, with or without iguratimod 25 mg
    orally every 12 h for 26 weeks."""
    rituximab = Regimen(
        "rituximab 100 mg weekly x6", weekly(Infusion(100.0, "iv_central", duration_h=4), count=6)
    )
    iguratimod = Regimen(
        "iguratimod 25 mg bid x26 weeks", every(Oral(25.0, "po_depot"), hours=12, for_weeks=26)
    )
    return (
        Arm("rituximab", (rituximab,)),
        Arm("rituximab + iguratimod", (rituximab, iguratimod)),
    )


def virtual_parameters(n_patients: int, *, seed: int) -> dict:
    """Log-normal between-patient variation around ``TURNOVER_TYPICAL``.

    IMAX is capped at 0.95, and KIN is tied to KOUT so every patient's response starts at 1
    (the response is relative to the patient's own baseline).
    """
    rng = np.random.default_rng(seed)
    params = {
        name: value * np.exp(BETWEEN_PATIENT_CV * rng.standard_normal(n_patients))
        for name, value in TURNOVER_TYPICAL.items()
    }
    params["IMAX"] = np.minimum(params["IMAX"], 0.95)
    params["KIN"] = params["KOUT"].copy()
    return params


def simulate_arms(arms, *, n_patients: int = 50, days: float = 364.0, seed: int = 1) -> pd.DataFrame:
    """Simulate each arm for the same virtual patients; one row per patient × time × output.

    Returns a tidy table with columns ``arm, ID, TIME`` (days), ``output``, ``value`` (mg/L
    for concentrations, relative to baseline for the response), ``status`` (0 = solved).
    """
    model = TurnoverModel()
    times = np.arange(0.0, days + 1e-9, 1.0)
    patients = pd.DataFrame({"ID": np.arange(1, n_patients + 1)})
    params = {k: jnp.asarray(v) for k, v in virtual_parameters(n_patients, seed=seed).items()}
    frames = []
    for arm in arms:
        records = population_records(
            arm, patients, times, compartments=model.compartment_map(), dvids=(1, 2, 3)
        )
        dataset = Dataset.from_table(records)
        population = population_from_dataset(dataset, model)
        result = simulate_population(model, params, population)
        rows = population.obs_rows
        keep = rows >= 0
        table = dataset.table.loc[rows[keep], ["ID", "TIME", "DVID"]].reset_index(drop=True)
        table["value"] = np.asarray(result.predictions)[keep]
        status = dict(zip(population.ids, np.asarray(result.status)))
        table["status"] = table["ID"].map(status).astype(int)
        table["output"] = table["DVID"].astype(int).map(lambda d: model.outputs[d - 1])
        table.insert(0, "arm", arm.name)
        frames.append(table.drop(columns="DVID"))
    return pd.concat(frames, ignore_index=True)


def plot_arms(frame: pd.DataFrame, path: Path) -> Path:
    """Median and 90% band per arm for each output; writes a PNG and returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {
        "CP_IV": "rituximab (mg/L)",
        "CP_PO": "iguratimod (mg/L, daily pre-dose)",
        "R": "B-cell-like response\n(relative to baseline)",
    }
    outputs = list(labels)
    fig, axes = plt.subplots(1, len(outputs), figsize=(4.2 * len(outputs), 3.6))
    for ax, output in zip(axes, outputs):
        for arm, group in frame[frame["output"] == output].groupby("arm", sort=False):
            wide = group.pivot(index="TIME", columns="ID", values="value")
            low, mid, high = (wide.quantile(q, axis=1) for q in (0.05, 0.5, 0.95))
            weeks = wide.index / 7.0
            (line,) = ax.plot(weeks, mid, label=arm)
            ax.fill_between(weeks, low, high, alpha=0.2, color=line.get_color())
        ax.set_xlabel("weeks")
        ax.set_title(labels[output], fontsize=10)
        if output == "CP_IV":
            ax.set_yscale("log")
            ax.set_ylim(0.1, None)
    axes[0].legend(fontsize=8, loc="lower left")
    fig.suptitle("NCT07057778 arms: median and 90% band of virtual patients", fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
