"""What every subcommand shares: exit codes, output folders (claimed before any work, written
atomically, replacing only an earlier itp-pd output; ``itp_pd.output_folder``), argument types."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from ..output_folder import claimed_output as _claimed_output, replaced_atomically
from ..runtime import progress_bar

__all__ = ["EXIT_INPUT", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_NOT_CONVERGED", "EXIT_OK", "add_device_option", "add_output_options",
           "check_fresh_output", "claimed_output", "fit_inputs",
           "positive_float", "positive_int", "progress_bar", "recipe_inputs", "say", "staged_output"]

# Exit codes scripts can rely on (also in ``itp-pd --help``).
EXIT_OK, EXIT_INTERNAL, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
# A fit that ran to the end but did not pass its convergence checks: its folder is written,
# its numbers are not results (``diagnostics.json``: converged false, and why).
EXIT_NOT_CONVERGED = 3

FORCE_HELP = "replace an earlier itp-pd output folder; never a folder itp-pd did not write"


def claimed_output(out: Path, force: bool, inputs=()):
    """Claim ``--out`` for the whole run, before any work (a context manager): the path is
    checked (its parent exists; not the current folder, an ancestor of it, or a folder holding
    one of ``inputs``), its lock taken (a second run into it is refused at once, naming this
    one's process), and an existing folder refused unless ``--force``, and then unless it is an
    earlier itp-pd output holding nothing itp-pd did not write. See ``itp_pd.output_folder``."""
    return _claimed_output(out, replace=force, inputs=inputs)


def check_fresh_output(out: Path, force: bool, inputs=()) -> None:
    """The checks of ``claimed_output`` once, without keeping the lock. A command claims its
    folder for the whole run instead; this is for a caller that only wants to know."""
    with claimed_output(out, force, inputs):
        pass


@contextlib.contextmanager
def staged_output(out: Path, force: bool, inputs=()):
    """``claimed_output`` + ``replaced_atomically``: yield a staging folder that becomes ``out``
    on success; a failed or interrupted run leaves ``out`` as it was (nothing half-written).
    Inside a ``claimed_output`` of the same folder the claim is only checked again."""
    with claimed_output(out, force, inputs), replaced_atomically(out) as staging:
        yield staging


def recipe_inputs(recipe) -> list:
    """The files a fit recipe reads: itself, its dataset, its spec and its values file."""
    return [recipe.path, recipe.data_path, recipe.spec_path, recipe.values_path]


def fit_inputs(recipe_path) -> list:
    """What ``--fit RECIPE.toml`` makes a command read: the recipe's files and its fit folder
    (empty for no ``--fit``)."""
    if recipe_path is None:
        return []
    from ..inference import load_recipe

    recipe = load_recipe(recipe_path, check_data=False)  # only its paths are wanted here
    return [*recipe_inputs(recipe), recipe.output_dir]


def add_output_options(parser, *, default: str | None, default_text: str | None = None) -> None:
    """``--out``, ``--force`` and ``--quiet``, the same on every subcommand that writes a folder."""
    shown = default_text or "%(default)s"
    parser.add_argument("--out", default=default,
                        help=f"output folder, new or an earlier itp-pd output, in a folder that exists (default: {shown})")
    parser.add_argument("--force", action="store_true", help=FORCE_HELP)
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
