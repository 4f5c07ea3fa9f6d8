"""Small builders shared by the engine tests: records in, predictions out."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pandas as pd

from itp_pd.engine import build_population, simulate_population

COLUMNS = ["ID", "TIME", "EVID", "AMT", "CMT", "RATE", "II", "ADDL", "MDV", "DV", "DVID"]


def dose(time, amount, cmt, *, rate=0.0, pid=1, evid=1):
    return dict(ID=pid, TIME=time, EVID=evid, AMT=amount, CMT=cmt, RATE=rate, II=0.0,
                ADDL=0, MDV=1, DV=np.nan, DVID=1)


def observe(times, *, dvid=1, pid=1):
    return [dict(ID=pid, TIME=t, EVID=0, AMT=0.0, CMT=1, RATE=0.0, II=0.0, ADDL=0, MDV=1,
                 DV=np.nan, DVID=dvid) for t in times]


def table(rows):
    """Records sorted by ID then TIME, observations first at equal times (pre-dose)."""
    frame = pd.DataFrame(rows, columns=COLUMNS).astype(float)
    frame["_order"] = frame["EVID"].ne(0)
    frame = frame.sort_values(["ID", "TIME", "_order"], kind="stable").drop(columns="_order")
    return frame.reset_index(drop=True)


def batch_params(params, n):
    return {name: jnp.full(n, value, dtype=jnp.float64) for name, value in params.items()}


def predict(model, rows, params):
    """Predictions at each observation row (one patient), in row order."""
    frame = table(rows)
    population = build_population(frame, model)
    result = simulate_population(model, batch_params(params, 1), population)
    n_obs = int(population.grid.obs_mask[0].sum())
    assert int(result.status[0]) == 0
    return np.asarray(result.predictions[0, :n_obs]), frame
