"""What every benchmark records about where it ran, and how it writes its figures."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import jax


def environment() -> dict:
    """Device, core count and versions, so figures from different machines are not mixed."""
    return dict(
        device=str(jax.devices()[0]),
        cpu_count=os.cpu_count(),
        python=platform.python_version(),
        jax=jax.__version__,
    )


def write_figures(figures: dict, path: Path) -> dict:
    """Write the figures as JSON and print them as the last line (other tools read both)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures))
    return figures
