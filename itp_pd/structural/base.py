"""The interface every structural model implements.

A structural model is linear PK blocks (propagated exactly, in closed form) plus an optional
nonlinear part (integrated with diffrax) that sees the drug concentrations as known inputs.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax.numpy as jnp

from .pk_blocks import AbstractLinearPK, stack_offsets
from .solver_config import SolverConfig


class AbstractModel(eqx.Module):
    """A structural model: PK blocks, a nonlinear part, and observables.

    Parameters are a mapping from name to a scalar (one patient) in internal units. State:
    PK amounts (mg, one per NONMEM compartment, CMT = position + 1) and the nonlinear state
    (``n_nonlinear_states``; none for a pure PK model).
    """

    @property
    @abc.abstractmethod
    def pk_blocks(self) -> tuple[AbstractLinearPK, ...]:
        """The linear PK blocks, in compartment-number order."""

    @property
    @abc.abstractmethod
    def outputs(self) -> tuple[str, ...]:
        """Observable names; DVID k is ``outputs[k - 1]``."""

    @property
    @abc.abstractmethod
    def solver(self) -> SolverConfig:
        """Static solver settings for the nonlinear part."""

    @property
    @abc.abstractmethod
    def n_nonlinear_states(self) -> int:
        """Number of states integrated by the ODE solver (0 for pure PK)."""

    @property
    @abc.abstractmethod
    def nonlinear_parameter_names(self) -> tuple[str, ...]:
        """Parameters read by the nonlinear part and the observables (not the PK blocks)."""

    @abc.abstractmethod
    def initial_nonlinear_state(self, params):
        """Nonlinear state at the patient's first record (and after a reset)."""

    @abc.abstractmethod
    def nonlinear_rates(self, t, state, concentrations, params):
        """Time derivative of the nonlinear state (per day).

        Args:
            t: time (days). state: nonlinear state. concentrations: central concentration of
                each PK block (mg/L), computed exactly by the engine. params: parameters.
        """

    @abc.abstractmethod
    def observe(self, amounts, state, concentrations, params):
        """All observables at one time point, shape ``(len(outputs),)``."""

    # Concrete helpers shared by all models (not overridden).

    @property
    def compartments(self) -> tuple[str, ...]:
        """Compartment names; CMT k is ``compartments[k - 1]``."""
        return tuple(name for block in self.pk_blocks for name in block.compartments)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """Every parameter the model reads: PK blocks first, then the nonlinear part."""
        pk = tuple(name for block in self.pk_blocks for name in block.parameter_names)
        return pk + self.nonlinear_parameter_names

    @property
    def n_compartments(self) -> int:
        return stack_offsets(self.pk_blocks)[1]

    @property
    def depot_mask(self) -> tuple[bool, ...]:
        return tuple(flag for block in self.pk_blocks for flag in block.depot_mask)

    def compartment_number(self, name: str) -> int:
        """NONMEM CMT number of a compartment name."""
        return self.compartments.index(name) + 1

    def compartment_map(self) -> dict[str, int]:
        return {name: k + 1 for k, name in enumerate(self.compartments)}


class PKModel(AbstractModel):
    """A pure linear PK model (one drug, one block): observable ``CP`` in mg/L."""

    block: AbstractLinearPK
    solver_config: SolverConfig = eqx.field(static=True, default=SolverConfig())

    @property
    def pk_blocks(self):
        return (self.block,)

    @property
    def outputs(self):
        return ("CP",)

    @property
    def solver(self):
        return self.solver_config

    @property
    def n_nonlinear_states(self):
        return 0

    @property
    def nonlinear_parameter_names(self):
        return ()

    def initial_nonlinear_state(self, params):
        return jnp.zeros(0)

    def nonlinear_rates(self, t, state, concentrations, params):
        return jnp.zeros(0)

    def observe(self, amounts, state, concentrations, params):
        return concentrations[:1]
