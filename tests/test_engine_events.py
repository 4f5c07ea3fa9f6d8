"""Event-order semantics and grid edge cases (NONMEM file order, resets, rounding, windows)."""

import re
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from engine_helpers import COLUMNS, batch_params, dose, observe, predict
from itp_pd.data import Dataset, expand_addl
from itp_pd.turnover_example import TURNOVER_TYPICAL
from itp_pd.engine import SEGMENT_WINDOW, build_population, simulate_population
from itp_pd.errors import DatasetError
from itp_pd.structural import AbstractModel, SolverConfig, TurnoverModel, one_compartment_model

ONE_CMT = dict(CL=2.0, V=10.0)


def _in_file_order(rows):
    return pd.DataFrame(rows, columns=COLUMNS).astype(float)


def _predict_in_file_order(model, rows, params):
    population = build_population(_in_file_order(rows), model)
    result = simulate_population(model, batch_params(params, 1), population)
    n = int(population.grid.obs_mask[0].sum())
    return np.asarray(result.predictions[0, :n]), population


def test_observation_listed_after_a_dose_at_its_time_sees_the_post_dose_state():
    pred, _ = _predict_in_file_order(
        one_compartment_model(), [*observe([0.0]), dose(0.0, 100.0, 1), *observe([0.0])], ONE_CMT
    )
    np.testing.assert_allclose(pred, [0.0, 10.0], rtol=1e-15)


def test_observation_between_two_events_at_its_time_is_refused():
    rows = [dose(0.0, 100.0, 1), *observe([0.0]), dose(0.0, 50.0, 1)]
    with pytest.raises(DatasetError, match=r"row 2 .*between dose/reset records"):
        build_population(_in_file_order(rows), one_compartment_model())


def test_prediction_requests_are_simulated_but_not_data():
    rows = [dose(0.0, 100.0, 1), *observe([1.0])]
    rows[1]["MDV"] = 0
    rows[1]["DV"] = 3.0
    other = dict(observe([2.0])[0], EVID=2)
    request = observe([3.0])[0]  # EVID 0 with MDV 1
    pred, population = _predict_in_file_order(one_compartment_model(), [*rows, other, request], ONE_CMT)
    np.testing.assert_allclose(pred, 10.0 * np.exp(-0.2 * np.array([1.0, 2.0, 3.0])), rtol=1e-13)
    assert population.obs_is_data[0, :3].tolist() == [True, False, False]


def test_additional_doses_past_a_reset_are_refused_with_the_rows():
    table = pd.DataFrame(
        [
            dict(ID=1, TIME=0.0, EVID=1, AMT=100.0, CMT=1, II=1.0, ADDL=5, MDV=1),
            dict(ID=1, TIME=1.5, EVID=3, AMT=0.0, CMT=1, II=0.0, ADDL=0, MDV=1),
            dict(ID=1, TIME=3.5, EVID=0, AMT=0.0, CMT=1, II=0.0, ADDL=0, MDV=1),
        ]
    )
    with pytest.raises(DatasetError, match=r"row 1 \(ID 1\): ADDL doses continue past the reset .* row 2"):
        expand_addl(Dataset.from_table(table))


def test_infusion_end_is_snapped_to_a_record_time_within_rounding():
    rows = [dose(0.1, 20.0, 1, rate=100.0), *observe([0.3, 1.0])]  # 0.1 + 0.2 != 0.3 in floats
    population = build_population(_in_file_order(rows), one_compartment_model())
    times = np.unique(np.asarray(population.grid.times[0]))
    assert times.tolist() == [0.1, 0.3, 1.0]


@pytest.mark.parametrize("n_doses", [SEGMENT_WINDOW - 1, SEGMENT_WINDOW, SEGMENT_WINDOW + 1, 3 * SEGMENT_WINDOW + 2])
def test_segments_split_by_the_window_agree_with_a_breakpoint_at_every_dose(n_doses):
    model = TurnoverModel(solver_config=SolverConfig(rtol=1e-10, atol=1e-13))
    doses = [dose(0.5 * i, 25.0, 3) for i in range(n_doses)] + [dose(0.0, 100.0, 1, rate=600.0)]
    end = 0.5 * n_doses + 1.0
    sparse, _ = predict(model, doses + observe([end], dvid=3), TURNOVER_TYPICAL)
    # An observation at every dose time makes each dose a breakpoint (no window needed).
    dense, _ = predict(model, doses + observe([0.5 * i for i in range(n_doses)] + [end], dvid=3), TURNOVER_TYPICAL)
    np.testing.assert_allclose(sparse[-1], dense[-1], rtol=1e-8)


def test_population_entry_point_reuses_its_compiled_program_for_new_data():
    traces = []

    class CountingModel(AbstractModel):  # the turnover model, counting its traces
        inner: TurnoverModel = TurnoverModel()

        pk_blocks = property(lambda self: self.inner.pk_blocks)
        outputs = property(lambda self: self.inner.outputs)
        solver = property(lambda self: self.inner.solver)
        n_nonlinear_states = property(lambda self: 1)
        nonlinear_parameter_names = property(lambda self: self.inner.nonlinear_parameter_names)

        def initial_nonlinear_state(self, params):
            traces.append(1)
            return self.inner.initial_nonlinear_state(params)

        def nonlinear_rates(self, t, state, concentrations, params):
            return self.inner.nonlinear_rates(t, state, concentrations, params)

        def observe(self, amounts, state, concentrations, params):
            return self.inner.observe(amounts, state, concentrations, params)

    model = CountingModel()

    def population(times):
        rows = []
        for pid in (1, 2):
            rows += [dose(7.0 * i, 100.0, 1, rate=600.0, pid=pid) for i in range(3)]
            rows += observe(times, dvid=3, pid=pid)
        return build_population(pd.DataFrame(rows, columns=COLUMNS).astype(float).sort_values(["ID", "TIME"], kind="stable"), model, sizes=(16, 16, 8))

    params = batch_params(TURNOVER_TYPICAL, 2)
    simulate_population(model, params, population([1.0, 10.0, 30.0]))
    count = len(traces)
    simulate_population(model, {k: v * 1.1 for k, v in params.items()}, population([2.0, 12.0, 40.0, 50.0]))
    assert count > 0 and len(traces) == count


def test_missing_parameters_are_named():
    population = build_population(_in_file_order([dose(0.0, 100.0, 1), *observe([1.0])]), one_compartment_model())
    with pytest.raises(ValueError, match=r"missing parameters \['V'\]"):
        simulate_population(one_compartment_model(), {"CL": jnp.ones(1)}, population)


def test_the_engine_tour_of_the_reference_runs():
    reference = (Path(__file__).parents[1] / "docs" / "reference.md").read_text()
    tour = re.search(r"## A tour of the engine\n.*?```python\n(.*?)```", reference, re.S).group(1)
    namespace = {}
    exec(compile(tour, "docs/reference.md", "exec"), namespace)  # the docs' own code, not user input
    result = namespace["result"]
    assert np.all(np.asarray(result.status) == 0)
    assert float(jnp.min(result.predictions[:, :53])) < 0.5
