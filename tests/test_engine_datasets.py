"""Datasets and regimens travel one path into the engine."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine_helpers import batch_params
from itp_pd.data import Dataset, read_nonmem
from itp_pd.dosing import Arm, Infusion, Oral, Regimen, every, population_records, weekly
from itp_pd.turnover_example import TURNOVER_TYPICAL
from itp_pd.engine import population_from_dataset, simulate_population
from itp_pd.errors import DatasetError
from itp_pd.structural import TurnoverModel, one_compartment_model, two_compartment_model

DATA = Path(__file__).parent / "data"
EXAMPLES = Path(__file__).parents[1] / "examples" / "data"
TURNOVER = TURNOVER_TYPICAL


def _predictions(dataset, model, params):
    population = population_from_dataset(dataset, model)
    result = simulate_population(model, batch_params(params, population.n_patients), population)
    assert np.all(np.asarray(result.status) == 0)
    rows = population.obs_rows
    return {int(r): float(p) for r, p in zip(rows[rows >= 0], np.asarray(result.predictions)[rows >= 0])}


def _keyed_predictions(dataset, model, params):
    """Predictions keyed by (ID, TIME, DVID) of their observation row."""
    table = dataset.table
    return {
        (table.loc[r, "ID"], table.loc[r, "TIME"], table.loc[r, "DVID"]): value
        for r, value in _predictions(dataset, model, params).items()
    }


def test_addl_expansion_equals_explicit_rows_in_the_engine():
    # The files dose into CMT 1 and 2 and observe DVID 1 and 2: the turnover model has both.
    params = TURNOVER
    model = TurnoverModel()
    compact = _keyed_predictions(read_nonmem(DATA / "compact_doses.csv"), model, params)
    explicit = _keyed_predictions(read_nonmem(DATA / "explicit_doses.csv"), model, params)
    assert compact.keys() == explicit.keys() and len(compact) == 6
    keys = sorted(compact)
    np.testing.assert_allclose([compact[k] for k in keys], [explicit[k] for k in keys], rtol=1e-13)
    assert max(compact.values()) > 10.0  # doses reached the observations


def test_regimen_records_and_hand_written_records_give_the_same_simulation():
    compartments = TurnoverModel().compartment_map()
    arm = Arm(
        "rituximab + iguratimod",
        (
            Regimen("rituximab", weekly(Infusion(100.0, "iv_central", duration_h=4), count=6)),
            Regimen("iguratimod", every(Oral(25.0, "po_depot"), hours=12, for_weeks=4)),
        ),
    )
    visits = [0.0, 3.0, 7.0, 21.0, 42.0]
    patients = pd.DataFrame({"ID": [1, 2]})
    from_regimen = Dataset.from_table(
        population_records(arm, patients, visits, compartments=compartments, dvids=(3,))
    )
    rows = []
    for pid in (1, 2):
        rows += [dict(ID=pid, TIME=t, EVID=0, AMT=0, CMT=0, RATE=0, MDV=1, DVID=3) for t in visits]
        rows += [dict(ID=pid, TIME=7.0 * i, EVID=1, AMT=100, CMT=1, RATE=600, MDV=1, DVID=1) for i in range(6)]
        rows += [dict(ID=pid, TIME=0.5 * i, EVID=1, AMT=25, CMT=3, RATE=0, MDV=1, DVID=1) for i in range(56)]
    by_hand = Dataset.from_table(
        pd.DataFrame(rows).sort_values(["ID", "TIME", "EVID"], kind="stable").reset_index(drop=True)
    )
    params = TURNOVER
    a = sorted(_predictions(from_regimen, TurnoverModel(), params).values())
    b = sorted(_predictions(by_hand, TurnoverModel(), params).values())
    np.testing.assert_allclose(a, b, rtol=1e-12)
    assert min(a) < 0.5  # the drugs act


def test_bsa_dosing_scales_exposure():
    model = two_compartment_model()
    arm = Arm("375 mg/m2", (Regimen("rtx", Infusion(None, "drug_central", duration_h=4, amount_mg_per_m2=375.0)),))
    patients = pd.DataFrame({"ID": [1, 2], "BSA": [1.6, 2.0]})
    dataset = Dataset.from_table(population_records(arm, patients, [1.0], compartments=model.compartment_map()))
    pred = _predictions(dataset, model, dict(CL=0.3, V1=3.19, Q=0.446, V2=4.15))
    values = [pred[r] for r in sorted(pred)]
    np.testing.assert_allclose(values[1] / values[0], 2.0 / 1.6, rtol=1e-12)


def test_example_dataset_simulates_with_a_two_compartment_model():
    dataset = read_nonmem(EXAMPLES / "example_pk.csv")
    pred = _predictions(dataset, two_compartment_model(), dict(CL=7.2, V1=4.0, Q=14.4, V2=8.0))
    observed = dataset.table.loc[list(pred), "DV"].to_numpy()
    ratio = np.array(list(pred.values())) / observed
    # The file was simulated from these parameters with 10% noise (see its sidecar).
    assert np.median(np.abs(np.log(ratio[np.isfinite(ratio)]))) < 0.3


def test_model_mismatch_names_the_file_row():
    # compact_doses.csv doses into CMT 2 (file row 6) and observes DVID 2 (file row 8);
    # a one-compartment IV model has neither.
    dataset = read_nonmem(DATA / "compact_doses.csv")
    with pytest.raises(DatasetError) as error:
        population_from_dataset(dataset, one_compartment_model())
    message = str(error.value)
    assert "row 6 (ID 2): CMT 2 does not exist" in message
    assert "row 8 (ID 2): DVID 2 is not an output" in message
