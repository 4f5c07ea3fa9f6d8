"""Split a NONMEM data file into cells: the delimiter, comment (IGNORE) lines, the header.

NONMEM reads comma-, tab- or space-separated records (``.csv``, ``.dta``, ``.txt``) and skips
records by their first character (``$DATA ... IGNORE=#``, the default, or ``IGNORE=@``:
any record whose first non-blank character is a letter or ``@``). This module does the
same, finds the delimiter from the header line when none is given, and reports a file that
looks split the wrong way by its cause, once, rather than with one error per row.
"""

from __future__ import annotations

import csv
import dataclasses
import re
from pathlib import Path

import pandas as pd

# Delimiter name -> the character splitting a line (None: runs of spaces and tabs).
DELIMITERS = {"comma": ",", "semicolon": ";", "tab": "\t", "whitespace": None}
_SPELLINGS = {
    ",": "comma", "comma": "comma", "csv": "comma",
    ";": "semicolon", "semicolon": "semicolon",
    "\t": "tab", "\\t": "tab", "tab": "tab", "tsv": "tab",
    " ": "whitespace", "space": "whitespace", "spaces": "whitespace", "whitespace": "whitespace",
    "ws": "whitespace", "blank": "whitespace",
}  # fmt: skip
SEP_CHOICES = "comma (','), semicolon (';'), tab or whitespace (runs of spaces/tabs, as in NONMEM .dta files)"
DEFAULT_IGNORE = "#"
_DECIMAL_COMMA = re.compile(r"[+-]?\d+,\d+([eE][+-]?\d+)?")
_LABEL = {"comma": "comma-separated", "semicolon": "semicolon-separated", "tab": "tab-separated",
          "whitespace": "whitespace-separated"}


def delimiter_name(sep: object) -> str | None:
    """The delimiter name (``"comma"``, ``"semicolon"``, ``"tab"``, ``"whitespace"``) spelled
    ``sep``, None for None/"auto" (detect), or raise ValueError naming the choices."""
    if sep is None:
        return None
    if isinstance(sep, str):
        key = sep if sep in (" ", "\t") else sep.strip().lower()
        if key in ("", "auto", "detect"):
            return None
        if key in _SPELLINGS:
            return _SPELLINGS[key]
    raise ValueError(f"sep {sep!r} is not a known delimiter; expected {SEP_CHOICES}, or auto to detect it")


def check_ignore(ignore: object) -> str:
    """The IGNORE characters as a string ('' for none), or raise ValueError saying what is allowed."""
    if ignore is None or ignore is False:
        return ""
    if (isinstance(ignore, str) and len(ignore) <= 4
            and not any(c.isspace() or c.isdigit() or c in ",;.+-" for c in ignore)):
        return ignore
    raise ValueError(
        f"ignore {ignore!r}: expected the character(s) that start comment lines, e.g. '#' (NONMEM's default "
        "IGNORE=#), '@' (NONMEM's IGNORE=@: lines whose first non-blank character is a letter or @) "
        "or 'C'; not digits, signs, spaces, '.', ',' or ';', which start or split data"
    )


def label(delimiter: str) -> str:
    """'comma-separated', 'whitespace-separated', ..."""
    return _LABEL[delimiter]


def _is_comment(text: str, ignore: str) -> bool:
    stripped = text.lstrip()
    if not stripped:
        return False
    first = stripped[0]
    return any(first == c or (c == "@" and first.isalpha()) for c in ignore)


def _split(line: str, delimiter: str) -> list[str]:
    char = DELIMITERS[delimiter]
    if char is None:
        return line.split()
    return next(csv.reader([line], delimiter=char), [])


def detect_delimiter(header: str) -> str:
    """The delimiter of a file from its header line: the commonest of ',' ';' and tab, else
    whitespace when the line holds several words; a tab-split name with spaces inside means
    the columns are lined up with both (whitespace)."""
    counts = {name: header.count(DELIMITERS[name]) for name in ("comma", "semicolon", "tab")}
    best = max(counts, key=counts.get)
    if counts[best] == 0:
        return "whitespace" if len(header.split()) > 1 else "comma"
    if best == "tab" and any(len(part.split()) > 1 for part in header.split("\t")):
        return "whitespace"
    return best


def _looks_like_header(fields: list[str]) -> bool:
    names = {field.strip().upper() for field in fields}
    return "ID" in names and "TIME" in names


@dataclasses.dataclass
class Cells:
    """A data file split into cells.

    Attributes:
        table: cells as text, the header as column names (None if the file cannot be read).
        rows: row number of each record (n = n-th line below the header).
        problems: what is wrong with the file as text; reported before any cell is checked.
        fatal: True when the problems explain everything else (wrong delimiter, not text):
            the caller reports them alone.
        delimiter: the delimiter used (a ``DELIMITERS`` key).
        detected: whether it was found from the header line (not given).
        ignore: the IGNORE characters used.
        skipped: file line numbers (1-based) of the comment lines skipped.
        header_line: file line number of the header.
    """

    table: pd.DataFrame | None
    rows: list[int]
    problems: list[str]
    fatal: bool
    delimiter: str
    detected: bool
    ignore: str
    skipped: list[int]
    header_line: int = 0


