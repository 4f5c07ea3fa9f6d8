"""The units sidecar file, ``<csv stem>.units.toml``, that travels next to a dataset CSV.

Flat TOML: one ``COLUMN = "unit"`` line per column, and a ``[DV]`` table keyed by DVID::

    TIME = "h"
    AMT = "mg"
    BSA = "m2"

    [DV]
    1 = "ng/mL"

An optional ``[read]`` table says how to read the file: ``sep`` (``"comma"``, ``"semicolon"``,
``"tab"``, ``"whitespace"``; detected from the header line when absent), ``ignore`` (the
characters starting comment lines, NONMEM's IGNORE; default ``"#"``) and ``drop`` (columns
to ignore).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import tomllib
from collections.abc import Mapping
from pathlib import Path

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def sidecar_path(csv_path: str | os.PathLike) -> Path:
    """``data/study.csv`` -> ``data/study.units.toml``."""
    path = Path(csv_path)
    return path.with_name(f"{path.stem}.units.toml")


READ_KEYS = ("sep", "ignore", "drop")


def units_table_problems(content: Mapping[str, object], where: str) -> list[str]:
    """What is wrong with the shape of a units table (``COLUMN = "unit"``, a ``DV`` table keyed by
    DVID); ``where`` starts each message (e.g. ``"units file x.units.toml: "``)."""
    problems = []
    for key, value in content.items():
        if isinstance(value, Mapping) and str(key).upper() != "DV":
            problems.append(f"{where}table [{key}]; only [DV] (units keyed by DVID) may be a table")
        elif not isinstance(value, (str, Mapping)):
            problems.append(f"{where}{key} = {value!r}; write the unit as a string, e.g. \"mg\"")
    return problems


def read_options_problems(options: object, where: str) -> list[str]:
    """What is wrong with reading options (``sep``, ``ignore``, ``drop``)."""
    from itp_pd.data.delimited import check_ignore, delimiter_name

    if not isinstance(options, Mapping):
        return [f"{where}found {options!r}; expected a table of {', '.join(READ_KEYS)}"]
    problems = []
    for key, value in options.items():
        if key == "sep":
            try:
                delimiter_name(value)
            except ValueError as error:
                problems.append(f"{where}{error}")
        elif key == "ignore":
            try:
                check_ignore(value)
            except ValueError as error:
                problems.append(f"{where}{error}")
        elif key == "drop":
            if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                problems.append(f'{where}drop = {value!r}; expected a list of column names, e.g. ["SEX"]')
        else:
            problems.append(f"{where}unknown key {key!r}; expected one of {', '.join(READ_KEYS)}")
    return problems


def read_sidecar_file(csv_path: str | os.PathLike) -> tuple[dict[str, object] | None, dict[str, object], list[str]]:
    """(declared units, reading options, problems) from the sidecar of ``csv_path``.

    Units are None when there is no sidecar or it declares none; reading options come from its
    optional ``[read]`` table (``sep``, ``ignore``, ``drop``, as for ``read_nonmem``).
    """
    path = sidecar_path(csv_path)
    if not path.is_file():
        return None, {}, []
    try:
        with path.open("rb") as handle:
            content = tomllib.load(handle)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        return None, {}, [f"units file {path}: not valid TOML ({error}); fix its syntax, e.g. TIME = \"h\""]
    options = content.pop("read", {})
    problems = read_options_problems(options, f"units file {path}: [read] ")
    problems += units_table_problems(content, f"units file {path}: ")
    if problems:
        return None, {}, problems
    return (content or None), dict(options), []


def read_sidecar(csv_path: str | os.PathLike) -> tuple[dict[str, object] | None, list[str]]:
    """(declared units, problems) from the sidecar of ``csv_path``; (None, []) if there is none."""
    units, _, problems = read_sidecar_file(csv_path)
    return units, problems


def _key(name: object) -> str:
    text = str(name)
    return text if _BARE_KEY.fullmatch(text) else json.dumps(text)


def format_sidecar(units: Mapping[str, object], csv_name: str) -> str:
    """TOML text describing ``units`` (the ``Dataset.units`` layout)."""
    lines = [f"# Units of the columns of {csv_name}; read by itp_pd.data.read_nonmem."]
    tables = []
    for name, unit in units.items():
        if isinstance(unit, Mapping):
            if unit:
                body = [f"{_key(key)} = {json.dumps(str(value))}" for key, value in unit.items()]
                tables.append("\n".join(["", f"[{_key(name)}]", *body]))
        else:
            lines.append(f"{_key(name)} = {json.dumps(str(unit))}")
    return "\n".join([*lines, *tables]) + "\n"


def write_atomically(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``.

    Readers never see a half-written file, and a failed write leaves the old one intact.
    """
    path = Path(path)
    handle = tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", newline="", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    try:
        with handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
