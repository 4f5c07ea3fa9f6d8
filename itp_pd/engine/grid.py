"""From event records to padded per-patient event grids (host side, numpy).

Each patient's records become one sorted grid of distinct times. Records at one time are
taken in file order, as NONMEM does: an observation listed before the doses at its time sees
the state before them (the usual pre-dose sample; ``itp_pd.dosing`` writes observations
first), one listed after them sees the state after them. A reset (EVID 3/4) returns every
state to its initial value and stops running infusions; then that time's doses are added.
Infusion rates are constant on each interval ``[t_k, t_{k+1})`` and overlapping infusions add.
EVID 0 rows with MDV 1 and EVID 2 rows are prediction requests: simulated, never fitted.

The nonlinear (ODE) part restarts only at *breakpoints*: observations, resets, bolus doses into
non-depot compartments, and changes of any infusion rate. An oral dose into a depot makes no
jump in concentration, so it is not a restart: it is declared to the step controller as a jump
time, so a step ends on it and the next one starts with a fresh first stage, while the exact
PK supplies the concentration. A segment is also split every ``SEGMENT_WINDOW`` grid
intervals so the vector field searches a short, fixed window. 364 oral doses thus cost about
23 restarts instead of 364.

Arrays are padded to bucketed sizes so that only a few programs compile.
"""

from __future__ import annotations

import bisect
import dataclasses
from dataclasses import dataclass

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from ..data import expand_addl
from ..data.averaged import average_repeated_doses
from ..errors import DatasetError

_MIN_BUCKET = 8
# Most grid intervals one ODE segment may span. Longer stretches without a breakpoint (months
# of oral doses between visits) are split, so the vector field searches a short fixed window.
SEGMENT_WINDOW = 16


def bucket_size(n: int) -> int:
    """Smallest size of the ladder 8, 12, 16, 24, 32, 48, ... that holds ``n`` items.

    Sizes grow by √2 on average, so padding wastes at most half the work and a population's
    shapes fall into a few buckets (one compiled program each).
    """
    size = _MIN_BUCKET
    while True:
        if n <= size:
            return size
        if n <= size * 3 // 2:
            return size * 3 // 2
        size *= 2


@dataclass(frozen=True)
class PatientEvents:
    """One patient's event grid before padding (numpy arrays, internal units)."""

    patient_id: float
    times: np.ndarray  # (n_events,) days, strictly increasing
    bolus: np.ndarray  # (n_events, n_compartments) mg added at each time
    rate: np.ndarray  # (n_events, n_compartments) mg/day on [t_k, t_{k+1})
    reset: np.ndarray  # (n_events,) bool
    breakpoints: np.ndarray  # (n_segments,) grid indices where the ODE restarts
    obs_event: np.ndarray  # (n_obs,) grid index of each observation
    obs_segment: np.ndarray  # (n_obs,) position of that grid index in ``breakpoints``
    obs_output: np.ndarray  # (n_obs,) DVID - 1
    obs_after_events: np.ndarray  # (n_obs,) bool: listed after its time's doses/reset
    obs_is_data: np.ndarray  # (n_obs,) bool: EVID 0 with MDV 0 (enters a likelihood)
    obs_rows: np.ndarray  # (n_obs,) row of the source table


class EventGrid(eqx.Module):
    """Padded event grid of one patient (or, with a leading axis, of a population).

    Padding repeats the last time (zero-length intervals change nothing), adds no doses and
    is excluded from the likelihood by ``obs_mask``.
    """

    times: Float[Array, "*batch n_events"]
    bolus: Float[Array, "*batch n_events n_compartments"]
    rate: Float[Array, "*batch n_events n_compartments"]
    reset: Bool[Array, "*batch n_events"]
    breakpoints: Int[Array, "*batch n_segments"]
    obs_event: Int[Array, "*batch n_obs"]
    obs_segment: Int[Array, "*batch n_obs"]
    obs_output: Int[Array, "*batch n_obs"]
    obs_after_events: Bool[Array, "*batch n_obs"]
    obs_mask: Bool[Array, "*batch n_obs"]


@dataclass(frozen=True)
class Population:
    """A batch of patients ready for the engine.

    Attributes:
        grid: stacked ``EventGrid`` with leading axis ``n_patients``.
        ids: patient IDs in dataset order.
        obs_is_data: ``(n_patients, n_obs)`` True where the row is a measurement (EVID 0,
            MDV 0), False for prediction requests and padding.
        obs_rows: ``(n_patients, n_obs)`` position in the source table (for
            ``population_from_dataset``: in ``dataset.table``) of each observation row, -1 for
            padding.
    """

    grid: EventGrid
    ids: tuple
    obs_rows: np.ndarray
    obs_is_data: np.ndarray

    @property
    def n_patients(self) -> int:
        return len(self.ids)


