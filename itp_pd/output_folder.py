"""Output folders written whole or not at all: build in a staging folder, then swap it in.

Fits, reports, simulations and the demo all write folders of several files. A run killed
half-way must leave either the previous complete folder or none, never a mix.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def replaced_atomically(directory: str | Path, *, prefix: str | None = None):
    """Yield a staging folder beside ``directory``; when the block succeeds it becomes
    ``directory`` (an existing one is moved aside, the staging folder renamed in, the old one
    removed). When the block fails or is interrupted, the staging folder is removed and
    ``directory`` is left as it was.

    Args:
        directory: the folder to create or replace.
        prefix: name prefix of the hidden staging folder (default ``.<name>.``).
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=prefix or f".{directory.name}.", dir=directory.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; results are for the team
        yield staging
        previous = None
        if directory.exists():
            previous = directory.with_name(f".{directory.name}.previous")
            shutil.rmtree(previous, ignore_errors=True)
            os.replace(directory, previous)
        os.replace(staging, directory)
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
