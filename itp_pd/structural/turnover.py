"""A two-drug PK/PD turnover model: an IV antibody and an oral small molecule.

It is the smallest model that exercises every engine path the ITP model needs (IV infusions
into a two-compartment drug, hundreds of oral doses, a nonlinear response driven by both
concentrations), and a useful template for users' own indirect-response models.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from ..mechanisms.effects import emax, inhibition
from ..mechanisms.turnover import turnover_rate
from .base import AbstractModel
from .pk_blocks import OneCompartmentPK, TwoCompartmentPK
from .solver_config import SolverConfig


class TurnoverModel(AbstractModel):
    """Indirect response driven by an IV and an oral drug.

    CMT 1-2: IV drug central/peripheral (``CL_IV``, ``V1_IV``, ``Q_IV``, ``V2_IV``).
    CMT 3-4: oral drug depot/central (``KA_PO``, ``CL_PO``, ``V_PO``).
    Response ``R`` (relative to baseline, dimensionless):

        dR/dt = KIN · (1 − IMAX·C_PO/(IC50 + C_PO)) − KOUT · (1 + EMAX·C_IV/(EC50 + C_IV)) · R,

    with ``R(0) = KIN/KOUT`` (Dayneka, Garg & Jusko 1993, models II and IV combined).
    Observables: DVID 1 ``CP_IV`` (mg/L), 2 ``CP_PO`` (mg/L), 3 ``R``.
    """

    solver_config: SolverConfig = eqx.field(static=True, default=SolverConfig())

    @property
    def pk_blocks(self):
        return (
            TwoCompartmentPK(oral=False, drug="iv", suffix="_IV"),
            OneCompartmentPK(oral=True, drug="po", suffix="_PO"),
        )

    @property
    def outputs(self):
        return ("CP_IV", "CP_PO", "R")

    @property
    def solver(self):
        return self.solver_config

    @property
    def n_nonlinear_states(self):
        return 1

    @property
    def nonlinear_parameter_names(self):
        return ("KIN", "KOUT", "EMAX", "EC50", "IMAX", "IC50")

    def initial_nonlinear_state(self, params):
        return jnp.stack([params["KIN"] / params["KOUT"]])

    def nonlinear_rates(self, t, state, concentrations, params):
        c_iv, c_po = concentrations[0], concentrations[1]
        production = inhibition(c_po, params["IMAX"], params["IC50"])
        loss = 1.0 + emax(c_iv, params["EMAX"], params["EC50"])
        return jnp.stack(
            [turnover_rate(state[0], params["KIN"], params["KOUT"], production, loss)]
        )

    def observe(self, amounts, state, concentrations, params):
        return jnp.stack([concentrations[0], concentrations[1], state[0]])
