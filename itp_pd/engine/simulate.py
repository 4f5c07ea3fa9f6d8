"""The engine: exact linear PK on the event grid, diffrax for the nonlinear part.

Two passes over a patient's padded event grid, both ``lax.scan``:

1. PK pass, over every grid interval: observe (pre-event amounts), reset, add boluses, then
   propagate the linear PK exactly with the interval's infusion rates (closed form).
2. Nonlinear pass, over breakpoint segments only: one ``diffeqsolve`` per segment, whose vector
   field reads the drug concentrations from the PK pass (closed form again, at any time inside
   the segment). Oral doses are not breakpoints, so they cost no solver restart.

Solver failures are values: each patient gets a ``status`` (0 ok, 1 solver failure, 2
non-finite prediction), computed inside ``jit`` and never raised, so an inference layer can
reject the proposal instead of crashing.
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec
from jaxtyping import Array, Float, Int

from ..structural.pk_blocks import block_concentrations, propagate_blocks
from .grid import SEGMENT_WINDOW, EventGrid, Population
from .sharded_closures import allow_sharded_closures

STATUS_OK = 0
STATUS_SOLVER_FAILED = 1
STATUS_NONFINITE = 2


class Simulation(eqx.Module):
    """Result of simulating one patient (or a batch, with a leading patient axis).

    Attributes:
        predictions: model output at each observation row, in the output's unit; padded
            entries are meaningless (see ``EventGrid.obs_mask``).
        amounts: PK amounts (mg) at each grid time, before that time's events.
        nonlinear: nonlinear state at each breakpoint, before that time's events.
        status: 0 success, 1 the ODE solver failed, 2 a prediction is not finite.
    """

    predictions: Float[Array, "*batch n_obs"]
    amounts: Float[Array, "*batch n_events n_compartments"]
    nonlinear: Float[Array, "*batch n_segments n_nonlinear"]
    status: Int[Array, "*batch"]


def _pk_pass(model, params, grid):
    """Amounts before and after the events at each grid time (mg)."""
    blocks = model.pk_blocks
    lengths = jnp.diff(grid.times, append=grid.times[-1:])

    def step(amounts, inputs):
        bolus, rate, reset, length = inputs
        before = amounts
        after = jnp.where(reset, jnp.zeros_like(amounts), amounts) + bolus
        return propagate_blocks(blocks, after, rate, length, params), (before, after)

    start = jnp.zeros(model.n_compartments, dtype=grid.bolus.dtype)
    _, (before, after) = jax.lax.scan(
        step, start, (grid.bolus, grid.rate, grid.reset, lengths)
    )
    return before, after


def _vector_field(model):
    blocks = model.pk_blocks

    def field(t, state, args):
        params, window_times, window_after, window_rate = args
        # Position of t among the segment's grid times; +inf padding keeps unused slots out.
        # An index gather: measured 1.10x faster than the one-hot product it replaced (issue 16)
        # inside the vmapped solver loops on the 2-core CPU, and exact.
        k = jnp.maximum(jnp.sum(window_times <= t) - 1, 0)
        amounts = propagate_blocks(blocks, window_after[k], window_rate[k], t - window_times[k], params)
        concentrations = block_concentrations(blocks, amounts, params)
        return model.nonlinear_rates(t, state, concentrations, params)

    return diffrax.ODETerm(field)


def _nonlinear_pass(model, params, grid, after):
    """Nonlinear state before each breakpoint's events, and whether any solve failed."""
    config = model.solver
    term = _vector_field(model)
    solver = config.make_solver()
    starts = grid.breakpoints
    ends = jnp.concatenate([starts[1:], starts[-1:]])
    initial = model.initial_nonlinear_state(params)
    dtmax = None
    if config.stable_step_factor() is not None:
        # A step cap, not a value: no derivative through it (as the controller's own steps).
        dtmax = config.stable_step_factor() / jnp.maximum(jax.lax.stop_gradient(stiffness(model, params)), 1e-12)

    def step(carry, segment):
        state, failed = carry
        first, last = segment
        before = state
        state = jnp.where(grid.reset[first], initial, state)
        # The grid intervals of this segment (at most SEGMENT_WINDOW of them, see grid.py);
        # slots past the segment get time +inf so the vector field never selects them.
        slots = first + jnp.arange(SEGMENT_WINDOW)
        inside = slots < jnp.maximum(last, first + 1)
        slots = jnp.minimum(slots, grid.times.shape[0] - 1)
        window_times = jnp.where(inside, grid.times[slots], jnp.inf)
        # Oral doses inside a segment make kinks in the concentration; declaring them as
        # jumps lets the controller step onto them instead of shrinking around each one.
        controller = config.make_controller(
            jump_ts=jnp.where(inside, grid.times[slots], grid.times[last]), dtmax=dtmax
        )
        solution = diffrax.diffeqsolve(
            term,
            solver,
            t0=grid.times[first],
            t1=grid.times[last],
            dt0=None,
            y0=state,
            args=(params, window_times, after[slots], grid.rate[slots]),
            saveat=diffrax.SaveAt(t1=True),
            stepsize_controller=controller,
            adjoint=config.make_adjoint(),
            max_steps=config.max_steps,
            throw=False,
        )
        failed = failed | (solution.result != diffrax.RESULTS.successful)
        return (solution.ys[-1], failed), before

    (_, failed), before = jax.lax.scan(step, (initial, jnp.asarray(False)), (starts, ends))
    return before, failed


