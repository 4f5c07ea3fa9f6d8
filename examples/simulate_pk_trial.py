"""Simulate a small two-compartment PK trial from the model itself (known truth) and write it
as a NONMEM-format CSV with its units sidecar: the dataset of ``fits/pk_2cmt_example.toml``.

Design: two 500 mg infusions (4 h) two weeks apart, samples at 0.2, 1, 3, 7, 14, 28 and 56
days, body-surface area 1.5–2.1 m². Truth: ``TRUTH`` below (rituximab-like, science.md §3).

    python examples/simulate_pk_trial.py --patients 40 --out examples/data/pk_trial.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from itp_pd.data import Dataset, write_nonmem
from itp_pd.spec import load_spec
from itp_pd.stats import simulate_dataset

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DAYS = (0.2, 1.0, 3.0, 7.0, 14.0, 28.0, 56.0)
TRUTH = {"pop_CL": 0.36, "pop_V1": 2.8, "omega_CL": 0.3, "omega_V1": 0.2, "sigma_CP": 0.1}


def design(n_patients: int, seed: int = 0) -> pd.DataFrame:
    """Dose and sampling records (DV placeholder 1.0) of ``n_patients``."""
    rng = np.random.default_rng(seed)
    rows = []
    for pid in range(1, n_patients + 1):
        bsa = rng.uniform(1.5, 2.1)
        for t in SAMPLE_DAYS:
            rows.append(dict(ID=pid, TIME=t, EVID=0, AMT=0.0, CMT=1, RATE=0.0, MDV=0, DV=1.0, DVID=1, BSA=bsa))
        for day in (0.0, 14.0):
            rows.append(dict(ID=pid, TIME=day, EVID=1, AMT=500.0, CMT=1, RATE=3000.0, MDV=1, DV=np.nan, DVID=1, BSA=bsa))
    # Observations listed before doses at equal times see the pre-dose state (NONMEM order).
    return pd.DataFrame(rows).sort_values(["ID", "TIME", "EVID"], kind="stable").reset_index(drop=True)


def simulate(n_patients: int, seed: int = 0) -> Dataset:
    spec = load_spec(ROOT / "models" / "pk_2cmt_iv.toml")
    dataset, _ = simulate_dataset(spec, Dataset.from_table(design(n_patients, seed)), TRUTH,
                                  key=jax.random.PRNGKey(seed))
    return dataset


def main(args=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "examples" / "data" / "pk_trial.csv")
    options = parser.parse_args(args)
    path = write_nonmem(simulate(options.patients, options.seed), options.out)
    print(f"wrote {path} ({options.patients} patients)")
    return path


if __name__ == "__main__":
    from itp_pd.runtime import configure_entry_point

    configure_entry_point()  # every core, float64, the compilation cache (entry points choose)
    main()
