"""The solver layer: padded event grids and the simulation engine."""

from .grid import (
    SEGMENT_WINDOW,
    EventGrid,
    PatientEvents,
    Population,
    bucket_size,
    build_population,
    population_from_dataset,
)
from .simulate import (
    STATUS_NONFINITE,
    STATUS_OK,
    STATUS_SOLVER_FAILED,
    Simulation,
    default_chunk_size,
    default_patient_mesh,
    patient_mesh,
    simulate,
    simulate_batch,
    simulate_grid,
    simulate_population,
    stiffness,
)

__all__ = [
    "SEGMENT_WINDOW",
    "STATUS_NONFINITE",
    "STATUS_OK",
    "STATUS_SOLVER_FAILED",
    "EventGrid",
    "PatientEvents",
    "Population",
    "Simulation",
    "bucket_size",
    "build_population",
    "population_from_dataset",
    "simulate",
    "simulate_batch",
    "default_chunk_size",
    "default_patient_mesh",
    "patient_mesh",
    "simulate_grid",
    "simulate_population",
    "stiffness",
]
