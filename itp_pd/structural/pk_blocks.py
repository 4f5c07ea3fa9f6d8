"""Linear PK blocks: one drug's compartments, propagated exactly.

A block owns the names of its compartments and parameters; the engine stacks the blocks of a
model into one amount vector whose positions are the NONMEM compartment numbers (CMT 1 is the
first compartment of the first block).
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax.numpy as jnp

from ..mechanisms.linear_pk import propagate_one_compartment, propagate_two_compartment


class AbstractLinearPK(eqx.Module):
    """One drug's linear compartment model (amounts in mg, time in days)."""

    @property
    @abc.abstractmethod
    def compartments(self) -> tuple[str, ...]:
        """Compartment names in state order."""

    @property
    @abc.abstractmethod
    def parameter_names(self) -> tuple[str, ...]:
        """Names of the parameters this block reads from a parameter mapping."""

    @abc.abstractmethod
    def propagate(self, amounts, rates, s, params):
        """Amounts after ``s`` days with constant input ``rates`` (mg/day)."""

    @abc.abstractmethod
    def concentration(self, amounts, params):
        """Central concentration (mg/L)."""

    @property
    @abc.abstractmethod
    def depot_mask(self) -> tuple[bool, ...]:
        """True for a depot compartment (its doses do not make concentration jump)."""


def _names(base, suffix):
    return tuple(f"{name}{suffix}" for name in base)


class OneCompartmentPK(AbstractLinearPK):
    """One-compartment PK, IV or first-order oral absorption.

    Parameters: ``CL`` (L/day), ``V`` (L) and, when oral, ``KA`` (1/day), each followed by
    ``suffix`` (e.g. ``CL_IGU``) so several drugs can share one model.
    """

    oral: bool = eqx.field(static=True, default=False)
    drug: str = eqx.field(static=True, default="drug")
    suffix: str = eqx.field(static=True, default="")

    @property
    def compartments(self):
        central = (f"{self.drug}_central",)
        return ((f"{self.drug}_depot",) + central) if self.oral else central

    @property
    def depot_mask(self):
        return (True, False) if self.oral else (False,)

    @property
    def parameter_names(self):
        return _names(("CL", "V", "KA") if self.oral else ("CL", "V"), self.suffix)

    def _get(self, params, name):
        return params[f"{name}{self.suffix}"]

    def propagate(self, amounts, rates, s, params):
        return propagate_one_compartment(
            amounts,
            rates,
            s,
            CL=self._get(params, "CL"),
            V=self._get(params, "V"),
            KA=self._get(params, "KA") if self.oral else None,
        )

    def concentration(self, amounts, params):
        return amounts[1 if self.oral else 0] / self._get(params, "V")


class TwoCompartmentPK(AbstractLinearPK):
    """Two-compartment PK, IV or first-order oral absorption.

    Parameters: ``CL``, ``Q`` (L/day), ``V1``, ``V2`` (L) and, when oral, ``KA`` (1/day), each
    followed by ``suffix``.
    """

    oral: bool = eqx.field(static=True, default=False)
    drug: str = eqx.field(static=True, default="drug")
    suffix: str = eqx.field(static=True, default="")

    @property
    def compartments(self):
        disposition = (f"{self.drug}_central", f"{self.drug}_peripheral")
        return ((f"{self.drug}_depot",) + disposition) if self.oral else disposition

    @property
    def depot_mask(self):
        return (True, False, False) if self.oral else (False, False)

    @property
    def parameter_names(self):
        base = ("CL", "V1", "Q", "V2") + (("KA",) if self.oral else ())
        return _names(base, self.suffix)

    def _get(self, params, name):
        return params[f"{name}{self.suffix}"]

    def propagate(self, amounts, rates, s, params):
        return propagate_two_compartment(
            amounts,
            rates,
            s,
            CL=self._get(params, "CL"),
            V1=self._get(params, "V1"),
            Q=self._get(params, "Q"),
            V2=self._get(params, "V2"),
            KA=self._get(params, "KA") if self.oral else None,
        )

    def concentration(self, amounts, params):
        return amounts[1 if self.oral else 0] / self._get(params, "V1")


def stack_offsets(blocks):
    """Start index of each block in the model's amount vector."""
    offsets, start = [], 0
    for block in blocks:
        offsets.append(start)
        start += len(block.compartments)
    return tuple(offsets), start


def propagate_blocks(blocks, amounts, rates, s, params):
    """Propagate every block of a model over ``s`` days (amounts and rates stacked)."""
    offsets, _ = stack_offsets(blocks)
    pieces = []
    for block, start in zip(blocks, offsets):
        stop = start + len(block.compartments)
        pieces.append(block.propagate(amounts[start:stop], rates[start:stop], s, params))
    return jnp.concatenate(pieces)


def block_concentrations(blocks, amounts, params):
    """Central concentration (mg/L) of every block, in block order."""
    offsets, _ = stack_offsets(blocks)
    return jnp.stack(
        [
            block.concentration(amounts[start : start + len(block.compartments)], params)
            for block, start in zip(blocks, offsets)
        ]
    )
