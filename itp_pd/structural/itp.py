"""The mechanistic ITP model: rituximab and iguratimod, B cells, T-helper balance, plasma cells,
anti-platelet antibody and platelets (science.md §2).

Compartments (CMT): 1 rituximab central, 2 rituximab peripheral (two-compartment IV,
Candelaria 2018), 3 iguratimod depot, 4 iguratimod central (oral one-compartment).

Nonlinear states, in order: ``B`` CD20⁺ B cells (relative to baseline); ``N`` naive CD4⁺,
``T1``, ``T17``, ``TFH``, ``TREG`` T-helper subsets (relative to healthy); ``S`` short-lived
and ``L`` long-lived plasma cells, ``A`` anti-platelet IgG, ``G`` total IgG (relative to
baseline); ``MK`` megakaryocyte precursors and ``TR1..TR3`` maturation transit (platelet
equivalents); ``P`` circulating platelets (10⁹/L).

Every patient starts at the pathological steady state implied by the baseline count PLT0:
production ``PROD·(1 − EPROD)·(PREF/PLT0)^GAMMA`` equals clearance ``K·PLT0``, so
``K = PROD·(1 − EPROD)·(PREF/PLT0)^GAMMA / PLT0``; its excess over natural clearance KNAT is
split into an antibody-mediated share ``1 − FT`` (KAB) and an antibody-independent, T-cell
share ``FT`` (KTD). Untreated, nothing moves.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from ..mechanisms.itp import (
    anti_platelet_elimination,
    antibody_rate,
    b_cell_rate,
    megakaryocyte_rate,
    naive_t_rate,
    pathogenic_help,
    plasma_cell_rate,
    platelet_rate,
    t_helper_multipliers,
    t_helper_rate,
)
from .base import AbstractModel
from .pk_blocks import OneCompartmentPK, TwoCompartmentPK
from .solver_config import SolverConfig

STATES = ("B", "N", "T1", "T17", "TFH", "TREG", "S", "L", "A", "G", "MK", "TR1", "TR2", "TR3", "P")
_INDEX = {name: i for i, name in enumerate(STATES)}
N_TRANSIT = 3  # transit compartments between precursors and circulation (Friberg 2002)

OUTPUTS = (
    "PLT",  # platelets, 10⁹/L
    "C_RTX",  # rituximab, mg/L
    "C_IGU",  # iguratimod, mg/L
    "BCELL",  # CD20⁺ B cells, relative to baseline
    "ANTIBODY",  # anti-platelet IgG, relative to baseline
    "TH1_PCT",  # % of CD4⁺ T cells
    "TH17_PCT",
    "TFH_PCT",
    "TREG_PCT",
    "IGG_CHANGE",  # total IgG, fractional change from baseline
)

NONLINEAR_PARAMETERS = (
    "PLT0", "PREF", "KNAT", "MTT", "GAMMA", "EPROD", "FT",
    "KB", "EMAX_B", "EC50_B", "HILL_B",
    "KN", "DIFF_SHARE", "KT", "SKEW", "IMAX_TH1", "IMAX_TH17", "EMAX_TREG", "IC50_TH",
    "KS", "KL", "IMAX_PC", "IC50_PC", "KIGG", "KTMD", "FL", "FL_IGG",
    "PCT_TH1", "PCT_TH17", "PCT_TFH", "PCT_TREG",
)  # fmt: skip


def platelet_kinetics(params):
    """Derived platelet constants: production PROD, transit rate KTR and, from the baseline
    steady state, total clearance K, antibody clearance KAB and T-cell destruction KTD
    (all per day; PROD in 10⁹/L/day)."""
    prod = params["KNAT"] * params["PREF"]
    ktr = (N_TRANSIT + 1.0) / params["MTT"]
    production = prod * (1.0 - params["EPROD"]) * (params["PREF"] / params["PLT0"]) ** params["GAMMA"]
    total = production / params["PLT0"]
    # A baseline count above what production allows would need negative destruction.
    excess = jnp.maximum(total - params["KNAT"], 0.0)
    return dict(
        PROD=prod,
        KTR=ktr,
        K=total,
        KAB=(1.0 - params["FT"]) * excess,
        KTD=params["FT"] * excess,
    )


def _healthy_differentiation(multipliers):
    return jnp.mean(multipliers)


class ITPModel(AbstractModel):
    """The ITP model (see the module docstring); parameters in ``models/itp_v1.toml``.

    Solved by default with ``bosh3`` at rtol 1e-6, atol 1e-9: platelet clearance of several
    per day in severe patients bounds an explicit solver's step by stability, not accuracy,
    and there ``bosh3``'s three evaluations a step beat ``tsit5``'s six. On 2,000 calibrated
    patients it is 1.34× faster than ``tsit5`` at rtol 1e-7 on the control arm and 1.21× on the
    combination arm (``benchmarks/simulate.py --solver``); predictions stay within 3e-5
    relative of a tsit5 rtol-1e-10 solution (``tests/test_itp_model.py``).
    """

    solver_config: SolverConfig = eqx.field(
        static=True, default=SolverConfig(solver="bosh3", rtol=1e-6, atol=1e-9)
    )

    @property
    def pk_blocks(self):
        return (
            TwoCompartmentPK(oral=False, drug="rituximab", suffix="_RTX"),
            OneCompartmentPK(oral=True, drug="iguratimod", suffix="_IGU"),
        )

    @property
    def outputs(self):
        return OUTPUTS

    @property
    def solver(self):
        return self.solver_config

    @property
    def n_nonlinear_states(self):
        return len(STATES)

    @property
    def nonlinear_parameter_names(self):
        return NONLINEAR_PARAMETERS

    def _multipliers(self, concentration, p):
        return t_helper_multipliers(
            concentration, p["SKEW"], p["IMAX_TH1"], p["IMAX_TH17"], p["EMAX_TREG"], p["IC50_TH"]
        )

    def initial_nonlinear_state(self, params):
        p = params
        multipliers = self._multipliers(0.0, p)
        load = _healthy_differentiation(multipliers)
        naive = 1.0 / ((1.0 - p["DIFF_SHARE"]) + p["DIFF_SHARE"] * load)
        subsets = multipliers * naive
        kinetics = platelet_kinetics(p)
        precursor = kinetics["K"] * p["PLT0"] / kinetics["KTR"]
        one = jnp.ones_like(p["PLT0"])
        return jnp.stack(
            [one, naive, *subsets, one, one, one, one]
            + [precursor] * (N_TRANSIT + 1)
            + [p["PLT0"]]
        )

    def nonlinear_rates(self, t, state, concentrations, params):
        p = params
        c_rtx, c_igu = concentrations[0], concentrations[1]
        B, N, T1, T17, TFH, TREG, S, L, A, G, MK = (state[i] for i in range(11))
        transit = state[_INDEX["TR1"] : _INDEX["TR1"] + N_TRANSIT]
        P = state[_INDEX["P"]]
        multipliers = self._multipliers(c_igu, p)
        help_relative = pathogenic_help(T1, T17, TFH, TREG) / p["SKEW"] ** 2
        kinetics = platelet_kinetics(p)
        ktr = kinetics["KTR"]
        chain_in = jnp.concatenate([jnp.stack([MK]), transit[:-1]])
        return jnp.concatenate(
            [
                jnp.stack(
                    [
                        b_cell_rate(B, c_rtx, p["KB"], p["EMAX_B"], p["EC50_B"], p["HILL_B"]),
                        naive_t_rate(N, _healthy_differentiation(multipliers), p["KN"], p["DIFF_SHARE"]),
                    ]
                ),
                t_helper_rate(jnp.stack([T1, T17, TFH, TREG]), N, multipliers, p["KT"]),
                jnp.stack(
                    [
                        plasma_cell_rate(S, B, help_relative, c_igu, p["KS"], p["IMAX_PC"], p["IC50_PC"]),
                        plasma_cell_rate(L, B, help_relative, c_igu, p["KL"], p["IMAX_PC"], p["IC50_PC"]),
                        antibody_rate(A, S, L, anti_platelet_elimination(p["KIGG"], p["KTMD"]), p["FL"]),
                        antibody_rate(G, S, L, p["KIGG"], p["FL_IGG"]),
                        megakaryocyte_rate(
                            MK, P, A, kinetics["PROD"], p["EPROD"], p["PREF"], p["GAMMA"], ktr
                        ),
                    ]
                ),
                ktr * (chain_in - transit),
                jnp.stack(
                    [
                        platelet_rate(
                            P, ktr * transit[-1], A, help_relative, p["KNAT"], kinetics["KAB"], kinetics["KTD"]
                        )
                    ]
                ),
            ]
        )

    def observe(self, amounts, state, concentrations, params):
        p = params
        return jnp.stack(
            [
                state[_INDEX["P"]],
                concentrations[0],
                concentrations[1],
                state[_INDEX["B"]],
                state[_INDEX["A"]],
                state[_INDEX["T1"]] * p["PCT_TH1"],
                state[_INDEX["T17"]] * p["PCT_TH17"],
                state[_INDEX["TFH"]] * p["PCT_TFH"],
                state[_INDEX["TREG"]] * p["PCT_TREG"],
                state[_INDEX["G"]] - 1.0,
            ]
        )