def _fatal(problems, delimiter="comma", detected=True, ignore=DEFAULT_IGNORE) -> Cells:
    return Cells(None, [], problems, True, delimiter, detected, ignore, [])


def _alternatives(text: str, delimiter: str) -> list[str]:
    """Delimiters other than ``delimiter`` that would split ``text`` into several fields."""
    out = []
    for name in ("semicolon", "tab", "comma", "whitespace"):
        if name != delimiter and len(_split(text, name)) > 1:
            out.append(name)
    return out


def _how_to_choose(name: str) -> str:
    return (f"read it with sep = {name!r} (command line --sep {name}; read_nonmem(..., sep={name!r}); "
            f"a recipe's [data] sep = {name!r}; or [read] sep = {name!r} in the units sidecar)")


def _header_candidate(stripped: str, ignore: str) -> tuple[str, bool]:
    """(the names a comment line would give as a header, whether a letter starts it).

    ``#ID,TIME,...``, ``@ID TIME`` and ``C ID TIME ...`` are headers commented out; under
    IGNORE=@ a line starting with a letter is skipped as data, but may be the header.
    """
    first = stripped[0]
    if first.isalpha() and len(stripped) > 1 and (stripped[1].isalnum() or stripped[1] == "_"):
        return stripped, True  # 'ID TIME ...' or 'CMT ...': the letter starts a name
    return stripped[1:].strip(), False


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_cells(path: Path, *, sep: object = None, ignore: object = DEFAULT_IGNORE) -> Cells:
    """Split ``path`` into cells (see ``Cells``); never raises for a bad file, only for bad arguments.

    Blank and comment lines are skipped but counted, so that row n is always the n-th line
    below the header. A first line that is commented out but names ID and TIME (``#ID,TIME,...``,
    ``C ID TIME ...``) is the header.
    """
    given = delimiter_name(sep)
    ignore = check_ignore(ignore)
    try:
        # utf-8-sig: spreadsheet programs often start a CSV with a byte-order mark.
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        return _fatal([f"the file is not UTF-8 text ({error}); save it as UTF-8 text (CSV or NONMEM .dta)"],
                      ignore=ignore)
    lines = text.splitlines()
    skipped: list[int] = []
    header_index = None
    header_text = ""
    first_data = None
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped:
            continue
        if _is_comment(stripped, ignore):
            skipped.append(index + 1)
            continue
        fields = _split(line, given or detect_delimiter(line))
        if not any(field.strip() for field in fields):
            continue  # a line of bare commas
        if skipped and (_is_number(fields[0]) or fields[0].strip() == "."):
            first_data = index
            break  # data before any header: the header is a comment line above (see below)
        header_index, header_text = index, line
        break
    if header_index is None and skipped:
        # '#ID,TIME,...' (IGNORE=#), 'ID TIME ...' under IGNORE=@, or a NONMEM table file's
        # 'TABLE NO. 1' then its names: the last comment line above the data that names ID and TIME.
        candidates = [(number, *_header_candidate(lines[number - 1].strip(), ignore)) for number in skipped]
        chosen = [c for c in candidates if _looks_like_header(_split(c[1], given or detect_delimiter(c[1])))]
        chosen = chosen or [c for c in candidates if c[2] and "@" in ignore]  # names without ID or TIME
        if chosen:
            number, header_text, _ = chosen[-1]
            header_index = number - 1
            skipped = [n for n in skipped if n < number]
    if header_index is None and first_data is not None:
        return _fatal(
            [f"line {first_data + 1} holds data, but no line above it names the columns ({len(skipped)} comment "
             f"line(s) skipped, IGNORE={ignore}): add a header line naming the columns in order, as $INPUT "
             "does (e.g. ID TIME AMT DV)"],
            ignore=ignore,
        )
    if header_index is None:
        what = f" but for {len(skipped)} comment line(s) (IGNORE={ignore})" if skipped else ""
        return _fatal(
            [f"the file is empty{what}; expected a header line naming the columns (e.g. ID,TIME,EVID,AMT,DV) "
             "and one line per record"],
            ignore=ignore,
        )
    delimiter = given or detect_delimiter(header_text)
    header = [field.strip() for field in _split(header_text, delimiter)]
    base = dict(delimiter=delimiter, detected=given is None, ignore=ignore, skipped=skipped,
                header_line=header_index + 1)

    if len(header) == 1:
        others = _alternatives(header_text, delimiter)
        if others:
            shown = header[0] if len(header[0]) <= 60 else header[0][:57] + "..."
            return Cells(None, [], [
                f"the header line is one column, {shown!r}, when read as {label(delimiter)}"
                f"{'' if given is None else ' (as asked)'}, but it splits into "
                f"{len(_split(header_text, others[0]))} columns as {label(others[0])}: the file looks "
                f"{label(others[0])}: {_how_to_choose(others[0])}"
                + ("" if given is None else ", or leave sep out to detect it")
            ], True, **base)
    if header and all(_is_number(name) for name in header):
        return Cells(None, [], [
            f"the first line ({header_text.strip()[:60]!r}, line {header_index + 1}) holds numbers, not column "
            "names: the file has no header line; add one naming the columns in order, as $INPUT does "
            "(e.g. ID TIME AMT DV)"
        ], True, **base)

    if not _looks_like_header(header):
        for index in range(header_index + 1, min(len(lines), header_index + 21)):
            line = lines[index].strip()
            if line and _looks_like_header(_split(line, detect_delimiter(line))):
                return Cells(None, [], [
                    f"the first line, {header_text.strip()[:60]!r}, does not name the columns ID and TIME, but "
                    f"line {index + 1} does ({line[:60]!r}): skip the lines above it as comments: start them "
                    "with '#', or read with ignore '@' (NONMEM's IGNORE=@: lines starting with a letter or @; "
                    "command line --ignore @; a recipe's [data] ignore = \"@\")"
                ], True, **base)

    kept: list[tuple[int, str]] = []
    for index in range(header_index + 1, len(lines)):
        line = lines[index]
        if not line.strip():
            continue
        if _is_comment(line, ignore):
            skipped.append(index + 1)
            continue
        kept.append((index, line))
    char = DELIMITERS[delimiter]
    rows: list[list[str]] = []
    numbers: list[int] = []
    lines_of_rows: list[str] = []
    if char is None:
        split = ((index, line, line.split()) for index, line in kept)
    else:
        reader = csv.reader((line for _, line in kept), delimiter=char)

        def records():
            for fields in reader:  # a quoted field may span lines: number the record by its last
                index, line = kept[reader.line_num - 1]
                yield index, line, fields

        split = records()
    try:
        for index, line, fields in split:
            if not any(field.strip() for field in fields):
                continue
            rows.append(fields)
            numbers.append(index - header_index)
            lines_of_rows.append(line)
    except csv.Error as error:
        return Cells(None, [], [f"the file is not readable as {label(delimiter)} text ({error})"], True, **base)

    problems = _structure_problems(header, rows, numbers, lines_of_rows, delimiter, given is None)
    if problems:
        return Cells(None, [], problems, True, **base)
    problems = []
    for fields, number in zip(rows, numbers):
        if len(fields) != len(header):
            problems.append(
                f"row {number}: {len(fields)} fields, but the header names {len(header)} columns; check for a "
                + ("missing or extra comma (quote text values that contain commas)" if delimiter == "comma"
                   else f"missing or extra {'separator' if delimiter == 'whitespace' else delimiter} "
                   f"(the file is read as {label(delimiter)})")
            )
    width = len(header)
    cells = pd.DataFrame([(fields + [""] * width)[:width] for fields in rows], columns=range(width), dtype=object)
    cells.columns = header  # may hold duplicates; they are reported when names are normalised
    return Cells(cells, numbers, problems, False, **base)


