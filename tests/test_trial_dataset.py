"""A simulated NCT07057778 trial as a NONMEM dataset."""

from pathlib import Path

import numpy as np

from itp_pd.spec import load_spec
from itp_pd.structural import model_from_spec
from itp_pd.trial.dataset import simulate_trial_dataset
from itp_pd.trial.design import nct07057778_arms

SPEC = load_spec(Path(__file__).parents[1] / "models" / "itp_v1.toml")


def test_each_arm_gets_its_patients_doses_and_measured_visits():
    model = model_from_spec(SPEC)
    arms = {k: v for k, v in nct07057778_arms().items() if k in ("control", "combination")}
    visits = np.array([0.0, 14.0, 28.0])
    dataset, truth = simulate_trial_dataset(SPEC, model, arms, 2, visits, seed=4)
    table = dataset.table
    assert sorted(table["ID"].unique()) == [1, 2, 3, 4]
    assert truth["PLT0"].shape == (4,) and (truth["PLT0"] < 30).all()
    arm = table.groupby("ID")["ARM"].first()
    assert list(arm) == [0.0, 0.0, 1.0, 1.0]
    doses = table[table["EVID"] == 1].groupby("ID").size()
    assert doses[arm == 1].min() > doses[arm == 0].max()  # iguratimod doses on the combination arm only
    measured = table[table["EVID"] == 0]
    assert len(measured) == 4 * visits.size and (measured["MDV"] == 0).all()
    # Day-0 counts scatter around each patient's baseline with the spec's 20% error.
    day0 = measured[measured["TIME"] == 0.0].set_index("ID")["DV"]
    ratio = day0.to_numpy() / truth["PLT0"]
    assert np.all((ratio > 0.3) & (ratio < 2.0))
