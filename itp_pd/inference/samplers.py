"""NUTS, SVI and MAP on a hierarchical model: draws as ``(chain, draw, ...)`` arrays.

Each driver takes the model function of ``itp_pd.stats.build_model``, its data arrays and the
observed values, and returns ``Draws``. The optimisation step of SVI and MAP is compiled once
per model structure and data shape (``_optimiser_program``) and takes the data as arguments,
so a second dataset of the same padded shape runs without recompiling — the case of batch
fits and simulation-based calibration.

NumPyro mixes integer and float arrays internally, which the strict dtype promotion of the test
suite refuses; every driver therefore runs under ``jax.numpy_dtype_promotion("standard")``,
locally, never as a global flag.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro.infer import MCMC, NUTS, SVI, Predictive, Trace_ELBO, init_to_median
from numpyro.infer.autoguide import AutoDelta, AutoLowRankMultivariateNormal, AutoNormal
from numpyro.infer.util import unconstrain_fn

from ..engine.sharded_closures import allow_sharded_closures
from ..errors import SolverError
from .recipe import MapSettings, NutsSettings, SviSettings

# Sites recorded per draw besides the latent ones; "obs" is simulated separately.
DERIVED_SITES = ("prediction", "residual_sd", "solver_failures")
PROGRESS_CHUNKS = 20  # optimisation progress is printed this many times per run
INIT_JITTER = 0.1  # sd of the per-chain jitter around a MAP/SVI start (unconstrained scale)


@dataclass
class Draws:
    """Posterior draws of one fit.

    Attributes:
        method: ``"nuts"``, ``"svi"`` or ``"map"``.
        samples: site name → array ``(chain, draw, ...)``: latent sites and the deterministic
            ones (``eta_*``, ``prediction``, ``residual_sd``, ``solver_failures``).
        sample_stats: NUTS statistics ``(chain, draw)`` (``diverging``, ``num_steps``,
            ``accept_prob``, ``energy``, ``tree_depth``); empty for SVI and MAP.
        compile_s: seconds spent compiling the log-density gradient before sampling (s).
        run_s: wall time of warm-up and sampling, or of the optimisation (s).
        losses: optimisation loss trace (SVI, MAP; the negative ELBO or log density).
    """

    method: str
    samples: dict[str, np.ndarray]
    sample_stats: dict[str, np.ndarray] = field(default_factory=dict)
    compile_s: float = 0.0
    run_s: float = 0.0
    losses: np.ndarray | None = None


def _say(progress, message):
    if progress:
        print(message, file=sys.stderr, flush=True)


def _compile_gradient(model, data, obs, init_values):
    """Compile (ahead of time) the gradient of the log density; returns the seconds it took.

    This is the program NUTS and the optimisers spend their time in; its compile time is the
    figure a user waits for before the first draw."""
    from numpyro.infer.util import log_density

    def negative_log_density(values):
        return -log_density(model, (), {"obs": obs, "data": data}, values)[0]

    start = time.perf_counter()
    with jax.numpy_dtype_promotion("standard"):
        jax.jit(jax.value_and_grad(negative_log_density)).lower(init_values).compile()
    return time.perf_counter() - start


def _no_start(error: RuntimeError) -> SolverError:
    return SolverError(
        "no starting point with a finite log density near the prior medians (NumPyro: "
        f"{str(error).splitlines()[0]}); a patient's solve fails or its predictions are not "
        "finite there: check the dataset's doses and units, or raise the solver's max_steps "
        "in the recipe's [model] solver"
    )


def _latent_values(model, data, obs, key):
    """Prior-median values of every latent site (a valid start for optimisation and NUTS)."""
    from numpyro.infer.util import initialize_model

    try:
        with jax.numpy_dtype_promotion("standard"):
            info = initialize_model(key, model, model_kwargs={"obs": obs, "data": data},
                                    init_strategy=init_to_median(num_samples=15))
    except RuntimeError as error:
        raise _no_start(error) from None
    z = info.param_info.z
    constrained = info.postprocess_fn(z)
    return {name: constrained[name] for name in z}


DETERMINISTIC_BATCH = 10  # draws per compiled pass when recording the deterministic sites


def _deterministic(model, data, obs, samples_flat, key):
    """The deterministic sites of ``model`` at each draw.

    Draws run ``DETERMINISTIC_BATCH`` at a time through one compiled program (the last batch
    padded): vectorising all draws at once makes every ODE solve as slow as the slowest of
    draws × patients and holds them all in memory; 200 SVI draws of a 120-patient ITP fit
    took minutes that way.
    """
    n = next(iter(samples_flat.values())).shape[0]
    batch = min(DETERMINISTIC_BATCH, n)
    n_batches = -(-n // batch)

    @jax.jit
    def record(samples):
        predictive = Predictive(model, posterior_samples=samples, return_sites=list(DERIVED_SITES), batch_ndims=1)
        return predictive(key, obs=obs, data=data)

    pieces = []
    with jax.numpy_dtype_promotion("standard"):
        for b in range(n_batches):
            index = np.minimum(np.arange(b * batch, (b + 1) * batch), n - 1)
            pieces.append(record({name: jnp.asarray(v)[index] for name, v in samples_flat.items()}))
    return {name: np.concatenate([np.asarray(p[name]) for p in pieces])[:n] for name in DERIVED_SITES}


def run_nuts(model, data, obs, settings: NutsSettings, *, key, init_values=None, progress=True,
             chain_method="vectorized") -> Draws:
    """NUTS with ``settings.chains`` chains, vectorised in one program or one per device.

    Args:
        model, data, obs: from ``build_model`` / ``model_data`` and ``ObservedData.value``.
        settings: chains, warm-up, draws, target acceptance, mass matrix, tree depth.
        key: PRNG key.
        init_values: constrained values of the latent sites to start from (a MAP or SVI
            fit); each chain starts at a jittered copy. ``None``: prior medians.
        progress: show NumPyro's progress bar.
        chain_method: ``"vectorized"`` (one program, any device count) or ``"parallel"`` (one
            chain per device, NumPyro's ``pmap``; needs at least ``settings.chains`` devices).
    """
    if chain_method == "parallel":
        allow_sharded_closures()  # diffrax's reverse-mode loop under pmap (see that module)
    start_key, run_key = jax.random.split(key)
    values = init_values if init_values is not None else _latent_values(model, data, obs, start_key)
    compile_s = _compile_gradient(model, data, obs, values)
    kwargs = {"obs": obs, "data": data}
    with jax.numpy_dtype_promotion("standard"):
        unconstrained = unconstrain_fn(model, (), kwargs, values)
        jitter = jax.random.split(start_key, len(unconstrained))
        init_params = {
            name: value + INIT_JITTER * jax.random.normal(k, (settings.chains, *jnp.shape(value)))
            for (name, value), k in zip(sorted(unconstrained.items()), jitter)
        }
        if settings.chains == 1:  # NumPyro takes a chain axis only for several chains
            init_params = {name: value[0] for name, value in init_params.items()}
        # The chains start at ``init_params``; the init strategy only serves NumPyro's own set-up.
        kernel = NUTS(model, dense_mass=settings.dense_mass, target_accept_prob=settings.target_accept,
                      max_tree_depth=settings.max_tree_depth, init_strategy=init_to_median(num_samples=15))
        mcmc = MCMC(kernel, num_warmup=settings.warmup, num_samples=settings.draws, num_chains=settings.chains,
                    chain_method=chain_method, progress_bar=progress)
        started = time.perf_counter()
        mcmc.run(run_key, init_params=init_params, extra_fields=("diverging", "num_steps", "accept_prob",
                                                                  "energy", "adapt_state.step_size"), **kwargs)
        samples = jax.block_until_ready(mcmc.get_samples(group_by_chain=True))
        run_s = time.perf_counter() - started
    extra = mcmc.get_extra_fields(group_by_chain=True)
    stats = {
        "diverging": np.asarray(extra["diverging"]),
        "n_steps": np.asarray(extra["num_steps"]),
        "tree_depth": np.floor(np.log2(np.asarray(extra["num_steps"]) + 1)).astype(int),
        "acceptance_rate": np.asarray(extra["accept_prob"]),
        "energy": np.asarray(extra["energy"]),
        "step_size": np.asarray(extra["adapt_state.step_size"]),
    }
    return Draws("nuts", {k: np.asarray(v) for k, v in samples.items()}, stats, compile_s, run_s)


def _guide(model, method, settings):
    # Prior medians, drawn with the key given to ``svi.init``: the start depends on the seed only.
    init = init_to_median(num_samples=15)
    if method == "map":
        return AutoDelta(model, init_loc_fn=init)
    if settings.guide == "meanfield":
        return AutoNormal(model, init_loc_fn=init, init_scale=0.05)
    return AutoLowRankMultivariateNormal(model, init_loc_fn=init, rank=settings.rank, init_scale=0.05)


# (model structure, method, settings, chunk) → (svi, run_chunk); see _optimiser_program.
OPTIMISER_PROGRAMS: dict = {}


def _optimiser_program(model, method, settings, chunk):
    """``(svi, run_chunk)``: ``run_chunk(state, data, obs)`` runs ``chunk`` optimisation steps in
    one compiled ``lax.scan``. Cached on the model's static structure (``HierarchicalModel``
    compares by spec, structural model, random effects, outputs and data shapes) and the
    settings, so a second dataset of the same padded shape reuses the compiled program."""
    key = (model, method, settings, chunk)
    if key not in OPTIMISER_PROGRAMS:
        OPTIMISER_PROGRAMS[key] = _new_optimiser_program(model, method, settings, chunk)
    return OPTIMISER_PROGRAMS[key]


# (model structure, method, settings, chunk) → the compiled executable of ``run_chunk``.
COMPILED_CHUNKS: dict = {}


def _compiled_chunk(key, run_chunk, state, data, obs) -> tuple[object, float]:
    """``run_chunk`` compiled ahead of time (once per key), and the seconds compiling took now
    (0 when it was compiled before): the compile time is measured, not estimated, and the
    step is compiled only once."""
    if key in COMPILED_CHUNKS:
        return COMPILED_CHUNKS[key], 0.0
    started = time.perf_counter()
    COMPILED_CHUNKS[key] = run_chunk.lower(state, data, obs).compile()
    return COMPILED_CHUNKS[key], time.perf_counter() - started


def _new_optimiser_program(model, method, settings, chunk):
    # NaN gradients with a finite log density occur at isolated points of the ITP model (one
    # patient of 120 at one MAP iterate, inside the ODE's backward pass; cause not yet found).
    # Zeroing them lets the optimiser step on; a skip-on-NaN update (``stable_update``) would
    # leave the deterministic MAP guide at that point for ever.
    optimiser = optax.chain(optax.zero_nans(), optax.adam(settings.learning_rate))
    guide = _guide(model, method, settings)
    svi = SVI(model, guide, optimiser, Trace_ELBO())

    @jax.jit
    def run_chunk(state, data, obs):
        def step(state, _):
            return svi.update(state, obs=obs, data=data)

        return jax.lax.scan(step, state, None, length=chunk)

    return svi, run_chunk


def initial_state(svi, key, obs, data):
    """``svi.init`` at the prior medians drawn with ``key``, as in a fresh process.

    The guide of a cached ``_optimiser_program`` remembers the start it was first set up
    with (NumPyro sets an autoguide up once); forgetting it makes a fit's start depend on its
    own key only, not on which fit of the same shape ran earlier in the process (a batch
    worker, a bootstrap). The compiled step does not depend on it: parameters come from the
    state."""
    svi.guide.prototype_trace = None
    try:
        return svi.init(key, obs=obs, data=data)
    except RuntimeError as error:  # the guide starts at the prior medians, as NUTS does
        raise _no_start(error) from None


def run_optimiser(model, data, obs, method: str, settings: SviSettings | MapSettings, *, key,
                  progress=True) -> tuple[Draws, object, dict]:
    """SVI (``method="svi"``) or MAP (``"map"``) by Adam on the ELBO or the log density.

    Returns:
        ``(draws, guide, params)``: SVI: ``settings.draws`` draws from the fitted guide as one
        chain; MAP: the mode as a single draw. The guide and its parameters serve to start NUTS.
    """
    _, run_key, draw_key = jax.random.split(key, 3)  # the first key once drew the start; kept for the same streams
    # Steps run in equal compiled chunks (a progress line after each): the largest chunk of at
    # most steps/PROGRESS_CHUNKS that divides the number of steps, so exactly ``steps`` are run.
    chunk = next(c for c in range(max(1, settings.steps // PROGRESS_CHUNKS), 0, -1) if settings.steps % c == 0)
    n_chunks = settings.steps // chunk
    with jax.numpy_dtype_promotion("standard"):
        svi, run_chunk = _optimiser_program(model, method, settings, chunk)
        state = initial_state(svi, run_key, obs, data)
        compiled, compile_s = _compiled_chunk((model, method, settings, chunk), run_chunk, state, data, obs)
        started = time.perf_counter()
        losses = []
        for index in range(n_chunks):
            state, chunk_losses = compiled(state, data, obs)
            losses.append(np.asarray(chunk_losses))
            _say(progress, f"{method}: step {(index + 1) * chunk}/{n_chunks * chunk}, loss {losses[-1][-1]:.4g}")
        run_s = time.perf_counter() - started
        params = svi.get_params(state)
        guide = svi.guide
        if method == "map":
            latent = {k: jnp.asarray(v)[None] for k, v in guide.median(params).items()}
        else:
            latent = guide.sample_posterior(draw_key, params, sample_shape=(settings.draws,))
        derived = _deterministic(model, data, obs, latent, draw_key)
    samples = {k: np.asarray(v)[None] for k, v in {**latent, **derived}.items()}
    return Draws(method, samples, {}, compile_s, run_s, np.concatenate(losses)), guide, params
