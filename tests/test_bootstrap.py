"""Packed bootstrap MAP refits (``itp_pd.inference.bootstrap``) on the two-compartment PK model."""

import sys
from pathlib import Path

import jax
import pytest
import jax.numpy as jnp
import numpy as np

from itp_pd.data import read_nonmem, write_nonmem
from itp_pd.inference import MapSettings
from itp_pd.inference.bootstrap import bootstrap_indices, fit_map_one_by_one, fit_map_packed, resample_patients
from itp_pd.inference.samplers import run_optimiser
from itp_pd.spec import load_spec
from itp_pd.stats import build_model

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "examples"))
from simulate_pk_trial import simulate  # noqa: E402


SETTINGS = MapSettings(steps=60, learning_rate=0.05)


def pk_model(tmp_path, n_patients=12):
    dataset = read_nonmem(write_nonmem(simulate(n_patients, 4), tmp_path / "pk.csv"))
    spec = load_spec(ROOT / "models" / "pk_2cmt_iv.toml")
    spec = spec.with_fixed([p.name for p in spec.parameters if p.estimate and p.name not in ("CL", "V1")])
    model, _, observed = build_model(spec, dataset, random_effects=("CL", "V1"))
    return model, jnp.asarray(observed.value)


# Slow end to end (measured 50-250 s on the 2-core CI machine); run by `pytest -m slow`.
@pytest.mark.slow
def test_resampling_indexes_patients_and_the_identity_replicate_is_the_original_fit(tmp_path):
    model, obs = pk_model(tmp_path)
    indices = bootstrap_indices(model.n_patients, 3, key=jax.random.PRNGKey(1))
    identity = jnp.arange(model.n_patients)[None]
    indices = jnp.concatenate([identity, indices])
    data, replicate_obs = resample_patients(model.data, obs, indices)
    assert replicate_obs.shape == (4, *obs.shape)
    np.testing.assert_array_equal(replicate_obs[2], obs[indices[2]])
    np.testing.assert_array_equal(data["grid"].times[2], model.data["grid"].times[indices[2]])
    assert len(set(np.asarray(indices[1]).tolist())) < model.n_patients  # drawn with replacement

    key = jax.random.PRNGKey(7)
    packed = fit_map_packed(model, data, replicate_obs, SETTINGS, key=key)
    one_by_one = fit_map_one_by_one(model, data, replicate_obs, SETTINGS, key=key)
    for name, value in packed.estimates.items():
        # vmap and a loop round differently in the last bits; 60 Adam steps keep it small.
        np.testing.assert_allclose(value, one_by_one.estimates[name], rtol=1e-7, atol=1e-9, err_msg=name)
    assert packed.estimates["pop_CL"].shape == (4,)
    assert np.ptp(packed.estimates["pop_CL"]) > 0  # resampled datasets give different estimates

    # run_optimiser starts from svi.init with the second of three keys split from its key.
    _, run_key, _ = jax.random.split(key, 3)
    identity_fit = fit_map_packed(model, *resample_patients(model.data, obs, identity), SETTINGS, key=run_key)
    with jax.numpy_dtype_promotion("standard"):
        draws, _, _ = run_optimiser(model, model.data, obs, "map", SETTINGS, key=key, progress=False)
    for name in ("pop_CL", "pop_V1", "omega_CL", "sigma_CP"):
        np.testing.assert_allclose(identity_fit.estimates[name][0], draws.samples[name][0, 0], rtol=1e-8, err_msg=name)
