"""Engine properties: event semantics, the nonlinear path, batching, gradients, compilation."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from engine_helpers import batch_params, dose, observe, predict, table
from itp_pd.turnover_example import TURNOVER_TYPICAL
from itp_pd.engine import (
    STATUS_NONFINITE,
    STATUS_OK,
    STATUS_SOLVER_FAILED,
    build_population,
    simulate,
    simulate_batch,
    simulate_population,
)
from itp_pd.errors import DatasetError
from itp_pd.structural import SolverConfig, TurnoverModel, one_compartment_model, two_compartment_model

RITUXIMAB = dict(CL=0.30, V1=3.19, Q=0.446, V2=4.15)
TURNOVER = TURNOVER_TYPICAL


def _turnover_rows(pid=1, visits=np.linspace(0.0, 120.0, 13)):
    rows = [dose(7.0 * i, 100.0, 1, rate=600.0, pid=pid) for i in range(6)]
    rows += [dose(0.5 * i, 25.0, 3, pid=pid) for i in range(120)]
    rows += observe(visits, dvid=3, pid=pid) + observe(visits, dvid=1, pid=pid)
    return rows


def test_back_to_back_infusions_equal_one_long_infusion():
    obs = observe([0.1, 0.25, 0.5, 2.0])
    split, _ = predict(two_compartment_model(), [dose(0.0, 50.0, 1, rate=300.0), dose(50.0 / 300.0, 50.0, 1, rate=300.0), *obs], RITUXIMAB)
    single, _ = predict(two_compartment_model(), [dose(0.0, 100.0, 1, rate=300.0), *obs], RITUXIMAB)
    np.testing.assert_allclose(split, single, rtol=1e-12)


def test_overlapping_infusions_add():
    obs = observe([0.1, 0.3, 1.0])
    two, _ = predict(two_compartment_model(), [dose(0.0, 50.0, 1, rate=200.0), dose(0.0, 50.0, 1, rate=200.0), *obs], RITUXIMAB)
    one, _ = predict(two_compartment_model(), [dose(0.0, 100.0, 1, rate=400.0), *obs], RITUXIMAB)
    np.testing.assert_allclose(two, one, rtol=1e-12)


def test_observation_at_a_dose_time_sees_the_pre_dose_state():
    pred, _ = predict(two_compartment_model(), [dose(0.0, 100.0, 1), dose(5.0, 100.0, 1), *observe([0.0, 5.0])], RITUXIMAB)
    alone, _ = predict(two_compartment_model(), [dose(0.0, 100.0, 1), *observe([5.0])], RITUXIMAB)
    assert pred[0] == 0.0
    np.testing.assert_allclose(pred[1], alone[0], rtol=1e-14)


def test_reset_returns_to_the_initial_state_and_evid4_doses_after_reset():
    reset = dose(3.0, 0.0, 1, evid=3)
    reset["AMT"] = 0.0
    pred, _ = predict(two_compartment_model(), [dose(0.0, 100.0, 1), reset, *observe([3.0, 3.5])], RITUXIMAB)
    assert pred[0] > 0 and pred[1] == 0.0
    pred4, _ = predict(two_compartment_model(), [dose(0.0, 100.0, 1), dose(3.0, 100.0, 1, evid=4), *observe([3.5])], RITUXIMAB)
    fresh, _ = predict(two_compartment_model(), [dose(0.0, 100.0, 1), *observe([0.5])], RITUXIMAB)
    np.testing.assert_allclose(pred4, fresh, rtol=1e-12)


def test_reset_stops_a_running_infusion():
    reset = dose(0.1, 0.0, 1, evid=3)
    pred, _ = predict(one_compartment_model(), [dose(0.0, 100.0, 1, rate=100.0), reset, *observe([0.5])], dict(CL=2.0, V=10.0))
    assert pred[0] == 0.0


def test_untreated_turnover_stays_at_baseline():
    pred, _ = predict(TurnoverModel(), observe(np.linspace(0, 365, 12), dvid=3), TURNOVER)
    np.testing.assert_allclose(pred, TURNOVER["KIN"] / TURNOVER["KOUT"], rtol=1e-12)


def _scipy_turnover_reference(visits):
    """solve_ivp (LSODA, tight tolerances) on the full PK+PD system, restarting at every dose."""
    p = TURNOVER
    k10, k12, k21 = p["CL_IV"] / p["V1_IV"], p["Q_IV"] / p["V1_IV"], p["Q_IV"] / p["V2_IV"]
    infusions = [(7.0 * i, 7.0 * i + 1 / 6) for i in range(6)]
    oral = {0.5 * i for i in range(120)}

    def rhs(t, x):
        a1, a2, ad, ac, r = x
        rate = sum(600.0 for s, e in infusions if s <= t < e)
        c1, c2 = a1 / p["V1_IV"], ac / p["V_PO"]
        return [
            rate - (k10 + k12) * a1 + k21 * a2,
            k12 * a1 - k21 * a2,
            -p["KA_PO"] * ad,
            p["KA_PO"] * ad - p["CL_PO"] / p["V_PO"] * ac,
            p["KIN"] * (1 - p["IMAX"] * c2 / (p["IC50"] + c2)) - p["KOUT"] * (1 + p["EMAX"] * c1 / (p["EC50"] + c1)) * r,
        ]

    breaks = sorted(oral | {t for pair in infusions for t in pair} | set(visits))
    x = np.array([0, 0, 0, 0, p["KIN"] / p["KOUT"]], dtype=float)
    out = {}
    for t0, t1 in zip(breaks[:-1], breaks[1:]):
        if t0 in set(visits):
            out[t0] = x.copy()
        if t0 in oral:
            x[2] += 25.0
        sol = solve_ivp(rhs, (t0, t1), x, method="LSODA", rtol=1e-11, atol=1e-13)
        x = sol.y[:, -1]
    out[breaks[-1]] = x
    return np.array([out[t][4] for t in visits]), np.array([out[t][0] / p["V1_IV"] for t in visits])


def test_nonlinear_turnover_matches_a_scipy_reference():
    visits = np.linspace(0.0, 120.0, 13)
    model = TurnoverModel(solver_config=SolverConfig(rtol=1e-9, atol=1e-12))
    pred, frame = predict(model, _turnover_rows(visits=visits), TURNOVER)
    dvid = frame.loc[frame["EVID"] == 0, "DVID"].to_numpy()
    response, conc = _scipy_turnover_reference(visits)
    np.testing.assert_allclose(pred[dvid == 1], conc, rtol=1e-7, atol=1e-10)
    # The response is integrated by two different adaptive solvers; 1e-6 bounds their
    # tolerance-driven disagreement at rtol 1e-9 / 1e-11.
    np.testing.assert_allclose(pred[dvid == 3], response, rtol=1e-6)
    assert response.min() < 0.3  # the drugs actually moved the response


def _population(n):
    rows = []
    for pid in range(1, n + 1):
        rows += _turnover_rows(pid=pid)
    return build_population(table(rows), TurnoverModel())


def _varied_params(n, seed=0):
    rng = np.random.default_rng(seed)
    return {k: jnp.asarray(v * np.exp(0.2 * rng.standard_normal(n))) for k, v in TURNOVER.items()}


def test_vmap_equals_a_loop_over_patients():
    n = 3
    population = _population(n)
    params = _varied_params(n)
    batched = simulate_population(TurnoverModel(), params, population)
    single = jax.jit(lambda p, g: simulate(TurnoverModel(), p, g))
    for i in range(n):
        one = single({k: v[i] for k, v in params.items()}, jax.tree_util.tree_map(lambda a: a[i], population.grid))
        np.testing.assert_allclose(batched.predictions[i], one.predictions, rtol=1e-12)


def test_chunks_sorted_by_stiffness_come_back_in_population_order():
    n = 5  # chunks of 2, 2 and a remainder of 1
    population = _population(n)
    params = _varied_params(n, seed=3)
    params["KOUT"] = params["KOUT"] * jnp.asarray([1.0, 30.0, 1.0, 10.0, 3.0])  # shuffles the order
    chunked = simulate_population(TurnoverModel(), params, population, chunk_size=2)
    single = jax.jit(lambda p, g: simulate(TurnoverModel(), p, g))
    for i in range(n):
        one = single({k: v[i] for k, v in params.items()}, jax.tree_util.tree_map(lambda a: a[i], population.grid))
        # Same patient, other batch width: equal to well inside the solver tolerance (1e-7).
        np.testing.assert_allclose(chunked.predictions[i], one.predictions, rtol=1e-6)
    with pytest.raises(ValueError, match="chunk_size"):
        simulate_population(TurnoverModel(), params, population, chunk_size=0)


def test_gradients_match_central_finite_differences():
    population = _population(1)
    grid = jax.tree_util.tree_map(lambda a: a[0], population.grid)
    model = TurnoverModel(solver_config=SolverConfig(rtol=1e-10, atol=1e-12))
    names = ["CL_IV", "KA_PO", "EC50", "IMAX", "KOUT"]
    base = {k: jnp.asarray(v) for k, v in TURNOVER.items()}

    def loss(theta):
        params = dict(base, **{n: jnp.exp(t) for n, t in zip(names, theta)})
        pred = simulate(model, params, grid).predictions
        return jnp.sum(jnp.where(grid.obs_mask, pred, 0.0) ** 2)

    theta = jnp.log(jnp.asarray([TURNOVER[n] for n in names]))
    grad = jax.jit(jax.grad(loss))(theta)
    loss = jax.jit(loss)
    h = 1e-5  # central differences: truncation O(h²) ≈ 1e-10, solver noise ≈ 1e-10/h
    fd = np.array([(loss(theta.at[i].add(h)) - loss(theta.at[i].add(-h))) / (2 * h) for i in range(len(names))])
    np.testing.assert_allclose(grad, fd, rtol=1e-4, atol=1e-7)


def test_same_padded_shape_does_not_recompile():
    traces = []

    @jax.jit
    def run(params, grid):
        traces.append(1)
        return simulate_batch(TurnoverModel(), params, grid)

    first = _population(2)
    second_rows = []
    for pid in (7, 8):
        second_rows += _turnover_rows(pid=pid, visits=np.linspace(1.0, 110.0, 13))
    second = build_population(table(second_rows), TurnoverModel(), sizes=first.grid.times.shape[1:] and (first.grid.times.shape[1], first.grid.breakpoints.shape[1], first.grid.obs_event.shape[1]))
    run(_varied_params(2, 0), first.grid)
    run(_varied_params(2, 1), second.grid)
    assert len(traces) == 1


def test_solver_failure_is_a_status_value_not_an_exception():
    model = TurnoverModel(solver_config=SolverConfig(max_steps=2))
    population = _population(2)
    result = simulate_population(model, _varied_params(2), population)
    assert np.all(np.asarray(result.status) == STATUS_SOLVER_FAILED)


def test_non_finite_prediction_is_flagged():
    population = _population(2)
    params = _varied_params(2)
    params["V1_IV"] = params["V1_IV"].at[1].set(0.0)  # concentration = amount / 0
    result = simulate_population(TurnoverModel(), params, population)
    assert int(result.status[0]) == STATUS_OK
    assert int(result.status[1]) in (STATUS_NONFINITE, STATUS_SOLVER_FAILED)


def test_oral_doses_are_not_solver_restarts():
    rows = [dose(0.5 * i, 25.0, 3) for i in range(364)] + observe([0.0, 100.0, 200.0], dvid=3)
    population = build_population(table(rows), TurnoverModel())
    n_breaks = int(np.unique(np.asarray(population.grid.breakpoints[0])).size)
    n_events = int(np.unique(np.asarray(population.grid.times[0])).size)
    assert n_events == 365  # 364 doses + the visit at day 200
    assert n_breaks < 40  # visits, plus a split every SEGMENT_WINDOW grid intervals


def test_unknown_compartment_and_dvid_are_reported_with_rows():
    rows = [dose(0.0, 100.0, 9)] + observe([1.0], dvid=5)
    with pytest.raises(DatasetError) as error:
        build_population(table(rows), two_compartment_model())
    message = str(error.value)
    assert "CMT 9" in message and "DVID 5" in message and "row 1" in message and "row 2" in message
