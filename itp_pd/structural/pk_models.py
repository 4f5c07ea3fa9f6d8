"""Generic compartmental PK models users can fit their own drugs with."""

from __future__ import annotations

from .base import PKModel
from .pk_blocks import OneCompartmentPK, TwoCompartmentPK
from .solver_config import SolverConfig


def one_compartment_model(*, oral: bool = False, drug: str = "drug") -> PKModel:
    """One-compartment PK (parameters ``CL`` L/day, ``V`` L, and ``KA`` 1/day when oral).

    CMT 1 is the central compartment (IV) or the depot (oral, central is CMT 2). DVID 1 is
    the central concentration in mg/L.
    """
    return PKModel(block=OneCompartmentPK(oral=oral, drug=drug), solver_config=SolverConfig())


def two_compartment_model(*, oral: bool = False, drug: str = "drug") -> PKModel:
    """Two-compartment PK (``CL``, ``Q`` L/day; ``V1``, ``V2`` L; ``KA`` 1/day when oral).

    CMT 1 is central (IV) or depot (oral). DVID 1 is the central concentration in mg/L.
    """
    return PKModel(block=TwoCompartmentPK(oral=oral, drug=drug), solver_config=SolverConfig())
