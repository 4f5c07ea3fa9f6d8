"""Named regimens and arms (science.md §1), and user-defined ones from a small TOML file.

Every regimen the trial question mentions is here by name: rituximab 100 mg weekly ×4 or ×6,
375 mg/m² weekly ×4, 1000 mg ×2 two weeks apart; iguratimod 25 mg once or twice daily for 12 or
26 weeks. An arm is one or more regimens given together, written with ``+`` between regimen
names (``"rituximab 100 mg weekly x6 + iguratimod 25 mg bid 26 weeks"``), or ``"untreated"``.

Rituximab is infused over 4 h into the central compartment (the infusion time hardly matters
beside a 3-week half-life [weak]); iguratimod is oral, into its depot.

A regimen file adds regimens and arms::

    [regimens."rituximab 200 mg weekly x4"]
    drug = "rituximab"        # or "iguratimod"
    dose_mg = 200             # or dose_mg_per_m2 = 375 (scaled by each patient's BSA)
    every_days = 7            # or every_hours = 12
    count = 4                 # or for_weeks = 26, or for_days = 90
    start_day = 0             # optional, day of the first dose
    infusion_hours = 4        # optional, rituximab only

    [arms."low-dose rituximab x4 + iguratimod"]
    regimens = ["rituximab 200 mg weekly x4", "iguratimod 25 mg qd 12 weeks"]

Units: days, hours where the key says so, mg, mg/m².
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path

from ..dosing import Arm, Infusion, Oral, Regimen, Repeat, every
from ..errors import RegimenError
from ..spec._problems import Problems, found, key_path, spec_error, suggestion

RITUXIMAB_CENTRAL = "rituximab_central"
IGURATIMOD_DEPOT = "iguratimod_depot"
RITUXIMAB_INFUSION_H = 4.0
UNTREATED = "untreated"


def rituximab(amount_mg: float | None = None, *, per_m2: float | None = None, every_days: float = 7.0,
              count: int, start_day: float = 0.0, infusion_hours: float = RITUXIMAB_INFUSION_H,
              name: str | None = None) -> Regimen:
    """Rituximab IV infusions: ``count`` doses of ``amount_mg`` (mg) or ``per_m2`` (mg/m²),
    ``every_days`` apart, the first on ``start_day``, each over ``infusion_hours``."""
    dose = Infusion(amount_mg, RITUXIMAB_CENTRAL, time=start_day, duration_h=infusion_hours,
                    amount_mg_per_m2=per_m2)
    amount = f"{amount_mg:g} mg" if per_m2 is None else f"{per_m2:g} mg/m2"
    default = f"rituximab {amount} weekly x{count}" if every_days == 7.0 else \
        f"rituximab {amount} x{count} every {every_days:g} days"
    return Regimen(name or default, (Repeat(dose, every=every_days, count=count),))


def iguratimod(amount_mg: float = 25.0, *, per_day: int, weeks: float, start_day: float = 0.0,
               name: str | None = None) -> Regimen:
    """Oral iguratimod ``amount_mg`` (mg) ``per_day`` times a day (1 or 2) for ``weeks`` weeks."""
    frequency = {1: "qd", 2: "bid"}.get(per_day, f"{per_day}x daily")
    dose = Oral(amount_mg, IGURATIMOD_DEPOT, time=start_day)
    return Regimen(name or f"iguratimod {amount_mg:g} mg {frequency} {weeks:g} weeks",
                   (every(dose, hours=24.0 / per_day, for_weeks=weeks),))


def _catalogue() -> dict[str, Regimen]:
    regimens = [
        rituximab(100.0, count=6),
        rituximab(100.0, count=4),
        rituximab(per_m2=375.0, count=4),
        rituximab(1000.0, every_days=14.0, count=2, name="rituximab 1000 mg x2 two weeks apart"),
        *(iguratimod(25.0, per_day=per_day, weeks=weeks) for per_day in (1, 2) for weeks in (12, 26)),
    ]
    return {regimen.name: regimen for regimen in regimens}


REGIMENS: Mapping[str, Regimen] = _catalogue()

# The trial's arms (NCT07057778) and the comparators a researcher asks about first.
ARMS: Mapping[str, str] = {
    "control": "rituximab 100 mg weekly x6",
    "combination": "rituximab 100 mg weekly x6 + iguratimod 25 mg bid 26 weeks",
    "iguratimod alone": "iguratimod 25 mg bid 26 weeks",
    UNTREATED: UNTREATED,
    "rituximab 100 mg x4": "rituximab 100 mg weekly x4",
    "rituximab 375 mg/m2 x4": "rituximab 375 mg/m2 weekly x4",
    "rituximab 1000 mg x2": "rituximab 1000 mg x2 two weeks apart",
    "combination (iguratimod qd)": "rituximab 100 mg weekly x6 + iguratimod 25 mg qd 26 weeks",
    "combination (iguratimod 12 weeks)": "rituximab 100 mg weekly x6 + iguratimod 25 mg bid 12 weeks",
}


def make_arm(text: str, *, regimens: Mapping[str, Regimen] | None = None, name: str | None = None) -> Arm:
    """An arm from regimen names joined by ``+``, or a named arm of ``ARMS``, or ``"untreated"``.

    Args:
        text: e.g. ``"rituximab 100 mg weekly x4 + iguratimod 25 mg qd 12 weeks"`` or ``"control"``.
        regimens: regimens to look names up in (default ``REGIMENS``; ``load_regimens`` returns
            the catalogue merged with a file's).
        name: the arm's name (default: ``text``).

    Raises:
        RegimenError: an unknown name, with the closest known one.
    """
    regimens = REGIMENS if regimens is None else regimens
    text = text.strip()
    if text in ARMS and text not in regimens:
        name, text = name or text, ARMS[text]
    if text == UNTREATED:
        return Arm(name or UNTREATED, ())
    parts = [part.strip() for part in text.split("+")]
    unknown = [part for part in parts if part not in regimens]
    if unknown:
        known = [*regimens, *ARMS]
        if unknown[0] in ARMS:  # a named arm inside a '+' combination
            regimen_names = " + ".join(r.name for r in make_arm(unknown[0]).regimens)
            raise RegimenError(
                f"{unknown[0]!r} in arm {text!r} is a named arm, and only regimens can be joined with '+'; "
                f"write its regimens instead: {regimen_names!r}")
        raise RegimenError(
            f"unknown regimen {unknown[0]!r}{suggestion(unknown[0], known)} in arm {text!r}. Known "
            f"regimens: {', '.join(regimens)}; named arms: {'; '.join(ARMS)}. Join regimens with "
            "'+', or define new ones in a regimen file (itp_pd.trial.load_regimens)."
        )
    return Arm(name or text, tuple(regimens[part] for part in parts))


_REGIMEN_KEYS = {"drug", "dose_mg", "dose_mg_per_m2", "every_days", "every_hours", "count", "for_weeks",
                 "for_days", "start_day", "infusion_hours", "description"}


def _regimen_from_table(name, table, problems, where):
    """The regimen a file's table describes, or None after adding its problems."""
    before = len(problems.items)
    unknown = sorted(set(table) - _REGIMEN_KEYS)
    for key in unknown:
        problems.add(key_path(where, key), "an unknown key", "one of " + ", ".join(sorted(_REGIMEN_KEYS)),
                     "remove it or fix its spelling" + suggestion(key, _REGIMEN_KEYS))
    drug = table.get("drug")
    if drug not in ("rituximab", "iguratimod"):
        problems.add(key_path(where, "drug"), found(drug) if drug is not None else "nothing",
                     "'rituximab' or 'iguratimod'", "name the drug the regimen gives")
    amounts = [key for key in ("dose_mg", "dose_mg_per_m2") if key in table]
    intervals = [key for key in ("every_days", "every_hours") if key in table]
    lengths = [key for key in ("count", "for_weeks", "for_days") if key in table]
    for keys, label in ((amounts, "dose_mg or dose_mg_per_m2"), (intervals, "every_days or every_hours"),
                        (lengths, "count, for_weeks or for_days")):
        if len(keys) != 1:
            problems.add(where, "nothing" if not keys else " and ".join(keys), f"exactly one of {label}",
                         f"give one of {label}")
    for key in (*amounts, *intervals, *lengths, "start_day", "infusion_hours"):
        value = table.get(key)
        if key in table and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0
                             or (key != "start_day" and value == 0)):
            problems.add(key_path(where, key), found(value), "a positive number", "write a number, e.g. 7")
    if "count" in table and not (isinstance(table["count"], int) and not isinstance(table["count"], bool)):
        problems.add(key_path(where, "count"), found(table["count"]), "a whole number of doses", "e.g. count = 4")
    if drug == "iguratimod" and "infusion_hours" in table:
        problems.add(key_path(where, "infusion_hours"), found(table["infusion_hours"]), "nothing (oral drug)",
                     "remove it: iguratimod is given by mouth")
    if len(problems.items) > before:
        return None
    amount = table.get("dose_mg")
    per_m2 = table.get("dose_mg_per_m2")
    start = float(table.get("start_day", 0.0))
    if drug == "rituximab":
        dose = Infusion(amount, RITUXIMAB_CENTRAL, time=start,
                        duration_h=float(table.get("infusion_hours", RITUXIMAB_INFUSION_H)),
                        amount_mg_per_m2=per_m2)
    else:
        dose = Oral(amount, IGURATIMOD_DEPOT, time=start, amount_mg_per_m2=per_m2)
    interval = {"every_days": {"days": table.get("every_days")}, "every_hours": {"hours": table.get("every_hours")}}
    length = {key: table[key] for key in lengths}
    try:
        repeat = every(dose, **interval[intervals[0]], **length)
        return Regimen(name, (repeat,), description=str(table.get("description", "")))
    except RegimenError as error:
        problems.add(where, "an invalid regimen", "a regimen the dosing layer accepts", str(error))
        return None