def _column(table, name, default):
    if name in table.columns:
        return table[name].to_numpy(dtype=float)
    return np.full(len(table), default, dtype=float)


def patient_events(records, model, *, row_numbers=None) -> PatientEvents:
    """Build one patient's grid from its records (a DataFrame, ADDL already expanded).

    Args:
        records: canonical NONMEM columns (ID, TIME, EVID, AMT, CMT, RATE or DUR, DVID) in
            internal units, rows in file order.
        model: the structural model (for the number of compartments, depots and outputs).
        row_numbers: 1-based row number in the user's file of each record, for messages;
            defaults to position in the table + 1.

    Raises:
        DatasetError: a dose into an unknown compartment, an unknown DVID, a reset listed
            after a dose at the same time (the reset would cancel that dose), or an
            observation listed between two events at its time.
    """
    n_cmt = model.n_compartments
    n_outputs = len(model.outputs)
    depot = np.asarray(model.depot_mask, dtype=bool)
    time = _column(records, "TIME", 0.0)
    evid = _column(records, "EVID", 0.0).astype(int)
    amt = _column(records, "AMT", 0.0)
    cmt = np.nan_to_num(_column(records, "CMT", 1.0), nan=1.0).astype(int)
    rate = np.nan_to_num(_column(records, "RATE", 0.0))
    dur = np.nan_to_num(_column(records, "DUR", 0.0))
    dvid = np.nan_to_num(_column(records, "DVID", 1.0), nan=1.0).astype(int)
    mdv = np.nan_to_num(_column(records, "MDV", 0.0), nan=0.0)
    rows = np.asarray(records.index, dtype=int)  # positions in the source table
    labels = rows + 1 if row_numbers is None else np.asarray(row_numbers, dtype=int)
    pid = float(records["ID"].iloc[0])

    problems = []
    infusions = []  # (start, end, cmt index, rate)
    boluses = []  # (time, cmt index, amount)
    resets = []
    observations = []  # (time, output, row, listed after events at its time, is data)
    dosed_at: dict[float, int] = {}
    events_at: dict[float, int] = {}  # dose and reset records seen so far at each time
    for k in range(len(records)):
        t, e = time[k], evid[k]
        if e in (0, 2):
            if not 1 <= dvid[k] <= n_outputs:
                problems.append(
                    f"row {labels[k]} (ID {pid:g}): DVID {dvid[k]} is not an output of this "
                    f"model; use 1..{n_outputs} for {', '.join(model.outputs)}"
                )
            is_data = e == 0 and mdv[k] == 0
            observations.append([t, dvid[k] - 1, rows[k], events_at.get(t, 0), is_data, labels[k]])
            continue
        events_at[t] = events_at.get(t, 0) + 1
        if e in (3, 4):
            if t in dosed_at:
                problems.append(
                    f"row {labels[k]} (ID {pid:g}): a reset (EVID {e}) at TIME {t:g} follows a "
                    f"dose at the same time (row {dosed_at[t]}), which it would cancel; put "
                    f"the reset first or use EVID 4 (reset and dose)"
                )
            resets.append(t)
        if e not in (1, 4):
            continue
        if not 1 <= cmt[k] <= n_cmt:
            problems.append(
                f"row {labels[k]} (ID {pid:g}): CMT {cmt[k]} does not exist; this model has "
                f"CMT 1..{n_cmt} ({', '.join(model.compartments)})"
            )
            continue
        dosed_at.setdefault(t, labels[k])
        if rate[k] > 0:
            infusions.append((t, t + amt[k] / rate[k], cmt[k] - 1, rate[k]))
        elif dur[k] > 0:
            infusions.append((t, t + dur[k], cmt[k] - 1, amt[k] / dur[k]))
        else:
            boluses.append((t, cmt[k] - 1, amt[k]))
    for observation in observations:
        t, seen_before, label = observation[0], observation[3], observation[5]
        if 0 < seen_before < events_at.get(t, 0):
            problems.append(
                f"row {label} (ID {pid:g}): this observation sits between dose/reset records at "
                f"TIME {t:g}; list it before them (pre-dose) or after all of them (post-dose)"
            )
        observation[3] = seen_before > 0
    if problems:
        raise DatasetError(problems)

    reset_times = np.asarray(sorted(set(resets)), dtype=float)
    # A reset stops infusions that were running when it happened.
    stopped = []
    for start, end, c, r in infusions:
        later = reset_times[(reset_times > start) & (reset_times < end)]
        stopped.append((start, later[0] if later.size else end, c, r))

    record_times = sorted(set(time.tolist()))
    # An infusion end computed as start + AMT/RATE can miss a record time by a rounding
    # error (0.1 + 20/100 = 0.30000000000000004); snap it so no sliver interval appears.
    stopped = [(s, _snap(e, record_times), c, r) for s, e, c, r in stopped]
    grid_times = sorted(set(record_times) | {e for _, e, _, _ in stopped})
    times = np.asarray(grid_times, dtype=float)
    index = {t: i for i, t in enumerate(grid_times)}
    n = len(times)

    bolus = np.zeros((n, n_cmt))
    for t, c, a in boluses:
        bolus[index[t], c] += a
    rate_grid = np.zeros((n, n_cmt))
    for start, end, c, r in stopped:
        rate_grid[index[start] : index[end], c] += r
    reset = np.zeros(n, dtype=bool)
    for t in reset_times:
        reset[index[t]] = True

    is_break = np.zeros(n, dtype=bool)
    is_break[[0, n - 1]] = True
    is_break |= reset
    is_break |= (bolus[:, ~depot] != 0).any(axis=1)
    previous_rate = np.vstack([np.zeros((1, n_cmt)), rate_grid[:-1]])
    is_break |= (rate_grid != previous_rate).any(axis=1)
    obs_event = np.asarray([index[o[0]] for o in observations], dtype=int)
    is_break[obs_event] = True
    breakpoints = np.flatnonzero(is_break)
    gaps = np.diff(breakpoints)
    for start, gap in zip(breakpoints[:-1], gaps):
        is_break[start + SEGMENT_WINDOW : start + gap : SEGMENT_WINDOW] = True
    breakpoints = np.flatnonzero(is_break)
    segment_of = {int(b): j for j, b in enumerate(breakpoints)}

    return PatientEvents(
        patient_id=pid,
        times=times,
        bolus=bolus,
        rate=rate_grid,
        reset=reset,
        breakpoints=breakpoints,
        obs_event=obs_event,
        obs_segment=np.asarray([segment_of[int(k)] for k in obs_event], dtype=int),
        obs_output=np.asarray([o[1] for o in observations], dtype=int),
        obs_after_events=np.asarray([o[3] for o in observations], dtype=bool),
        obs_is_data=np.asarray([o[4] for o in observations], dtype=bool),
        obs_rows=np.asarray([o[2] for o in observations], dtype=int),
    )


