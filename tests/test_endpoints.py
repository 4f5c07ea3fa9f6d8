"""Response endpoints on hand-made platelet series (days, 10⁹/L).

Each series isolates one clause of the definitions (Rodeghiero 2009 as in science.md §1), so each
test fails if that clause breaks. A literal pairwise reference checks the linear-memory
implementation on random padded series.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from itp_pd.trial import (
    EndpointInputError,
    Endpoints,
    compute_endpoints,
    relapsed_by,
    summarise,
)

LOW_BASELINE = 10.0


def endpoints_of(times, platelets, baseline=LOW_BASELINE, mask=None, **kwargs):
    """Endpoints of one patient, as plain Python values."""
    result = compute_endpoints(
        np.asarray(times, dtype=float), np.asarray(platelets, dtype=float), baseline, mask, **kwargs
    )
    return {name: getattr(result, name).item() for name in result.__dataclass_fields__}


# ---- overall response and its confirmation -------------------------------------------------


def test_single_high_count_is_not_a_response():
    e = endpoints_of([0.0, 7.0, 14.0, 21.0], [10.0, 50.0, 20.0, 15.0])
    assert not e["overall_response"]
    assert math.isnan(e["time_to_response"])


def test_two_high_counts_seven_days_apart_confirm_at_the_first():
    e = endpoints_of([0.0, 7.0, 14.0, 21.0], [10.0, 50.0, 60.0, 15.0])
    assert e["overall_response"]
    assert e["time_to_response"] == 7.0


def test_two_high_counts_six_days_apart_do_not_confirm():
    e = endpoints_of([0.0, 7.0, 13.0, 21.0], [10.0, 50.0, 60.0, 15.0])
    assert not e["overall_response"]


def test_dip_between_high_counts_breaks_the_confirmation():
    # 7 and 21 are 14 days apart and both high, but day 14 falls below 30.
    e = endpoints_of([0.0, 7.0, 14.0, 21.0, 25.0], [10.0, 50.0, 25.0, 60.0, 20.0])
    assert not e["overall_response"]
    # The same pair confirms once the dip is gone.
    e = endpoints_of([0.0, 7.0, 14.0, 21.0, 25.0], [10.0, 50.0, 35.0, 60.0, 20.0])
    assert e["overall_response"] and e["time_to_response"] == 7.0


def test_later_confirmation_gives_later_time_to_response():
    # First high count at day 7 is not confirmed (dip at 10); the run from day 14 is.
    e = endpoints_of([0.0, 7.0, 10.0, 14.0, 21.0], [10.0, 50.0, 20.0, 40.0, 45.0])
    assert e["overall_response"] and e["time_to_response"] == 14.0


def test_count_exactly_at_threshold_and_twice_baseline_responds():
    e = endpoints_of([0.0, 7.0, 14.0], [15.0, 30.0, 30.0], baseline=15.0)
    assert e["overall_response"] and e["time_to_response"] == 7.0


def test_count_above_threshold_but_below_twice_baseline_is_not_a_response():
    e = endpoints_of([0.0, 7.0, 14.0, 21.0], [20.0, 35.0, 35.0, 35.0], baseline=20.0)
    assert not e["overall_response"]
    # ...but 40 is exactly twice 20: response.
    e = endpoints_of([0.0, 7.0, 14.0, 21.0], [20.0, 40.0, 40.0, 40.0], baseline=20.0)
    assert e["overall_response"]


def test_response_starting_on_last_visit_is_unconfirmable():
    e = endpoints_of([0.0, 7.0, 14.0], [10.0, 12.0, 80.0])
    assert not e["overall_response"]


def test_response_confirmed_only_after_horizon_does_not_count():
    times = [0.0, 100.0, 360.0, 370.0]
    platelets = [10.0, 12.0, 50.0, 60.0]
    assert not endpoints_of(times, platelets)["overall_response"]
    # A longer horizon admits it.
    e = endpoints_of(times, platelets, horizon=400.0)
    assert e["overall_response"] and e["time_to_response"] == 360.0


def test_confirming_visit_exactly_on_horizon_counts():
    e = endpoints_of([0.0, 358.0, 365.0], [10.0, 50.0, 60.0])
    assert e["overall_response"] and e["time_to_response"] == 358.0


# ---- complete and sustained response -------------------------------------------------------


def test_complete_response_on_two_counts_seven_days_apart():
    e = endpoints_of([0.0, 7.0, 14.0, 28.0], [10.0, 120.0, 100.0, 50.0])
    assert e["complete_response"] and e["time_to_complete_response"] == 7.0
    assert e["overall_response"]
    e = endpoints_of([0.0, 7.0, 14.0, 28.0], [10.0, 120.0, 99.0, 50.0])
    assert not e["complete_response"]
    assert math.isnan(e["time_to_complete_response"])


def six_month_run(level, dip_at=None, dip=25.0):
    """Visits every 14 days from day 0 to day 196 at ``level``, optional dip at one visit."""
    times = np.arange(0.0, 197.0, 14.0)
    platelets = np.full(times.shape, level)
    if dip_at is not None:
        platelets[dip_at] = dip
    return times, platelets


def test_sustained_response_on_a_six_month_run_above_30():
    times, platelets = six_month_run(45.0)
    assert endpoints_of(times, platelets)["sustained_response"]


def test_sustained_response_is_strictly_above_30():
    times, platelets = six_month_run(30.0)
    e = endpoints_of(times, platelets)
    assert not e["sustained_response"]
    assert e["overall_response"]  # 30 ≥ 30 and ≥ 2× baseline 10: OR, but not SR


def test_sustained_response_broken_by_one_visit_at_25():
    times, platelets = six_month_run(45.0, dip_at=7)
    e = endpoints_of(times, platelets)
    assert not e["sustained_response"]
    assert e["overall_response"]


def test_sustained_response_needs_the_full_span():
    # 0..182 spans 182 days < 182.5.
    times = np.arange(0.0, 183.0, 14.0)
    assert times[-1] == 182.0
    e = endpoints_of(times, np.full(times.shape, 45.0))
    assert not e["sustained_response"]


# ---- relapse -------------------------------------------------------------------------------


RESPONSE_TIMES = [0.0, 7.0, 14.0, 21.0]
RESPONSE_COUNTS = [10.0, 50.0, 60.0, 70.0]


def test_relapse_on_two_consecutive_low_counts_at_the_first():
    e = endpoints_of(RESPONSE_TIMES + [60.0, 62.0, 90.0], RESPONSE_COUNTS + [20.0, 25.0, 60.0])
    assert e["overall_response"] and e["relapse"]
    assert e["time_to_relapse"] == 60.0


def test_relapse_below_twice_baseline_even_above_30():
    # Baseline 25: 45 is ≥ 30 but < 50, so it is a loss of response.
    e = endpoints_of(
        [0.0, 7.0, 14.0, 60.0, 61.0], [25.0, 60.0, 60.0, 45.0, 45.0], baseline=25.0
    )
    assert e["overall_response"] and e["relapse"] and e["time_to_relapse"] == 60.0


def test_single_low_count_is_not_a_relapse():
    e = endpoints_of(RESPONSE_TIMES + [60.0, 62.0, 90.0], RESPONSE_COUNTS + [20.0, 45.0, 60.0])
    assert e["overall_response"] and not e["relapse"]
    assert math.isnan(e["time_to_relapse"])


def test_low_counts_on_the_same_day_are_not_a_relapse():
    e = endpoints_of(RESPONSE_TIMES + [60.0, 60.5, 90.0], RESPONSE_COUNTS + [20.0, 25.0, 60.0])
    assert e["overall_response"] and not e["relapse"]
    # Exactly one day apart is enough.
    e = endpoints_of(RESPONSE_TIMES + [60.0, 61.0, 90.0], RESPONSE_COUNTS + [20.0, 25.0, 60.0])
    assert e["relapse"] and e["time_to_relapse"] == 60.0
    # A custom gap lets them count.
    e = endpoints_of(
        RESPONSE_TIMES + [60.0, 60.5, 90.0],
        RESPONSE_COUNTS + [20.0, 25.0, 60.0],
        relapse_gap_days=0.5,
    )
    assert e["relapse"] and e["time_to_relapse"] == 60.0


def test_no_relapse_without_a_response():
    # Two low counts but never a confirmed response.
    e = endpoints_of([0.0, 7.0, 30.0, 31.0], [10.0, 50.0, 20.0, 20.0])
    assert not e["overall_response"] and not e["relapse"]


def test_low_counts_before_the_response_are_not_a_relapse():
    e = endpoints_of([0.0, 3.0, 7.0, 14.0], [10.0, 12.0, 50.0, 60.0])
    assert e["overall_response"] and not e["relapse"]


def test_relapsed_by_day():
    times = RESPONSE_TIMES + [200.0, 210.0]
    e = compute_endpoints(np.asarray(times), np.asarray(RESPONSE_COUNTS + [20.0, 20.0]), 10.0)
    assert bool(e.relapse)
    assert not bool(relapsed_by(e, 182.5))
    assert bool(relapsed_by(e, 365.0))


# ---- padding, batching, jit ----------------------------------------------------------------


def test_padded_visits_never_count():
    times = [0.0, 7.0, 14.0, 21.0, 28.0]
    platelets = [10.0, 50.0, 1e6, 1e6, 1e6]
    mask = np.array([True, True, False, False, False])
    e = endpoints_of(times, platelets, mask=mask)
    assert not e["overall_response"] and not e["complete_response"]
    # Padding at the end of a 6-month span does not make it sustained either.
    times = [0.0, 7.0, 14.0, 200.0]
    e = endpoints_of(times, [10.0, 45.0, 45.0, 1e6], mask=np.array([True, True, True, False]))
    assert not e["sustained_response"]


def test_padded_visits_never_break_a_run_or_make_a_relapse():
    times = [0.0, 7.0, 10.0, 14.0, 60.0, 62.0]
    platelets = [10.0, 50.0, 0.0, 60.0, 0.0, 0.0]
    mask = np.array([True, True, False, True, False, False])
    e = endpoints_of(times, platelets, mask=mask)
    assert e["overall_response"] and e["time_to_response"] == 7.0
    assert not e["relapse"]
    # Low real visits separated by a padded one are still consecutive real visits.
    e = endpoints_of(
        [0.0, 7.0, 14.0, 60.0, 61.0, 62.0],
        [10.0, 50.0, 60.0, 20.0, 1e6, 20.0],
        mask=np.array([True, True, True, True, False, True]),
    )
    assert e["relapse"] and e["time_to_relapse"] == 60.0


def hand_made_batch():
    """Five patients padded to 8 visits; baseline 10 each."""
    rows = [
        # responder (day 7), CR (day 7), relapse at 100
        ([0.0, 7.0, 14.0, 28.0, 100.0, 102.0], [10.0, 120.0, 110.0, 80.0, 20.0, 20.0]),
        # responder (day 14), no relapse
        ([0.0, 7.0, 14.0, 21.0], [10.0, 20.0, 40.0, 45.0]),
        # non-responder
        ([0.0, 7.0, 14.0], [10.0, 50.0, 10.0]),
        # responder (day 28), sustained
        ([0.0, 28.0, 56.0, 112.0, 168.0, 224.0, 280.0], [10.0, 40.0, 50.0, 60.0, 50.0, 40.0, 45.0]),
        # non-responder, padding holds huge values
        ([0.0, 7.0], [10.0, 12.0]),
    ]
    n_visits = 8
    times = np.zeros((len(rows), n_visits))
    platelets = np.full((len(rows), n_visits), 1e6)
    mask = np.zeros((len(rows), n_visits), dtype=bool)
    for k, (t, p) in enumerate(rows):
        times[k, : len(t)] = t
        times[k, len(t) :] = t[-1] + 7.0 * np.arange(1, n_visits - len(t) + 1)
        platelets[k, : len(p)] = p
        mask[k, : len(t)] = True
    return times, platelets, np.full(len(rows), 10.0), mask


def test_batch_equals_each_patient_and_runs_under_jit_and_vmap():
    times, platelets, baseline, mask = hand_made_batch()
    batch = compute_endpoints(times, platelets, baseline, mask)
    jitted = jax.jit(compute_endpoints)(times, platelets, baseline, mask)
    vmapped = jax.vmap(compute_endpoints)(times, platelets, baseline, mask)
    for name in Endpoints.__dataclass_fields__:
        column = np.asarray(getattr(batch, name))
        assert column.shape == (5,)
        single = [
            getattr(compute_endpoints(times[k], platelets[k], baseline[k], mask[k]), name)
            for k in range(5)
        ]
        np.testing.assert_array_equal(column, np.asarray(single))
        np.testing.assert_array_equal(column, np.asarray(getattr(jitted, name)))
        np.testing.assert_array_equal(column, np.asarray(getattr(vmapped, name)))
    np.testing.assert_array_equal(batch.overall_response, [True, True, False, True, False])
    np.testing.assert_array_equal(batch.complete_response, [True, False, False, False, False])
    np.testing.assert_array_equal(batch.sustained_response, [False, False, False, True, False])
    np.testing.assert_array_equal(batch.relapse, [True, False, False, False, False])
    np.testing.assert_array_equal(batch.time_to_response, [7.0, 14.0, np.nan, 28.0, np.nan])
    np.testing.assert_array_equal(batch.time_to_relapse, [100.0, np.nan, np.nan, np.nan, np.nan])


def test_summarise_known_batch():
    e = compute_endpoints(*hand_made_batch())
    s = summarise(e)
    assert s["n_patients"] == 5
    assert float(s["overall_response_rate"]) == pytest.approx(3 / 5)
    assert float(s["complete_response_rate"]) == pytest.approx(1 / 5)
    assert float(s["sustained_response_rate"]) == pytest.approx(1 / 5)
    assert float(s["relapse_rate"]) == pytest.approx(1 / 3)  # among responders
    assert float(s["relapse_by_day_182.5"]) == pytest.approx(1 / 3)
    assert float(s["median_time_to_response"]) == 14.0  # median of 7, 14, 28
    assert float(s["median_time_to_complete_response"]) == 7.0
    jitted = jax.jit(summarise)(e)
    assert float(jitted["median_time_to_response"]) == 14.0


def test_summarise_without_responders_gives_nan_median():
    times = np.array([[0.0, 7.0], [0.0, 7.0]])
    e = compute_endpoints(times, np.full((2, 2), 10.0), np.full(2, 10.0))
    s = summarise(e)
    assert float(s["overall_response_rate"]) == 0.0
    assert math.isnan(float(s["median_time_to_response"]))
    assert math.isnan(float(s["relapse_rate"]))


def test_inputs_that_do_not_line_up_are_rejected():
    with pytest.raises(EndpointInputError, match="baseline has shape"):
        compute_endpoints(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros(3))
    with pytest.raises(EndpointInputError, match="sorted"):
        compute_endpoints(np.array([0.0, 14.0, 7.0]), np.zeros(3), 10.0)


# ---- against a literal reading of the definitions ------------------------------------------


def reference(times, platelets, baseline, mask, horizon=365.0):
    """The definitions read literally: pairwise loops over real visits (one patient)."""
    real = [k for k in range(len(times)) if mask[k]]
    ok = {k: platelets[k] >= 30.0 and platelets[k] >= 2.0 * baseline for k in real}
    cr = {k: platelets[k] >= 100.0 for k in real}
    sr = {k: platelets[k] > 30.0 for k in real}

    def first_start(meets, span):
        for a, i in enumerate(real):
            for j in real[a:]:
                inside = [k for k in real if i <= k <= j]
                if (
                    times[i] <= horizon
                    and times[j] <= horizon
                    and times[j] - times[i] >= span
                    and all(meets[k] for k in inside)
                ):
                    return i
        return None

    first = first_start(ok, 7.0)
    relapse_time = np.nan
    if first is not None:
        later = [k for k in real if k > first]
        for a, b in zip(later, later[1:]):
            if not ok[a] and not ok[b] and times[b] - times[a] >= 1.0:
                relapse_time = times[a]
                break
    first_cr = first_start(cr, 7.0)
    return {
        "overall_response": first is not None,
        "time_to_response": np.nan if first is None else times[first],
        "complete_response": first_cr is not None,
        "time_to_complete_response": np.nan if first_cr is None else times[first_cr],
        "sustained_response": first_start(sr, 182.5) is not None,
        "relapse": not np.isnan(relapse_time),
        "time_to_relapse": relapse_time,
    }


def test_matches_literal_definitions_on_random_padded_series():
    rng = np.random.default_rng(20240607)
    n_patients, n_visits = 200, 14
    gap_choices = [0.0, 0.5, 3.0, 6.0, 7.0, 14.0, 28.0, 60.0, 90.0]
    gaps = rng.choice(gap_choices, size=(n_patients, n_visits))
    times = np.cumsum(gaps, axis=1)
    # Each patient has its own chance of a low count, so long runs (SR) and relapses both occur.
    low = rng.random(times.shape) < rng.uniform(0.0, 0.6, size=(n_patients, 1))
    platelets = np.where(
        low,
        rng.choice([10.0, 25.0, 30.0], size=times.shape),
        rng.choice([30.0, 35.0, 45.0, 60.0, 100.0, 150.0], size=times.shape),
    )
    baseline = rng.choice([5.0, 15.0, 20.0, 25.0], size=n_patients)
    mask = rng.random(times.shape) < 0.85
    e = compute_endpoints(times, platelets, baseline, mask)
    for k in range(n_patients):
        expected = reference(times[k], platelets[k], baseline[k], mask[k])
        for name, value in expected.items():
            np.testing.assert_array_equal(
                np.asarray(getattr(e, name)[k]), value, err_msg=f"patient {k}, {name}"
            )


def test_float32_and_integer_inputs_are_accepted():
    times = jnp.asarray([0.0, 7.0, 14.0], dtype=jnp.float32)
    platelets = np.array([10, 50, 60])
    e = compute_endpoints(times, platelets, 10)
    assert bool(e.overall_response) and float(e.time_to_response) == 7.0
