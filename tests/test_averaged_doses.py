"""Averaged oral doses (``SolverConfig(oral_doses="averaged")``, ``itp_pd.data.averaged``): which
records become one zero-order input, and that the input keeps the exposure (exact where it
must be: total amount, steady-state concentration, the interval's mean concentration)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from engine_helpers import dose, observe, table
from itp_pd.data import Dataset
from itp_pd.data.averaged import average_repeated_doses
from itp_pd.engine import population_from_dataset, simulate_population
from itp_pd.errors import SpecError
from itp_pd.structural import SolverConfig, one_compartment_model


def dataset(rows):
    return Dataset.from_table(table(rows))


def doses_of(data):
    frame = data.table
    return frame.loc[frame["EVID"] != 0, ["ID", "TIME", "AMT", "CMT", "RATE"]].to_numpy()


def test_a_regular_run_becomes_one_input_of_the_same_total():
    rows = [dose(k * 0.5, 25.0, 1) for k in range(364)] + observe([0.25, 200.0])
    data = average_repeated_doses(dataset(rows), [1])
    # 364 doses of 25 mg every 0.5 day: 9100 mg at 50 mg/day from day 0 (so until day 182).
    np.testing.assert_allclose(doses_of(data), [[1, 0.0, 9100.0, 1, 50.0]])
    assert len(data.table) == 3 and data.source_rows[0] == 1  # the first dose's row


def test_what_breaks_a_run_and_what_is_left_alone():
    # Where the interval changes, the dose that ends the old interval stays in the old run
    # (days 0, 1, 2, 3, 4 would be one run of five).
    rows = ([dose(k, 10.0, 1) for k in range(4)]            # days 0-3: a run of 4
            + [dose(5 + 2 * k, 10.0, 1) for k in range(3)]   # the interval changes: days 5, 7, 9
            + [dose(10, 20.0, 1), dose(11, 20.0, 1)]         # a new amount, only 2 doses: kept
            + [dose(12 + k, 5.0, 2) for k in range(5)]       # another compartment: not averaged
            + [dose(20 + k, 10.0, 1, pid=2) for k in range(3)]  # another patient: its own run
            + observe([30.0]) + observe([30.0], pid=2))
    got = doses_of(average_repeated_doses(dataset(rows), [1]))
    expected = [[1, 0.0, 40.0, 1, 10.0],   # days 0..3 at 10 mg/day
                [1, 5.0, 30.0, 1, 5.0],    # 5, 7, 9: 10 mg / 2 days
                [1, 10.0, 20.0, 1, 0.0], [1, 11.0, 20.0, 1, 0.0],
                *[[1, 12.0 + k, 5.0, 2, 0.0] for k in range(5)],
                [2, 20.0, 30.0, 1, 10.0]]
    np.testing.assert_allclose(got, expected)


def test_a_reset_or_an_infusion_into_the_depot_ends_a_run():
    rows = ([dose(k, 10.0, 1) for k in range(3)] + [dose(3.0, 0.0, 1, evid=3)]
            + [dose(4 + k, 10.0, 1) for k in range(2)] + [dose(6.0, 10.0, 1, rate=20.0)]
            + [dose(7 + k, 10.0, 1) for k in range(3)] + observe([20.0]))
    got = doses_of(average_repeated_doses(dataset(rows), [1]))
    assert got[0].tolist() == [1, 0.0, 30.0, 1, 10.0]
    assert [row[1] for row in got[1:]] == [3.0, 4.0, 5.0, 6.0, 7.0]  # reset, two kept, infusion, run
    assert got[-1].tolist() == [1, 7.0, 30.0, 1, 10.0]


def test_averaged_oral_doses_keep_the_exposure():
    """One-compartment oral, 25 mg every 0.5 day for 60 days (t½ 0.35 day). At steady state the
    averaged input gives the constant F·D/(CL·τ) exactly, which is also the mean of the exact
    dose-by-dose concentration over one interval; after dosing both carry the same amount."""
    CL, V, KA, D, tau = 40.0, 20.0, 14.0, 25.0, 0.5
    fine = np.linspace(40.0, 40.5, 201)  # one dosing interval at steady state
    dense = np.arange(0.0, 80.0, 0.0025)  # the whole course and its washout, 200 points an interval
    rows = [dose(k * tau, D, 1) for k in range(120)] + observe(np.unique(np.concatenate([fine, dense])))
    data = dataset(rows)
    params = {name: jnp.full(1, value) for name, value in dict(CL=CL, V=V, KA=KA).items()}
    times = np.unique(np.concatenate([fine, dense]))
    in_fine = np.isin(times, fine)

    def concentrations(oral_doses):
        model = one_compartment_model(oral=True)
        model = dataclasses.replace(model, solver_config=SolverConfig(oral_doses=oral_doses))
        population = population_from_dataset(data, model)
        return np.asarray(simulate_population(model, params, population).predictions[0, :times.size])

    exact, averaged = concentrations("exact"), concentrations("averaged")
    average = D / (CL * tau)
    np.testing.assert_allclose(averaged[in_fine], average, rtol=1e-9)
    # Trapezoid over 200 panels of one interval: its error is far below 1e-4 here.
    one = exact[in_fine]
    mean_exact = np.sum((one[1:] + one[:-1]) / 2 * np.diff(fine)) / tau
    assert abs(mean_exact - average) < 1e-4 * average
    assert one.max() / one.min() > 1.5  # the swing that averaging removes
    # The same exposure in all: AUC over the course and 20 days of washout is dose / CL.
    def auc(c):
        return np.sum((c[1:] + c[:-1]) / 2 * np.diff(times))

    total = 120 * D / CL
    assert abs(auc(exact) - total) < 1e-4 * total and abs(auc(averaged) - total) < 1e-4 * total


def test_oral_doses_must_be_named_right():
    with pytest.raises(SpecError, match="oral_doses must be one of 'exact', 'averaged'"):
        SolverConfig(oral_doses="mean")


def test_recipes_and_the_trial_command_choose_oral_doses(tmp_path):
    from itp_pd.cli.trial import _structural
    from itp_pd.errors import ItpPdError
    from itp_pd.inference import load_recipe
    from itp_pd.trial.population import prior_population

    root = Path(__file__).resolve().parents[1]
    text = (root / "fits" / "pk_2cmt_example.toml").read_text()
    text = text.replace('path = "../examples/data/pk_trial.csv"', f'path = "{root / "examples/data/pk_trial.csv"}"')
    text = text.replace('spec = "../models/pk_2cmt_iv.toml"', f'spec = "{root / "models/pk_2cmt_iv.toml"}"')
    good = tmp_path / "good.toml"
    good.write_text(text.replace('random_effects = ["CL", "V1"]',
                                 'random_effects = ["CL", "V1"]\nsolver = { oral_doses = "averaged" }', 1))
    assert dict(load_recipe(good).solver)["oral_doses"] == "averaged"
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('random_effects = ["CL", "V1"]',
                                'random_effects = ["CL", "V1"]\nsolver = { oral_doses = "mean" }', 1))
    with pytest.raises(ItpPdError, match="model.solver.oral_doses"):
        load_recipe(bad)

    import jax

    source = prior_population(n_draws=1, key=jax.random.PRNGKey(0))
    assert _structural(source, "exact").solver.oral_doses == "exact"
    averaged = _structural(source, "averaged").solver
    assert averaged.oral_doses == "averaged" and averaged.rtol == _structural(source, "exact").solver.rtol