def simulate(model, params, grid: EventGrid) -> Simulation:
    """Simulate one patient on its event grid (pure; ``jit``- and ``vmap``-able).

    Args:
        model: a structural model (``AbstractModel``).
        params: mapping of parameter name to scalar, internal units (days, mg, L, mg/L).
        grid: the patient's padded ``EventGrid``.

    Returns:
        ``Simulation`` with predictions at every observation row. An observation listed
        before the doses at its time sees the pre-dose state, one listed after them the
        post-dose state (NONMEM's file order).
    """
    before, after = _pk_pass(model, params, grid)
    if model.n_nonlinear_states:
        nonlinear, failed = _nonlinear_pass(model, params, grid, after)
    else:
        nonlinear = jnp.zeros((grid.breakpoints.shape[0], 0), dtype=before.dtype)
        failed = jnp.asarray(False)

    initial = model.initial_nonlinear_state(params)

    def predict(event, segment, output, after_events):
        # Listed after its time's doses/reset (file order): the post-event state.
        amounts = jnp.where(after_events, after[event], before[event])
        reset = after_events & grid.reset[event]
        state = jnp.where(reset, initial, nonlinear[segment]) if nonlinear.shape[1] else nonlinear[segment]
        concentrations = block_concentrations(model.pk_blocks, amounts, params)
        return model.observe(amounts, state, concentrations, params)[output]

    predictions = jax.vmap(predict)(
        grid.obs_event, grid.obs_segment, grid.obs_output, grid.obs_after_events
    )
    finite = jnp.all(jnp.where(grid.obs_mask, jnp.isfinite(predictions), True))
    status = jnp.where(
        failed, STATUS_SOLVER_FAILED, jnp.where(finite, STATUS_OK, STATUS_NONFINITE)
    )
    return Simulation(predictions=predictions, amounts=before, nonlinear=nonlinear, status=status)


def simulate_batch(model, params, grid: EventGrid) -> Simulation:
    """``simulate`` vmapped over a leading patient axis of ``params`` and ``grid`` (not jitted)."""
    return jax.vmap(simulate, in_axes=(None, 0, 0))(model, params, grid)


def stiffness(model, params):
    """How stiff a patient's nonlinear system is at its initial state (1/day).

    The largest magnitude on the diagonal of the vector field's Jacobian, drugs absent. In the
    ITP model this is the total platelet clearance, ``K = production / PLT0``: median 5 per day
    in the calibrated population and up to about 25 in the most severe patients, which bounds
    the step of an explicit solver. Used to order patients into chunks and, with
    ``SolverConfig.stable_step``, to cap the steps inside the solver's stability region.
    """
    state = model.initial_nonlinear_state(params)
    dtype = state.dtype
    amounts = jnp.zeros(model.n_compartments, dtype=dtype)
    concentrations = block_concentrations(model.pk_blocks, amounts, params)
    t0 = jnp.zeros((), dtype=dtype)
    jacobian = jax.jacfwd(lambda y: model.nonlinear_rates(t0, y, concentrations, params))(state)
    return jnp.max(jnp.abs(jnp.diagonal(jacobian)))


def default_chunk_size() -> int:
    """Patients per vectorised chunk: 256 on CPU (measured fastest, see ``simulate_population``);
    4,096 on accelerators, which need wide batches to fill their cores."""
    return 256 if jax.default_backend() == "cpu" else 4096


@eqx.filter_jit
def _simulate_batch_jit(model, params, grid, chunk_size):
    n = grid.times.shape[0]
    if not model.n_nonlinear_states or chunk_size >= n:
        return simulate_batch(model, params, grid)
    # Under vmap the solver's while loop runs until the slowest patient of the batch is done,
    # so mixing a stiff patient into a batch of easy ones makes them all pay its step count.
    # Patients of similar stiffness are therefore solved together, chunk by chunk.
    order = jnp.argsort(jax.vmap(stiffness, in_axes=(None, 0))(model, params))
    params, grid = jax.tree.map(lambda leaf: leaf[order], (params, grid))
    result = jax.lax.map(
        lambda patient: simulate(model, *patient), (params, grid), batch_size=chunk_size
    )
    restore = jnp.argsort(order)
    return jax.tree.map(lambda leaf: leaf[restore], result)


PATIENT_AXIS = "patients"


def patient_mesh(devices=None) -> Mesh:
    """A one-axis mesh (axis ``"patients"``) over ``devices`` (default: every device of JAX's
    default backend), for ``simulate_population(..., mesh=)``."""
    devices = list(jax.devices() if devices is None else devices)
    return Mesh(np.array(devices), (PATIENT_AXIS,))