def load_regimens(path: str | Path) -> tuple[dict[str, Regimen], dict[str, Arm]]:
    """Regimens and arms from a TOML file (format in the module docstring).

    Returns:
        ``(regimens, arms)``: the catalogue ``REGIMENS`` merged with the file's regimens (the
        file's may not reuse a catalogue name), and the file's arms.

    Raises:
        RegimenError: listing every problem in the file, each with its field and a fix.
    """
    path = Path(path)
    if not path.is_file():
        raise RegimenError(f"regimen file {path} does not exist; give the path of a TOML file "
                           "with [regimens.NAME] and [arms.NAME] tables")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise RegimenError(f"{path} is not valid TOML: {error}") from None

    problems = Problems(str(path))
    for key in sorted(set(data) - {"regimens", "arms"}):
        problems.add(key, "an unknown table", "[regimens.NAME] or [arms.NAME]",
                     "remove it" + suggestion(key, ("regimens", "arms")))
    regimens = dict(REGIMENS)
    for name, table in data.get("regimens", {}).items():
        where = key_path("regimens", name)
        if name in REGIMENS:
            problems.add(where, "a catalogue name", "a new name", "rename it; the catalogue already defines it")
            continue
        if not isinstance(table, dict):
            problems.add(where, found(table), "a table", f'write [regimens."{name}"] with drug, dose and schedule')
            continue
        regimen = _regimen_from_table(name, table, problems, where)
        if regimen is not None:
            regimens[name] = regimen
    arms = {}
    for name, table in data.get("arms", {}).items():
        where = key_path("arms", name)
        listed = table.get("regimens") if isinstance(table, dict) else None
        if not isinstance(listed, list) or not all(isinstance(item, str) for item in listed):
            problems.add(key_path(where, "regimens"), found(listed) if listed is not None else "nothing",
                         "a list of regimen names (empty for untreated)", 'e.g. regimens = ["rituximab 100 mg weekly x6"]')
            continue
        missing = [item for item in listed if item not in regimens]
        for item in missing:
            problems.add(key_path(where, "regimens"), repr(item), "a regimen of the catalogue or of this file",
                         "fix the name" + suggestion(item, regimens))
        if not missing:
            arms[name] = Arm(name, tuple(regimens[item] for item in listed))
    if problems:
        raise RegimenError(str(spec_error(problems.items, problems.file))) from None
    return regimens, arms


def resolve_arms(names, regimen_file: str | Path | None = None) -> dict[str, Arm]:
    """Arms by name, checked before anything is simulated (what entry points take as ``ARM``).

    Args:
        names: arm texts: a named arm of ``ARMS``, an arm of the regimen file, regimen names
            joined by ``+`` (``make_arm``), or ``"untreated"``.
        regimen_file: optional TOML file of extra regimens and arms (``load_regimens``).

    Returns:
        name → ``Arm``, in the order given.

    Raises:
        RegimenError: an unknown name (with the closest known one), a problem in the regimen
            file, an arm given twice, or no arm at all.
    """
    regimens, file_arms = (dict(REGIMENS), {}) if regimen_file is None else load_regimens(regimen_file)
    arms: dict[str, Arm] = {}
    for text in names:
        text = text.strip()
        arm = file_arms[text] if text in file_arms else make_arm(text, regimens=regimens)
        if arm.name in arms:
            raise RegimenError(f"arm {arm.name!r} is listed twice; give each arm once")
        arms[arm.name] = arm
    if not arms:
        raise RegimenError("no arm given; name at least one, e.g. 'control'")
    return arms
