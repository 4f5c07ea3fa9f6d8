"""Power of a two-arm trial on overall response, with its uncertainty, and the sample size for it.

The trial as it will be analysed (NCT07057778): ``n`` patients per arm (1:1), overall response
within one year, a two-sided Pearson chi-square test of the two response proportions (the
pooled two-proportion z-test, no continuity correction) at level ``alpha``.

For each draw of population values, ``simulate_trial`` gave each arm a pool of simulated
patients with per-patient OR. A replicate trial enrols ``n`` patients per arm from that
draw's population; sampling them from the pool with replacement makes the number of
responders in an arm Binomial(n, p̂), p̂ the pool's response fraction, independently between
arms. Instead of drawing a finite number of replicates, the power of each draw is computed as
their exact average: ``Σ Binom(x₁; n, p̂₁) Binom(x₂; n, p̂₂) · reject(x₁, x₂)`` over all
outcomes, i.e. infinitely many replicates, with no Monte Carlo error beyond the pool's
(about ±1.5 points on p̂ for a pool of 1,000).

Power with its uncertainty: the mean over draws (expected power, also called assurance) and
the 5th–95th percentile of the per-draw powers. The sample size for a target power is the
smallest ``n`` whose expected power reaches it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import ndtri
from scipy.stats import binom

from .virtual_trial import TrialResult


def rejection_table(n: int, alpha: float = 0.05) -> np.ndarray:
    """``reject[x₁, x₂]``: whether x₁ and x₂ responders of ``n`` per arm reject equal rates.

    Pearson chi-square (pooled z) two-sided at ``alpha``; a table with all or no responders
    in both arms has no variance and never rejects.
    """
    x = np.arange(n + 1, dtype=float)
    p1, p2 = x[:, None] / n, x[None, :] / n
    pooled = (x[:, None] + x[None, :]) / (2 * n)
    variance = pooled * (1 - pooled) * (2.0 / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(variance > 0, (p1 - p2) / np.sqrt(np.where(variance > 0, variance, 1.0)), 0.0)
    return np.abs(z) > ndtri(1 - alpha / 2)


def power_per_draw(p_arm: np.ndarray, p_reference: np.ndarray, n: int, alpha: float = 0.05) -> np.ndarray:
    """Exact power of the test for each pair of true response rates (arrays of shape (n_draws,))."""
    x = np.arange(n + 1)
    pmf_arm = binom.pmf(x[None, :], n, np.asarray(p_arm, dtype=float)[:, None])
    pmf_reference = binom.pmf(x[None, :], n, np.asarray(p_reference, dtype=float)[:, None])
    reject = rejection_table(n, alpha).astype(float)
    return np.einsum("di,ij,dj->d", pmf_arm, reject, pmf_reference)


@dataclass(frozen=True)
class PowerResult:
    """Power of ``arm`` against ``reference`` (see the module docstring).

    Attributes:
        n_per_arm: the trial's patients per arm; ``power``: expected power there;
        interval: 5th and 95th percentile of the per-draw power; per_draw: ``(n_draws,)``.
        sample_sizes, curve, curve_lower, curve_upper: the power curve over patients per arm.
        n_for_target: smallest patients per arm with expected power ≥ ``target``, or None if
            not reached by ``max_n``.
        response_rates: ``(n_draws, 2)`` OR fractions of the pools (arm, reference).
    """

    arm: str
    reference: str
    alpha: float
    target: float
    n_per_arm: int
    power: float
    interval: tuple[float, float]
    per_draw: np.ndarray
    sample_sizes: np.ndarray
    curve: np.ndarray
    curve_lower: np.ndarray
    curve_upper: np.ndarray
    n_for_target: int | None
    response_rates: np.ndarray
    pool_size: int
    source: str

    def curve_table(self) -> pd.DataFrame:
        return pd.DataFrame({"patients_per_arm": self.sample_sizes, "power": self.curve,
                             "lower": self.curve_lower, "upper": self.curve_upper})

    def summary(self) -> dict:
        return dict(arm=self.arm, reference=self.reference, source=self.source, alpha=self.alpha,
                    patients_per_arm=self.n_per_arm, power=self.power, power_lower=self.interval[0],
                    power_upper=self.interval[1], target=self.target, n_for_target=self.n_for_target,
                    draws=len(self.per_draw), pool_size=self.pool_size)


def trial_power(result: TrialResult, arm: str = "combination", reference: str = "control", *,
                n_per_arm: int = 60, alpha: float = 0.05, target: float = 0.8,
                sample_sizes=None, max_n: int = 500) -> PowerResult:
    """Power of the two-arm OR comparison, per draw and overall, and the sample size for ``target``.

    Args:
        result: a ``TrialResult`` whose arms include ``arm`` and ``reference``; its
            ``n_per_arm`` is the pool each draw's response rate is estimated from (use a
            large pool, e.g. 1,000, whatever the trial size analysed).
        arm, reference: the arms compared.
        n_per_arm: patients per arm of the analysed trial (NCT07057778: 60).
        alpha: two-sided level of the test.
        target: power for the sample-size search.
        sample_sizes: patients per arm for the power curve (default 10, 20, ..., ``max_n``).
        max_n: largest patients per arm searched for ``target``.
    """
    if not 0 < alpha < 1 or not 0 < target < 1:
        raise ValueError(f"alpha and target must lie in (0, 1); got alpha={alpha}, target={target}")
    overall = result.patients["overall_response"]
    p_arm = overall[:, result.arm_index(arm)].mean(axis=-1)
    p_reference = overall[:, result.arm_index(reference)].mean(axis=-1)
    per_draw = power_per_draw(p_arm, p_reference, n_per_arm, alpha)
    sizes = np.arange(10, max_n + 1, 10) if sample_sizes is None else np.asarray(sample_sizes, dtype=int)
    curves = np.stack([power_per_draw(p_arm, p_reference, int(n), alpha) for n in sizes])
    return PowerResult(
        arm=arm, reference=reference, alpha=alpha, target=target, n_per_arm=n_per_arm,
        power=float(per_draw.mean()), interval=tuple(float(q) for q in np.quantile(per_draw, [0.05, 0.95])),
        per_draw=per_draw, sample_sizes=sizes, curve=curves.mean(axis=1),
        curve_lower=np.quantile(curves, 0.05, axis=1), curve_upper=np.quantile(curves, 0.95, axis=1),
        n_for_target=_smallest_n(p_arm, p_reference, alpha, target, max_n),
        response_rates=np.stack([p_arm, p_reference], axis=1), pool_size=overall.shape[-1],
        source=result.source,
    )


def _smallest_n(p_arm, p_reference, alpha, target, max_n) -> int | None:
    """Smallest n ≤ max_n with expected power ≥ target: a coarse pass, then every n below.

    The exact power of a discrete test is not monotone in n (it saws by a point or two), so
    the answer is the first n that reaches the target, found by scanning one by one below the
    first multiple of 10 that does.
    """
    coarse = next((n for n in range(10, max_n + 1, 10)
                   if power_per_draw(p_arm, p_reference, n, alpha).mean() >= target), None)
    if coarse is None:
        return None
    for n in range(max(coarse - 9, 2), coarse + 1):
        if power_per_draw(p_arm, p_reference, n, alpha).mean() >= target:
            return n
    return coarse
