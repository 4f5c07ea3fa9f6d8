"""Collect dataset violations, so that one DatasetError can list all of them."""

from __future__ import annotations

from collections.abc import Callable, Iterable

# Past this many rows with the same problem, the rest are summarised in one line, so
# that a systematic error in a 10^5-row file stays readable.
ROWS_PER_PROBLEM = 20


class ProblemLog:
    """Violations in the order they were found, grouped by kind."""

    def __init__(self, rows_per_problem: int = ROWS_PER_PROBLEM):
        self._groups: dict[object, list[str]] = {}
        self._extra: dict[object, list[int]] = {}
        self._limit = rows_per_problem

    def add(self, message: str) -> None:
        """One violation that is not repeated per row."""
        self._groups[object()] = [message]

    def add_rows(self, kind: str, rows: Iterable[int], message: Callable[[int], str], row_number=None) -> None:
        """One violation per row index in ``rows``; ``message(i)`` formats row ``i``.

        ``row_number(i)`` gives the row number quoted in the summary of rows past the limit.
        """
        group = self._groups.setdefault(kind, [])
        extra = self._extra.setdefault(kind, [])
        for i in rows:
            if len(group) < self._limit:
                group.append(message(int(i)))
            else:
                extra.append(int(row_number(i)) if row_number is not None else int(i) + 1)

    def messages(self) -> list[str]:
        out: list[str] = []
        for kind, group in self._groups.items():
            out.extend(group)
            extra = self._extra.get(kind)
            if extra:
                shown = ", ".join(str(r) for r in extra[:30]) + (", ..." if len(extra) > 30 else "")
                out.append(f"... and {len(extra)} more rows with the same problem as above (rows {shown})")
        return out

    def __bool__(self) -> bool:
        return any(self._groups.values())