def default_patient_mesh(model, n_patients: int) -> Mesh | None:
    """The mesh ``simulate_population`` uses unless told: every device of the platform JAX
    places work on (the ``jax.default_device`` in force, else the default backend) when there
    are several, at least as many patients, and ODE states to solve; ``None`` (one device)
    otherwise.

    Several CPU devices exist only when an entry point asked for them before JAX started
    (``itp_pd.runtime.use_every_core``: one per core). A model without nonlinear states is
    closed-form algebra, which splitting only slows: the 40-patient PK example's FOCE-I fit
    took 14.5 s on two devices against 7.5 s on one (2-core CPU)."""
    if not model.n_nonlinear_states:
        return None
    device = jax.config.jax_default_device
    platform = device.platform if isinstance(device, jax.Device) else (device or jax.default_backend())
    devices = jax.devices(platform)
    return patient_mesh(devices) if 1 < len(devices) <= n_patients else None


def _simulate_sharded(model, params, grid, chunk_size, mesh):
    """``_simulate_batch_jit`` with the patient axis split across the devices of ``mesh``.

    An explicit ``shard_map``: each device solves its own patients (sorted by stiffness and
    chunked locally) with no communication inside the adaptive loops, which automatic sharding
    cannot promise. The patient count is padded to a multiple of the device count with copies
    of the first patient, whose results are dropped.
    """
    allow_sharded_closures()
    return _simulate_sharded_jit(model, params, grid, chunk_size, mesh)


# Compiled once per model, shapes and mesh: an eager ``shard_map`` of a fresh closure would be
# traced and compiled again on every call (measured: 4 s per call for 4 patients).
@eqx.filter_jit
def _simulate_sharded_jit(model, params, grid, chunk_size, mesh):
    n = grid.times.shape[0]
    n_devices = mesh.devices.size
    padded = -(-n // n_devices) * n_devices

    def pad(leaf):
        return jnp.concatenate([leaf, jnp.repeat(leaf[:1], padded - n, axis=0)]) if padded > n else leaf

    params, grid = jax.tree.map(pad, (params, grid))
    local_chunk = min(chunk_size, padded // n_devices)
    patients = PartitionSpec(PATIENT_AXIS)
    solve = jax.shard_map(lambda p, g: _simulate_batch_jit(model, p, g, local_chunk), mesh=mesh,
                          in_specs=(patients, patients), out_specs=patients, check_vma=False)
    return jax.tree.map(lambda leaf: leaf[:n], solve(params, grid))


def simulate_population(model, params, population: Population, *, chunk_size: int | None = None,
                        mesh: Mesh | None | str = "auto") -> Simulation:
    """Simulate every patient of a ``Population`` in one compiled program.

    Args:
        model: the structural model the population was built for.
        params: mapping of parameter name to an array of shape ``(n_patients,)``.
        population: from ``build_population``; populations with the same padded shapes reuse
            the compiled program.
        chunk_size: patients solved together in one vectorised batch; default
            ``default_chunk_size()``. Patients are ordered by ``stiffness`` first, so that each
            chunk's solver loop runs about as long as its own patients need; results come back
            in the population's order. On the 2-core CPU this makes the ITP control arm 2.6×
            faster than one batch of 2,000 (``benchmarks/simulate.py --compare-unchunked``).
            Results agree with unchunked ones to the solver tolerance, not bit for bit: XLA
            vectorises a different batch width differently, and adaptive step decisions
            amplify the last bits.
        mesh: a ``patient_mesh`` of several devices: each solves its share of the patients
            (``shard_map``); results equal the one-device run to the solver tolerance.
            ``"auto"`` (default): ``default_patient_mesh`` (every core, where an entry point
            made one device per core); ``None``: one device. Pass ``None`` where the call is
            already split across devices (inside ``pmap``/``shard_map``).
    """
    return simulate_grid(model, params, population.grid, chunk_size=chunk_size, mesh=mesh)


def simulate_grid(model, params, grid: EventGrid, *, chunk_size: int | None = None,
                  mesh: Mesh | None | str = "auto") -> Simulation:
    """``simulate_population`` on a stacked ``EventGrid`` (leading axis: patients), e.g. a
    traced subset of a population's grid (``itp_pd.estimation`` re-solves only the patients
    whose modes are still moving)."""
    n = grid.times.shape[0]
    missing = sorted(set(model.parameter_names) - set(params))
    if missing:
        raise ValueError(
            f"missing parameters {missing}; {type(model).__name__} needs "
            f"{sorted(model.parameter_names)}"
        )
    for name, value in params.items():
        if jnp.shape(value) != (n,):
            raise ValueError(
                f"parameter {name!r} has shape {jnp.shape(value)}; expected ({n},), one value "
                f"per patient (use jnp.full({n}, value) for a shared value)"
            )
    chunk_size = default_chunk_size() if chunk_size is None else int(chunk_size)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive number of patients, got {chunk_size}")
    if isinstance(mesh, str):
        if mesh != "auto":
            raise ValueError(f"mesh is {mesh!r}; expected a patient_mesh, None (one device) or 'auto'")
        mesh = default_patient_mesh(model, n)
    if mesh is not None and mesh.devices.size > 1:
        return _simulate_sharded(model, params, grid, chunk_size, mesh)
    return _simulate_batch_jit(model, params, grid, chunk_size)
