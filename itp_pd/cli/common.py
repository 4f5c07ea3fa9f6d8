"""What every subcommand shares: exit codes, output folders written atomically, argument types."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from ..output_folder import replaced_atomically
from ..runtime import progress_bar

__all__ = ["EXIT_INPUT", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_OK", "add_device_option", "add_output_options",
           "check_fresh_output", "enable_float64",
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
    """``--force``-checked ``replaced_atomically``: yield a staging folder that becomes ``out``
    on success; a failed or interrupted run leaves ``out`` as it was (nothing half-written)."""
    check_fresh_output(Path(out), force)
    with replaced_atomically(out, prefix=".itp-pd-") as staging:
        yield staging


def add_output_options(parser, *, default: str | None, default_text: str | None = None) -> None:
    """``--out``, ``--force`` and ``--quiet``, the same on every subcommand that writes a folder."""
    shown = default_text or "%(default)s"
    parser.add_argument("--out", default=default, help=f"output folder (default: {shown})")
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")


def add_device_option(parser, *, default: str | None = "auto", default_text: str = "%(default)s") -> None:
    """``--device auto|cpu|gpu`` (``itp_pd.devices``; the choices are spelled here so that
    ``--help`` stays fast, without importing JAX)."""
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default=default,
                        help="where to compute: auto (a GPU when present and the batch is wide enough), "
                             f"cpu or gpu (default: {default_text})")


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
