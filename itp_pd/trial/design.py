"""NCT07057778: its arms and visit schedule (science.md §1)."""

from __future__ import annotations

import numpy as np

from ..dosing import Arm
from .regimens import make_arm


def nct07057778_arms() -> dict[str, Arm]:
    """The trial's two arms: rituximab 100 mg IV weekly ×6, with or without iguratimod 25 mg
    orally twice daily for 26 weeks; plus iguratimod alone and no treatment for calibration."""
    return {name: make_arm(name) for name in ("control", "combination", "iguratimod alone", "untreated")}


def trial_visits(weeks: float = 52.0) -> np.ndarray:
    """Visit days: weekly in weeks 0–8, every 2 weeks to week 26, every 4 weeks to week 52
    (science.md §1 [weak]), ending on the last day of follow-up."""
    visits = np.concatenate([np.arange(0.0, 57.0, 7.0), np.arange(70.0, 183.0, 14.0), np.arange(210.0, 365.0, 28.0)])
    end = 7.0 * weeks
    return np.unique(np.append(visits[visits < end], end))