def _snap(value, times, tolerance=1e-9):
    """``value``, or the record time within ``tolerance`` days (≈ 0.1 ms) of it."""
    position = bisect.bisect_left(times, value)
    for candidate in times[max(position - 1, 0) : position + 1]:
        if abs(candidate - value) <= tolerance * max(1.0, abs(value)):
            return candidate
    return value


def _pad(array, size, fill):
    pad = size - array.shape[0]
    if pad < 0:
        raise ValueError(f"cannot pad {array.shape[0]} items into {size}")
    widths = [(0, pad)] + [(0, 0)] * (array.ndim - 1)
    if fill == "edge":
        return np.pad(array, widths, mode="edge")
    return np.pad(array, widths, constant_values=fill)


def pad_events(events: PatientEvents, n_events: int, n_segments: int, n_obs: int) -> dict:
    """Pad one patient's arrays to the given sizes (numpy, for stacking)."""
    return dict(
        times=_pad(events.times, n_events, "edge"),
        bolus=_pad(events.bolus, n_events, 0.0),
        rate=_pad(events.rate, n_events, 0.0),
        reset=_pad(events.reset, n_events, False),
        breakpoints=_pad(events.breakpoints, n_segments, "edge"),
        obs_event=_pad(events.obs_event, n_obs, 0),
        obs_segment=_pad(events.obs_segment, n_obs, 0),
        obs_output=_pad(events.obs_output, n_obs, 0),
        obs_after_events=_pad(events.obs_after_events, n_obs, False),
        obs_is_data=_pad(events.obs_is_data, n_obs, False),
        obs_mask=_pad(np.ones(events.obs_event.shape[0], dtype=bool), n_obs, False),
        obs_rows=_pad(events.obs_rows, n_obs, -1),
    )


