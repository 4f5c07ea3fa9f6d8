"""Simulation-based calibration (Talts et al. 2018) of NUTS on a reduced PK model.

Reduced model: the 2-compartment spec with pop_CL, pop_V1 and sigma_CP estimated and no
random effects, 6 patients × 7 samples. Each replicate draws parameters from the prior,
simulates data from them, and fits the data; the rank of the true value among the posterior
draws is then uniform if the sampler (and the model code) are right.
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from itp_pd.data import Dataset
from itp_pd.inference import NutsSettings, run_nuts
from itp_pd.spec import load_spec
from itp_pd.stats import build_model, simulate_dataset

ROOT = Path(__file__).parents[1]
REPLICATES = 60
THIN = 4  # 400 draws → 100 roughly independent ones (ESS per draw here is ~0.5-1)
BINS = 5  # 12 replicates expected per bin


@pytest.mark.slow
def test_rank_statistics_of_nuts_posteriors_are_uniform():
    import sys

    sys.path.insert(0, str(ROOT / "examples"))
    from simulate_pk_trial import design

    spec = load_spec(ROOT / "models" / "pk_2cmt_iv.toml")
    layout = Dataset.from_table(design(6, seed=0))
    settings = NutsSettings(chains=1, warmup=300, draws=400, init="median", dense_mass=False)
    names = ("pop_CL", "pop_V1", "sigma_CP")
    ranks = {name: [] for name in names}
    for replicate in range(REPLICATES):
        simulate_key, fit_key = jax.random.split(jax.random.PRNGKey(replicate))
        dataset, truth = simulate_dataset(spec, layout, {}, key=simulate_key, random_effects=[])
        model, _, observed = build_model(spec, dataset, random_effects=[])
        draws = run_nuts(model, model.data, jnp.asarray(observed.value), settings, key=fit_key, progress=False)
        for name in names:
            posterior = draws.samples[name][0, ::THIN]
            ranks[name].append(int(np.sum(posterior < truth[name])))
    for name in names:
        counts, _ = np.histogram(ranks[name], bins=BINS, range=(0, 400 // THIN + 1))
        p_value = stats.chisquare(counts).pvalue
        # 3 tests at 1%: a false alarm in about 3% of seeds; the seeds here are fixed.
        assert p_value > 0.01, (name, counts, p_value)
