"""One exception hierarchy for itp-pd.

Every error says what was received, what was expected and how to fix it, so a user
can act on the message without reading a traceback.
"""


class ItpPdError(Exception):
    """Base class of every error raised deliberately by itp-pd."""


class DatasetError(ItpPdError, ValueError):
    """A dataset (NONMEM-format table) is malformed.

    Carries every problem found, not just the first, so one run of the checker
    lists everything that needs fixing.

    Attributes:
        problems: one human-readable line per violation, each naming the row
            and column and saying how to fix it.
    """

    def __init__(self, problems, source=None):
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        count = len(self.problems)
        header = f"{count} problem{'s' if count != 1 else ''} found{where}:"
        super().__init__("\n".join([header, *(f"  - {p}" for p in self.problems)]))


class RegimenError(ItpPdError, ValueError):
    """A dosing regimen is inconsistent (negative amount, zero interval, unknown compartment...)."""


class SpecError(ItpPdError, ValueError):
    """A model specification is invalid."""


class SolverError(ItpPdError, RuntimeError):
    """An ODE solve failed where the caller asked for failures to be raised."""


class FitFolderError(ItpPdError, ValueError):
    """A fit's output folder is incomplete, or no longer matches the recipe and data it names."""


class OutputFolderError(ItpPdError, ValueError):
    """An output folder cannot be written: its parent is missing, it is the current folder or
    holds the run's inputs, another run is writing it, or ``--force`` would replace a folder
    (or files) itp-pd did not write (``itp_pd.output_folder``)."""