def _structure_problems(header, rows, numbers, lines, delimiter, detected) -> list[str]:
    """One message when most rows are split differently from the header, or numbers use a
    decimal comma: the cause of what would otherwise be an error in every row."""
    if not rows:
        return []
    ragged = [i for i, fields in enumerate(rows) if len(fields) != len(header)]
    if len(ragged) > max(2, len(rows) // 2):
        first = ragged[0]
        others = [name for name in _alternatives(lines[first], delimiter)
                  if len(_split(lines[first], name)) == len(header)]
        hint = (f"; the rows split into {len(header)} fields at {others[0]}s: the rows look {label(others[0])} "
                f"while the header is {label(delimiter)}: write the header and rows with one delimiter, or "
                f"{_how_to_choose(others[0])}" if others else
                "; check that the header and the rows use the same delimiter and that no column is missing")
        return [
            f"{len(ragged)} of {len(rows)} rows do not have the {len(header)} fields the header names when "
            f"read as {label(delimiter)}{' (detected from the header line)' if detected else ''} (row "
            f"{numbers[first]}: {len(rows[first])} field{'s' if len(rows[first]) != 1 else ''}){hint}"
        ]
    if delimiter == "comma":
        return []
    for fields, number, line in zip(rows, numbers, lines):
        if "," not in line:
            continue
        for position, field in enumerate(fields):
            if _DECIMAL_COMMA.fullmatch(field.strip()):
                column = header[position] if position < len(header) else f"field {position + 1}"
                return [
                    f"row {number}, column {column}: found {field.strip()!r}, a decimal comma; numbers are read "
                    "with a decimal point: export the file with '.' as the decimal separator (in a spreadsheet, "
                    "set the locale to English or replace ',' by '.' in the numbers)"
                ]
    return []
