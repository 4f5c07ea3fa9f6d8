"""Structural models by the key a model spec names (``[model] structural = "..."``)."""

from __future__ import annotations

from ..errors import SpecError
from .itp import ITPModel
from .pk_models import one_compartment_model, two_compartment_model
from .turnover import TurnoverModel

STRUCTURAL_MODELS = {
    "itp": ITPModel,
    "one_compartment_iv": lambda: one_compartment_model(oral=False),
    "one_compartment_oral": lambda: one_compartment_model(oral=True),
    "two_compartment_iv": lambda: two_compartment_model(oral=False),
    "two_compartment_oral": lambda: two_compartment_model(oral=True),
    "turnover": TurnoverModel,
}


def model_from_spec(spec):
    """The structural model a spec names, checked to read exactly the spec's parameters.

    Raises:
        SpecError: an unknown structural key, or parameters the model needs that the spec
            lacks (or the reverse).
    """
    key = spec.structural
    if key not in STRUCTURAL_MODELS:
        raise SpecError(
            f"{spec.path}: model.structural: unknown key {key!r}; expected one of "
            f"{sorted(STRUCTURAL_MODELS)}"
        )
    model = STRUCTURAL_MODELS[key]()
    needed, declared = set(model.parameter_names), {p.name for p in spec.parameters}
    problems = []
    if needed - declared:
        problems.append(f"parameters the model needs are missing: {sorted(needed - declared)}")
    if declared - needed:
        problems.append(f"parameters the model does not read: {sorted(declared - needed)}")
    if problems:
        raise SpecError(f"{spec.path}: " + "; ".join(problems) + f" (structural model {key!r})")
    return model
