"""What every subcommand shares: exit codes, output folders written atomically, argument types."""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from pathlib import Path

from ..runtime import progress_bar

__all__ = ["EXIT_INPUT", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_OK", "check_fresh_output", "enable_float64",
           "positive_float", "positive_int", "progress_bar", "say", "staged_output"]

# Exit codes scripts can rely on (also in ``itp-pd --help``).
EXIT_OK, EXIT_INTERNAL, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def enable_float64():
    """Entry points choose float64 (design.md §3.5); the library never flips global flags."""
    import jax

    jax.config.update("jax_enable_x64", True)


def check_fresh_output(out: Path, force: bool) -> None:
    """Refuse an existing output folder unless ``--force`` (before any work is done)."""
    if out.exists() and not force:
        raise FileExistsError(
            f"output folder {out} already exists; choose another --out or add --force to replace it"
        )


@contextlib.contextmanager
def staged_output(out: Path, force: bool):
    """Yield a staging folder beside ``out``; on success it replaces ``out`` in one rename.

    A run that fails or is interrupted removes its staging folder and leaves ``out`` as it was
    (absent, or the previous complete result): nothing half-written.
    """
    out = Path(out)
    check_fresh_output(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".itp-pd-", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; results are for the team
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    shutil.move(str(staging), str(out))


def say(message: str, *, quiet: bool = False) -> None:
    """A progress message on stderr (stdout carries results only)."""
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def positive_int(text: str) -> int:
    """An argparse type: a whole number ≥ 1 (argparse turns the error into a usage message)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value
