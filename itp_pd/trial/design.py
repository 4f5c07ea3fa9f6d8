"""NCT07057778: its regimens and visit schedule (science.md §1)."""

from __future__ import annotations

import numpy as np

from ..dosing import Arm, Infusion, Oral, Regimen, every, weekly

RITUXIMAB_CENTRAL = "rituximab_central"
IGURATIMOD_DEPOT = "iguratimod_depot"

REGIMENS = {
    "rituximab 100 mg weekly x6": Regimen(
        "rituximab 100 mg weekly x6", weekly(Infusion(100.0, RITUXIMAB_CENTRAL, duration_h=4), count=6)
    ),
    "rituximab 100 mg weekly x4": Regimen(
        "rituximab 100 mg weekly x4", weekly(Infusion(100.0, RITUXIMAB_CENTRAL, duration_h=4), count=4)
    ),
    "iguratimod 25 mg bid 26 weeks": Regimen(
        "iguratimod 25 mg bid 26 weeks", every(Oral(25.0, IGURATIMOD_DEPOT), hours=12, for_weeks=26)
    ),
}


def nct07057778_arms() -> dict[str, Arm]:
    """The trial's two arms: rituximab 100 mg IV weekly ×6, with or without iguratimod 25 mg
    orally twice daily for 26 weeks; plus iguratimod alone and no treatment for calibration."""
    rituximab = REGIMENS["rituximab 100 mg weekly x6"]
    iguratimod = REGIMENS["iguratimod 25 mg bid 26 weeks"]
    return {
        "control": Arm("rituximab", (rituximab,)),
        "combination": Arm("rituximab + iguratimod", (rituximab, iguratimod)),
        "iguratimod alone": Arm("iguratimod alone", (iguratimod,)),
        "untreated": Arm("untreated", ()),
    }


def trial_visits(weeks: float = 52.0) -> np.ndarray:
    """Visit days: weekly in weeks 0–8, every 2 weeks to week 26, every 4 weeks to week 52
    (science.md §1 [weak]), ending on the last day of follow-up."""
    visits = np.concatenate([np.arange(0.0, 57.0, 7.0), np.arange(70.0, 183.0, 14.0), np.arange(210.0, 365.0, 28.0)])
    end = 7.0 * weeks
    return np.unique(np.append(visits[visits < end], end))
