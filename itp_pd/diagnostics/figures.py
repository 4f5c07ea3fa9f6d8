"""Shared figure plumbing: the Agg backend (chosen when a figure is made, never on import),
saving, and a record of each figure with the caption the report shows under it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DPI = 110


@dataclass(frozen=True)
class Figure:
    """A written figure: its file name (relative to the report folder), title and caption."""

    file: str
    title: str
    caption: str


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, folder: Path, name: str, title: str, caption: str) -> Figure:
    """Write ``fig`` as ``folder/name`` (PNG), close it, and return its report entry."""
    plt = pyplot()
    fig.savefig(Path(folder) / name, dpi=DPI)
    plt.close(fig)
    return Figure(name, title, caption)


def log_axis_if_positive(ax, values, axis="y"):
    """Log scale when every value is positive and they span more than a factor of 10
    (platelet counts, concentrations); linear otherwise."""
    import numpy as np

    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size and values.min() > 0 and values.max() / values.min() > 10:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
