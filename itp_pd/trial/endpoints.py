"""Response endpoints of immune thrombocytopenia from platelet counts at visits.

Definitions follow the international working group (Rodeghiero et al. 2009, Blood 113:2386) as
used by Wu et al. 2022 (Blood 139:333) and the trial NCT07057778 (science.md §1):

- **Overall response (OR)**: platelets ≥ 30×10⁹/L **and** ≥ 2× baseline, confirmed on two counts at
  least 7 days apart, within one year of the first treatment.
- **Complete response (CR)**: platelets ≥ 100×10⁹/L, confirmed the same way.
- **Sustained response (SR)**: platelets > 30×10⁹/L maintained for 6 consecutive months.
- **Time to response**: the day of the first count of a confirmed OR.
- **Loss of response (relapse)**: after an OR, platelets < 30×10⁹/L or < 2× baseline on two
  consecutive counts at least 1 day apart.

Made operational on visit series (the brief's reading of "confirmed" and "maintained"): a visit
``i`` *starts a confirmed run* for a criterion when it is a real visit meeting the criterion and
some later real visit ``j`` has ``t_j − t_i ≥ span`` with every real visit ``i..j`` meeting the
criterion, both ``t_i`` and ``t_j`` at or before the horizon. OR and CR use ``span = confirm_days``
(7 days), SR uses ``span = sustained_days`` (182.5 days ≈ 6 months) and the strict criterion
platelets > 30. Padded visits (``mask`` False) neither meet nor break a criterion: they are
invisible.

Everything is written with ``jax.numpy`` on whole arrays: no Python control flow on values, so the
functions run under ``jit`` and ``vmap`` and accept numpy inputs. Any number of leading batch axes
is allowed (``(n_visits,)`` for one patient, ``(n_patients, n_visits)`` for a trial arm,
``(n_draws, n_patients, n_visits)`` for posterior draws). Memory and work are linear in the number
of visits: runs are found with cumulative minima/maxima over visit indices, never with an
``n_visits × n_visits`` table.

Units: time in days (day 0 = first treatment), platelets in 10⁹/L.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float

from ..errors import ItpPdError

__all__ = [
    "EndpointInputError",
    "Endpoints",
    "compute_endpoints",
    "relapsed_by",
    "summarise",
]


class EndpointInputError(ItpPdError, ValueError):
    """Visit series handed to :func:`compute_endpoints` have inconsistent shapes or values."""


class Endpoints(eqx.Module):
    """Per-patient response endpoints (arrays with the input's batch shape, ``*batch``).

    Attributes:
        overall_response: confirmed OR within the horizon (bool).
        complete_response: confirmed CR within the horizon (bool).
        sustained_response: platelets > 30×10⁹/L over ≥ 6 months within the horizon (bool).
        time_to_response: day of the first visit starting a confirmed OR; NaN if none.
        time_to_complete_response: day of the first visit starting a confirmed CR; NaN if none.
        relapse: loss of response after an OR (bool; always False without an OR).
        time_to_relapse: day of the first of the two low counts defining the relapse; NaN if none.
    """

    overall_response: Bool[Array, "*batch"]
    complete_response: Bool[Array, "*batch"]
    sustained_response: Bool[Array, "*batch"]
    time_to_response: Float[Array, "*batch"]
    time_to_complete_response: Float[Array, "*batch"]
    relapse: Bool[Array, "*batch"]
    time_to_relapse: Float[Array, "*batch"]


def _check_inputs(times, platelets, baseline, mask) -> None:
    """Shapes always (they are static); order and finiteness of times when values are concrete."""
    if times.ndim < 1:
        raise EndpointInputError(
            f"times must have a visit axis, shape (*batch, n_visits); received a scalar. "
            f"Pass one patient's visits as a 1-D array."
        )
    problems = []
    if platelets.shape != times.shape:
        problems.append(f"platelets has shape {platelets.shape}, times has {times.shape}")
    if mask.shape != times.shape:
        problems.append(f"mask has shape {mask.shape}, times has {times.shape}")
    if baseline.shape != times.shape[:-1]:
        problems.append(
            f"baseline has shape {baseline.shape}, expected {times.shape[:-1]} "
            f"(one entry count per patient, the visit axis dropped)"
        )
    if problems:
        raise EndpointInputError(
            "visit series do not line up: "
            + "; ".join(problems)
            + ". times, platelets and mask are (*batch, n_visits); baseline is (*batch,)."
        )
    if any(isinstance(x, jax.core.Tracer) for x in (times, mask)):
        return
    times_np = np.asarray(times)
    mask_np = np.asarray(mask)
    if not np.all(np.isfinite(times_np[mask_np])):
        raise EndpointInputError(
            "times of real visits (mask True) must be finite; found NaN or infinity. "
            "Mark missing visits with mask=False."
        )
    # A real visit earlier than some previous real visit means the series is not sorted.
    previous = np.maximum.accumulate(np.where(mask_np, times_np, -np.inf), axis=-1)
    unsorted = mask_np[..., 1:] & (times_np[..., 1:] < previous[..., :-1])
    if np.any(unsorted):
        where = tuple(int(k) for k in np.argwhere(unsorted)[0])
        raise EndpointInputError(
            f"visit times must be sorted within each patient; the first real visit out of order "
            f"is at index {where[:-1] + (where[-1] + 1,)}. Sort each patient's visits by time."
        )


def _take(values: Array, index: Array) -> Array:
    """``values[..., index[..., k]]`` along the visit axis (indices already in range)."""
    return jnp.take_along_axis(values, index, axis=-1)


def _confirmed_run_starts(
    meets: Bool[Array, "*batch n_visits"],
    times: Float[Array, "*batch n_visits"],
    mask: Bool[Array, "*batch n_visits"],
    within: Bool[Array, "*batch n_visits"],
    span: float,
) -> Bool[Array, "*batch n_visits"]:
    """Visits ``i`` that start a run of real visits all meeting a criterion and lasting ≥ span.

    Visit ``i`` qualifies when it is real, meets the criterion and lies within the horizon, and
    some real visit ``j`` within the horizon has ``t_j − t_i ≥ span`` with no real visit in
    ``i..j`` failing the criterion.

    With times sorted, the best ``j`` for a given ``i`` is the last real within-horizon visit
    before the next real failure, so two cumulative scans over indices suffice (linear memory):
    ``next_failure[i]`` (reverse cumulative minimum) and ``last_usable[k]`` (cumulative maximum of
    usable indices up to ``k``). If ``last_usable[next_failure[i] − 1] ≥ i`` it lies in the run.
    """
    n_visits = meets.shape[-1]
    index = jnp.broadcast_to(jnp.arange(n_visits), meets.shape)
    fails = mask & ~meets
    next_failure = jax.lax.cummin(
        jnp.where(fails, index, n_visits), axis=meets.ndim - 1, reverse=True
    )
    usable = mask & within
    last_usable = jax.lax.cummax(jnp.where(usable, index, -1), axis=meets.ndim - 1)
    # next_failure == i only when i itself fails; i is then excluded below, so clipping is safe.
    end = _take(last_usable, jnp.clip(next_failure - 1, 0, n_visits - 1))
    end_time = _take(times, jnp.clip(end, 0, n_visits - 1))
    return mask & meets & within & (end >= index) & (end_time - times >= span)


def _first_time(
    flags: Bool[Array, "*batch n_visits"], times: Float[Array, "*batch n_visits"]
) -> tuple[Bool[Array, "*batch"], Array, Float[Array, "*batch"]]:
    """Whether any flag is set, the index of the first, and its time (NaN if none)."""
    found = jnp.any(flags, axis=-1)
    first = jnp.argmax(flags, axis=-1)
    time = _take(times, first[..., None])[..., 0]
    return found, first, jnp.where(found, time, jnp.nan)


def compute_endpoints(
    times: Float[ArrayLike, "*batch n_visits"],
    platelets: Float[ArrayLike, "*batch n_visits"],
    baseline: Float[ArrayLike, "*batch"],
    mask: Bool[ArrayLike, "*batch n_visits"] | None = None,
    *,
    response_threshold: float = 30.0,
    fold_over_baseline: float = 2.0,
    complete_threshold: float = 100.0,
    confirm_days: float = 7.0,
    horizon: float = 365.0,
    sustained_days: float = 182.5,
    relapse_gap_days: float = 1.0,
) -> Endpoints:
    """Overall, complete and sustained response, times to response and relapse, per patient.

    Criteria per real visit (Rodeghiero et al. 2009, Blood 113:2386; Wu et al. 2022, Blood
    139:333; NCT07057778):

    - OR: ``PLT ≥ response_threshold`` and ``PLT ≥ fold_over_baseline × baseline``, confirmed:
      some later real visit ``j`` with ``t_j − t_i ≥ confirm_days`` and every real visit ``i..j``
      meeting the criterion; ``t_i, t_j ≤ horizon``. Time to response = ``t_i`` of the first
      such visit.
    - CR: ``PLT ≥ complete_threshold``, confirmed the same way.
    - SR: ``PLT > response_threshold`` (strictly) at every real visit of a run with
      ``t_last − t_first ≥ sustained_days``, both ends within the horizon.
    - Relapse (only after an OR): two consecutive real visits after the first confirmed OR visit,
      both failing the OR criterion (``PLT < response_threshold`` or
      ``PLT < fold_over_baseline × baseline``), the second ``≥ relapse_gap_days`` after the
      first. Time to relapse = time of the first of the two. Relapse is looked for at every
      later real visit, also beyond the horizon; use :func:`relapsed_by` for "relapse by day X".

    Args:
        times: visit days, shape (*batch, n_visits), sorted within each patient among real
            visits; day 0 is the first treatment. Padded entries may hold anything.
        platelets: platelet counts (10⁹/L) at the visits, shape (*batch, n_visits). A real visit
            with a NaN count fails every criterion; mask missing counts out instead.
        baseline: platelet count at entry (10⁹/L), shape (*batch,).
        mask: True for real visits, shape (*batch, n_visits); padding (False) never counts,
            neither for nor against a criterion. None means every visit is real.
        response_threshold: OR threshold (10⁹/L); SR uses it strictly.
        fold_over_baseline: OR requires at least this multiple of ``baseline`` (dimensionless).
        complete_threshold: CR threshold (10⁹/L).
        confirm_days: least span (days) between the two counts confirming an OR or a CR.
        horizon: last day (inclusive) at which OR, CR and SR visits count (days).
        sustained_days: least span (days) of an SR run; 182.5 days ≈ 6 months.
        relapse_gap_days: least gap (days) between the two low counts defining a relapse.

    Returns:
        :class:`Endpoints` with arrays of shape (*batch,).

    Raises:
        EndpointInputError: shapes do not line up, or (for concrete inputs only) real visit
            times are not finite or not sorted.
    """
    dtype = jnp.result_type(float)
    times = jnp.asarray(times, dtype=dtype)
    platelets = jnp.asarray(platelets, dtype=dtype)
    baseline = jnp.asarray(baseline, dtype=dtype)
    mask = jnp.ones(times.shape, dtype=bool) if mask is None else jnp.asarray(mask, dtype=bool)
    _check_inputs(times, platelets, baseline, mask)

    within = times <= horizon
    meets_overall = (platelets >= response_threshold) & (
        platelets >= fold_over_baseline * baseline[..., None]
    )
    meets_complete = platelets >= complete_threshold
    meets_sustained = platelets > response_threshold

    confirmed = _confirmed_run_starts(meets_overall, times, mask, within, confirm_days)
    confirmed_complete = _confirmed_run_starts(meets_complete, times, mask, within, confirm_days)
    sustained = _confirmed_run_starts(meets_sustained, times, mask, within, sustained_days)

    overall_response, first_response, time_to_response = _first_time(confirmed, times)
    complete_response, _, time_to_complete = _first_time(confirmed_complete, times)

    n_visits = times.shape[-1]
    index = jnp.broadcast_to(jnp.arange(n_visits), times.shape)
    # Next real visit after k: reverse cumulative minimum of real indices, shifted by one.
    next_real_or_self = jax.lax.cummin(
        jnp.where(mask, index, n_visits), axis=times.ndim - 1, reverse=True
    )
    padding = jnp.full(times.shape[:-1] + (1,), n_visits, dtype=next_real_or_self.dtype)
    next_real = jnp.concatenate([next_real_or_self[..., 1:], padding], axis=-1)
    has_next = next_real < n_visits
    next_index = jnp.clip(next_real, 0, n_visits - 1)
    low = mask & ~meets_overall
    after_response = overall_response[..., None] & (index > first_response[..., None])
    starts_relapse = (
        mask
        & after_response
        & has_next
        & low
        & _take(low, next_index)
        & (_take(times, next_index) - times >= relapse_gap_days)
    )
    relapse, _, time_to_relapse = _first_time(starts_relapse, times)

    return Endpoints(
        overall_response=overall_response,
        complete_response=complete_response,
        sustained_response=jnp.any(sustained, axis=-1),
        time_to_response=time_to_response,
        time_to_complete_response=time_to_complete,
        relapse=relapse,
        time_to_relapse=time_to_relapse,
    )


def relapsed_by(endpoints: Endpoints, day: float) -> Bool[Array, "*batch"]:
    """Whether a patient relapsed at or before ``day`` (days; e.g. 182.5 or 365.0).

    The relapse day is the first of the two low counts (see :func:`compute_endpoints`).
    """
    return endpoints.relapse & (endpoints.time_to_relapse <= day)


def summarise(
    endpoints: Endpoints, *, relapse_days: tuple[float, ...] = (182.5, 365.0)
) -> dict[str, Array]:
    """Trial-level summary over the last (patient) axis.

    Rates are fractions of all patients for OR, CR and SR, and fractions of OR responders for
    relapse (NaN when there is no responder). Medians are over responders (NaN when none).
    Leading axes other than the patient axis (e.g. posterior draws) are kept.

    Args:
        endpoints: per-patient endpoints, arrays of shape (*batch, n_patients).
        relapse_days: days (static) for the "relapse by day X" rates.

    Returns:
        ``n_patients`` (int), ``overall_response_rate``, ``complete_response_rate``,
        ``sustained_response_rate``, ``relapse_rate``, ``relapse_by_day_{X:g}`` for each X in
        ``relapse_days`` (e.g. ``relapse_by_day_182.5``), ``median_time_to_response`` and
        ``median_time_to_complete_response`` (days).
    """
    dtype = endpoints.time_to_response.dtype

    def fraction(flags):
        return jnp.mean(flags.astype(dtype), axis=-1)

    responders = jnp.sum(endpoints.overall_response.astype(dtype), axis=-1)
    summary = {
        "n_patients": endpoints.overall_response.shape[-1],
        "overall_response_rate": fraction(endpoints.overall_response),
        "complete_response_rate": fraction(endpoints.complete_response),
        "sustained_response_rate": fraction(endpoints.sustained_response),
        "relapse_rate": jnp.sum(endpoints.relapse.astype(dtype), axis=-1) / responders,
    }
    for day in relapse_days:
        relapsed = relapsed_by(endpoints, day).astype(dtype)
        summary[f"relapse_by_day_{day:g}"] = jnp.sum(relapsed, axis=-1) / responders
    # nanmedian of an all-NaN row is NaN: exactly "no responders".
    summary["median_time_to_response"] = jnp.nanmedian(endpoints.time_to_response, axis=-1)
    summary["median_time_to_complete_response"] = jnp.nanmedian(
        endpoints.time_to_complete_response, axis=-1
    )
    return summary