def stack_events(all_events, *, sizes=None) -> Population:
    """Pad patients to common bucketed sizes and stack them into a ``Population``.

    Args:
        all_events: ``PatientEvents`` per patient.
        sizes: optional ``(n_events, n_segments, n_obs)`` to force (must fit every patient);
            by default each is the bucket of the largest patient.
    """
    if not all_events:
        raise DatasetError(["no patients to simulate"])
    if sizes is None:
        sizes = (
            bucket_size(max(e.times.shape[0] for e in all_events)),
            bucket_size(max(e.breakpoints.shape[0] for e in all_events)),
            bucket_size(max(max(e.obs_event.shape[0] for e in all_events), 1)),
        )
    padded = [pad_events(e, *sizes) for e in all_events]
    stacked = {key: np.stack([p[key] for p in padded]) for key in padded[0]}
    obs_rows = stacked.pop("obs_rows")
    obs_is_data = stacked.pop("obs_is_data")
    segments = np.diff(stacked["breakpoints"], axis=1)
    if segments.size and segments.max() > SEGMENT_WINDOW:
        raise ValueError(
            f"a segment spans {segments.max()} grid intervals; the engine handles at most "
            f"{SEGMENT_WINDOW} (build grids with patient_events, which splits longer ones)"
        )
    grid = EventGrid(
        times=jnp.asarray(stacked["times"]),
        bolus=jnp.asarray(stacked["bolus"]),
        rate=jnp.asarray(stacked["rate"]),
        reset=jnp.asarray(stacked["reset"]),
        breakpoints=jnp.asarray(stacked["breakpoints"]),
        obs_event=jnp.asarray(stacked["obs_event"]),
        obs_segment=jnp.asarray(stacked["obs_segment"]),
        obs_output=jnp.asarray(stacked["obs_output"]),
        obs_after_events=jnp.asarray(stacked["obs_after_events"]),
        obs_mask=jnp.asarray(stacked["obs_mask"]),
    )
    return Population(
        grid=grid,
        ids=tuple(e.patient_id for e in all_events),
        obs_rows=obs_rows,
        obs_is_data=obs_is_data,
    )


def build_population(table, model, *, sizes=None, row_numbers=None) -> Population:
    """Event grids for every patient of a canonical table (ADDL already expanded).

    Args:
        table: pandas DataFrame with canonical NONMEM columns in internal units, e.g.
            ``Dataset.table`` after ``expand_addl``.
        model: the structural model the grids are for.
        sizes: optional padded sizes ``(n_events, n_segments, n_obs)``.
        row_numbers: 1-based file row of each table row, for messages.

    Raises:
        DatasetError: listing every problem across all patients.
    """
    table = table.reset_index(drop=True)
    labels = np.arange(len(table)) + 1 if row_numbers is None else np.asarray(row_numbers)
    problems, all_events = [], []
    for _, records in table.groupby("ID", sort=False):
        try:
            all_events.append(
                patient_events(records, model, row_numbers=labels[records.index.to_numpy()])
            )
        except DatasetError as error:
            problems.extend(error.problems)
    if problems:
        raise DatasetError(problems)
    return stack_events(all_events, sizes=sizes)


def population_from_dataset(dataset, model, *, sizes=None) -> Population:
    """Event grids for a checked ``Dataset`` (ADDL/II doses expanded first; with the model's
    ``solver.oral_doses == "averaged"``, regular runs of depot doses as their mean input rate,
    ``itp_pd.data.averaged``).

    Simulated patients (``itp_pd.dosing`` records through ``Dataset.from_table``) and real
    ones (``read_nonmem``) take this same path into the engine.

    Raises:
        DatasetError: doses into compartments the model lacks, or DVIDs it has no output
            for, each with the row of the user's file.
    """
    expanded = expand_addl(dataset)
    if model.solver.oral_doses == "averaged":
        depots = [k + 1 for k, is_depot in enumerate(model.depot_mask) if is_depot]
        expanded = average_repeated_doses(expanded, depots)
    population = build_population(
        expanded.table, model, sizes=sizes, row_numbers=expanded.source_rows
    )
    # Report observations by their row in the dataset the user gave, not in the expansion
    # (expansion only adds dose rows, so every observation keeps a unique source row).
    position = {row: i for i, row in enumerate(dataset.source_rows)}
    expanded_source = np.asarray(expanded.source_rows)
    obs_rows = np.where(
        population.obs_rows >= 0,
        np.vectorize(position.get, otypes=[int])(expanded_source[population.obs_rows]),
        -1,
    )
    return dataclasses.replace(population, obs_rows=obs_rows)
