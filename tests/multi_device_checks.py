"""Multi-device checks, run by ``test_multi_device.py`` in a process of its own.

JAX fixes its device count when it starts, so faking several CPU devices
(``--xla_force_host_platform_device_count``) needs a fresh process; this script is that
process: ``python tests/multi_device_checks.py sharding|parallel-chains|defaults`` prints one
JSON object of measured differences for the test to judge.

Model: the ITP spec with its calibrated values, 8 patients on NCT07057778's control arm (six
weekly rituximab infusions) seen for 8 weeks, 3 devices (8 is not a multiple of 3, so the
padding path runs). Solver tolerances are tight (rtol 1e-9)
because the comparison is between two runs whose vectorised batches differ in width: XLA
rounds them differently in the last bits, and an adaptive solver turns that into differences
of the order of its tolerance.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

N_DEVICES = 3
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={N_DEVICES}"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)

from itp_pd.engine import patient_mesh, simulate_population  # noqa: E402
from itp_pd.inference import FitRecipe, NutsSettings  # noqa: E402
from itp_pd.inference.fit import spread_over_devices  # noqa: E402
from itp_pd.inference.samplers import _latent_values, run_nuts  # noqa: E402
from itp_pd.spec import load_spec  # noqa: E402
from itp_pd.stats import build_model  # noqa: E402
from itp_pd.structural import SolverConfig, model_from_spec  # noqa: E402
from itp_pd.trial.calibration import load_calibration  # noqa: E402
from itp_pd.trial.dataset import simulate_trial_dataset  # noqa: E402
from itp_pd.trial.design import nct07057778_arms, trial_visits  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIGHT = SolverConfig(solver="tsit5", rtol=1e-9, atol=1e-12, max_steps=16384)


def relative(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b) / (np.abs(a) + 1e-12)))


def itp_problem():
    """The tight-solver ITP model of 8 patients, its data and their true parameters."""
    typical, omega = load_calibration()
    spec = load_spec(os.path.join(ROOT, "models", "itp_v1.toml")).with_values(typical, omega)
    spec = spec.with_fixed([p.name for p in spec.parameters if p.estimate and p.name not in ("PLT0", "KB")])
    structural = dataclasses.replace(model_from_spec(spec), solver_config=TIGHT)
    arms = {"control": nct07057778_arms()["control"]}
    dataset, truth = simulate_trial_dataset(spec, structural, arms, 8, trial_visits(8.0), seed=5)
    return spec, structural, dataset, truth


def check_sharding() -> dict:
    """Patients split across devices: the same simulation, log density and gradient."""
    spec, structural, dataset, truth = itp_problem()
    model, population, observed = build_model(spec, dataset, structural=structural, random_effects=("PLT0", "KB"))
    mesh = patient_mesh()
    sharded = model.with_mesh(mesh)
    figures = {"devices": len(jax.devices()), "patients": model.n_patients}

    # 1. Simulation: the same predictions from one device and from three.
    params = {name: jnp.asarray(value) for name, value in truth.items()}
    one = simulate_population(structural, params, population, mesh=None)
    three = simulate_population(structural, params, population, mesh=mesh)
    figures["simulation_max_relative_difference"] = relative(one.predictions, three.predictions)
    figures["simulation_output_devices"] = len(three.predictions.sharding.device_set)

    # 2. Log density and its gradient (what every sampler evaluates).
    from numpyro.infer.util import log_density

    obs = jnp.asarray(observed.value)
    with jax.numpy_dtype_promotion("standard"):
        values = _latent_values(model, model.data, obs, jax.random.PRNGKey(0))

        def value_and_gradient(m):
            return jax.jit(jax.value_and_grad(lambda v: log_density(m, (), {"obs": obs, "data": m.data}, v)[0]))(values)

        (lp_one, g_one), (lp_three, g_three) = value_and_gradient(model), value_and_gradient(sharded)
    figures["log_density"] = [float(lp_one), float(lp_three)]
    scale = max(float(jnp.max(jnp.abs(g))) for g in g_one.values())
    figures["gradient_max_difference_over_largest"] = max(
        float(jnp.max(jnp.abs(g_one[k] - g_three[k]))) / scale for k in g_one)

    # 3. How a fit spreads itself: 2 NUTS chains on 3 devices go one per device; SVI shards patients.
    recipe = FitRecipe(name="x", method="nuts", seed=0, data_path=None, data_sha256=None, spec_path=None,
                       nuts=NutsSettings(chains=2))
    figures["nuts_plan"] = spread_over_devices(model, recipe, jax.devices())[1]
    svi_model, svi_plan = spread_over_devices(model, dataclasses.replace(recipe, method="svi"), jax.devices())
    figures["svi_plan"] = [svi_plan, svi_model.mesh is not None]

    # 4. FOCE-I: the objective, its gradient and the modes' Hessians, patients split by default.
    from itp_pd.estimation.from_model import problem_from_model
    from itp_pd.estimation.marginal import evaluate

    fits = {}
    for name, split in (("one", None), ("three", "auto")):
        setup = problem_from_model(model, observed, "focei", mesh=split)
        x = jnp.asarray(setup.parameters.start)
        eta = 0.1 * jnp.ones((model.n_patients, len(setup.parameters.etas)))
        fits[name] = evaluate(setup.problem, x, eta, setup.data, "focei")
    (ofv1, g1, h1, _), (ofv3, g3, h3, _) = fits["one"], fits["three"]
    figures["focei_ofv_max_relative_difference"] = relative(ofv1, ofv3)
    figures["focei_gradient_max_difference_over_largest"] = float(jnp.max(jnp.abs(g1 - g3)) / jnp.max(jnp.abs(g1)))
    figures["focei_h_max_relative_difference"] = relative(h1, h3)
    return figures


def check_defaults() -> dict:
    """What an entry point gets without asking: the device count it was given, and the patients
    split across every device for a model with ODE states, not for closed-form PK or for fewer
    patients than devices (the small turnover model: seconds, not minutes)."""
    import pandas as pd

    from itp_pd.data import Dataset
    from itp_pd.dosing import population_records
    from itp_pd.engine import default_patient_mesh, population_from_dataset
    from itp_pd.runtime import use_every_core
    from itp_pd.structural import TurnoverModel
    from itp_pd.structural.pk_models import two_compartment_model
    from itp_pd.turnover_example import example_arms, virtual_parameters

    model = TurnoverModel()
    n = 7
    records = population_records(example_arms()[1], pd.DataFrame({"ID": np.arange(1, n + 1)}), np.linspace(0, 56, 9),
                                 compartments=model.compartment_map(), dvids=(3,))
    population = population_from_dataset(Dataset.from_table(records), model)
    params = {k: jnp.asarray(v) for k, v in virtual_parameters(n, seed=2).items()}
    auto = simulate_population(model, params, population)
    one = simulate_population(model, params, population, mesh=None)
    mesh = default_patient_mesh(model, n)
    return {
        "use_every_core": use_every_core(),  # XLA_FLAGS named 3 before JAX started: kept
        "turnover_mesh_devices": None if mesh is None else int(mesh.devices.size),
        "turnover_output_devices": len(auto.predictions.sharding.device_set),
        "turnover_max_relative_difference": relative(one.predictions, auto.predictions),
        "too_few_patients_mesh": default_patient_mesh(model, 2) is not None,
        "closed_form_pk_mesh": default_patient_mesh(two_compartment_model(), 100) is not None,
    }


def check_parallel_chains() -> dict:
    """NUTS chains one per device (diffrax inside NumPyro's pmap) equal the same chains run
    one after the other on one device: both run the same one-chain program, so the default
    solver tolerance will do. About 4 minutes on 2 cores (compiling NUTS twice)."""
    spec, _, dataset, _ = itp_problem()
    model, _, observed = build_model(spec, dataset, random_effects=("PLT0", "KB"))
    obs = jnp.asarray(observed.value)
    settings = NutsSettings(chains=2, warmup=3, draws=3, max_tree_depth=2, init="median", dense_mass=False)
    draws = {method: run_nuts(model, model.data, obs, settings, key=jax.random.PRNGKey(3), progress=False,
                              chain_method=method) for method in ("parallel", "sequential")}
    return {
        "parallel_vs_sequential_max_relative_difference": max(
            relative(draws["sequential"].samples[k], draws["parallel"].samples[k]) for k in ("pop_KB", "z_PLT0", "sigma_PLT")),
        "parallel_draws_shape": list(draws["parallel"].samples["pop_KB"].shape),
    }


CHECKS = {"sharding": check_sharding, "parallel-chains": check_parallel_chains, "defaults": check_defaults}


if __name__ == "__main__":
    assert len(jax.devices()) == N_DEVICES, jax.devices()
    json.dump(CHECKS[sys.argv[1]](), sys.stdout)
