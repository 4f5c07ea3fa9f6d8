"""Derivatives through an explicit solver whose steps are bound by stability
(``SolverConfig.stable_step``).

The step-size controller keeps the solution of a stiff system stable at the edge of the
solver's stability region by rejecting steps that amplify the stiff component, but nothing
keeps the *derivatives* there: their stiff component is amplified step after step. With the
steps capped inside the region, forward-mode derivatives agree with central differences of
the same solve.
"""

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from itp_pd.engine import population_from_dataset, simulate_population
from itp_pd.engine.simulate import stiffness
from itp_pd.errors import SpecError
from itp_pd.spec import load_spec
from itp_pd.structural import model_from_spec
from itp_pd.structural.solver_config import STABILITY_BOUNDARY, SolverConfig
from itp_pd.trial.calibration import load_calibration
from itp_pd.trial.dataset import simulate_trial_dataset
from itp_pd.trial.design import nct07057778_arms, trial_visits

REPO = Path(__file__).parents[1]


def test_capped_steps_give_the_derivatives_of_a_stiff_patient():
    # One severe combination-arm patient (baseline a tenth of its draw: platelet clearance
    # 72/day, so Tsit5's stable step is 0.05 day) over the trial's year of visits; derivatives
    # of its platelet counts in log PLT0, FL, KB against central differences.
    typical, omega = load_calibration()
    spec = load_spec(REPO / "models" / "itp_v1.toml").with_values(typical, omega)
    base = model_from_spec(spec)
    dataset, truth = simulate_trial_dataset(spec, base, {"combination": nct07057778_arms()["combination"]}, 1,
                                            trial_visits(), seed=2)
    params = {name: jnp.asarray(value) for name, value in truth.items()}
    params["PLT0"] = params["PLT0"] * 0.1
    assert 60 < float(stiffness(base, {name: value[0] for name, value in params.items()})) < 90
    names = ("PLT0", "FL", "KB")
    log_values = jnp.log(jnp.concatenate([params[name] for name in names]))

    def counts(stable_step):
        config = SolverConfig(rtol=1e-6, atol=1e-9, differentiation="forward", stable_step=stable_step)
        model = dataclasses.replace(base, solver_config=config)
        population = population_from_dataset(dataset, model)

        def f(log_values):
            values = dict(params, **{name: jnp.exp(log_values[i:i + 1]) for i, name in enumerate(names)})
            return simulate_population(model, values, population).predictions[0]

        return f

    capped, free = counts(0.85), counts(None)
    h = 1e-3
    central = np.stack([(capped(log_values.at[i].add(h)) - capped(log_values.at[i].add(-h))) / (2 * h)
                        for i in range(len(names))], axis=-1)
    scale = np.max(np.abs(central), axis=0)
    capped_error = np.max(np.abs(np.asarray(jax.jacfwd(capped)(log_values)) - central), axis=0) / scale
    free_error = np.max(np.abs(np.asarray(jax.jacfwd(free)(log_values)) - central), axis=0) / scale
    # Measured: capped 8e-6, 2e-7, 7e-6 of the largest derivative; uncapped 2e-2, 2e-3, 1e-2.
    assert np.all(capped_error < 1e-4), capped_error
    # Without the cap the same derivatives are far off (the defect the cap removes).
    assert np.max(free_error) > 100 * np.max(capped_error), (free_error, capped_error)


def test_stability_boundaries_are_the_solvers():
    # |R(z)| of one step on y' = -y crosses 1 at the tabulated z (real-axis boundary).
    import diffrax

    term = diffrax.ODETerm(lambda t, y, args: -y)
    for name, boundary in STABILITY_BOUNDARY.items():
        solver = SolverConfig(solver=name).make_solver()

        def amplification(h):
            state = solver.init(term, 0.0, h, jnp.asarray(1.0), None)
            return jnp.abs(solver.step(term, 0.0, h, jnp.asarray(1.0), None, state, made_jump=False)[0])

        assert amplification(0.99 * boundary) <= 1.0 < amplification(1.01 * boundary)


def test_bad_stable_step_is_refused():
    with pytest.raises(SpecError, match="stable_step"):
        SolverConfig(stable_step=0.0)
    with pytest.raises(SpecError, match="stable_step"):
        SolverConfig(stable_step=1.5)
