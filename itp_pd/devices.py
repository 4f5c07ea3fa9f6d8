"""Which device a job runs on: CPU or GPU, picked by batch size, or forced.

The same compiled code runs on both; only the placement differs. A GPU is used when JAX sees
one *and* the batch is wide enough to fill it: the adaptive ODE loops of small batches are
launch-bound on a GPU (each solver step is a few kernels of microseconds' work), so a laptop
CPU beats a data-centre GPU below some batch width. ``GPU_MIN_BATCH`` is that crossover.

``batch`` means the number of independent ODE systems solved side by side in one program:
patients × draws for a simulation, patients × chains for NUTS, patients × datasets for a
packed bootstrap.
"""

from __future__ import annotations

import contextlib
import os

import jax

from .errors import ItpPdError

DEVICE_CHOICES = ("auto", "cpu", "gpu")
DEVICE_ENV = "ITP_PD_DEVICE"
# Patients solved side by side from which a GPU is picked over the CPU ("auto"). Provisional,
# not measured: no GPU was lent to the session that wrote it. The reasoning: the 2-core CPU
# simulates ~490 patient-years/s at every batch from 500 up (benchmarks/scale.py), while a
# GPU's adaptive loop costs about the same per step whatever the width up to its thousands of
# lanes, so it can only win once a batch fills a good share of them. ``benchmarks/gpu.sh``
# measures the crossover (``gpu_min_batch``) and that value belongs here.
GPU_MIN_BATCH = 2048


class DeviceError(ItpPdError, RuntimeError):
    """A device was asked for that this machine does not have."""


def gpu_devices() -> list:
    """The GPUs JAX sees (empty without a CUDA/ROCm build of jaxlib or without a GPU)."""
    try:
        return list(jax.devices("gpu"))
    except RuntimeError:
        return []


def check_device_choice(requested: str, where: str = "device") -> str:
    """``requested`` if it is one of ``DEVICE_CHOICES``; a clear error naming ``where`` if not."""
    if requested not in DEVICE_CHOICES:
        raise DeviceError(f"{where} is {requested!r}; expected one of {', '.join(DEVICE_CHOICES)} "
                          "(auto: a GPU when present and the batch is wide enough)")
    return requested


def choose_device(requested: str = "auto", *, batch: int | None = None):
    """The ``jax.Device`` a job of ``batch`` parallel systems should run on.

    Args:
        requested: ``"cpu"``, ``"gpu"`` (first GPU; an error if there is none) or ``"auto"``
            (a GPU when present and ``batch ≥ GPU_MIN_BATCH``, else the CPU). ``"auto"`` can
            be overridden for a whole process with ``$ITP_PD_DEVICE``.
        batch: independent ODE systems solved side by side; ``None``: unknown (a GPU if any).

    Raises:
        DeviceError: ``"gpu"`` on a machine where JAX sees none, or an unknown choice.
    """
    requested = check_device_choice(requested)
    if requested == "auto":
        requested = check_device_choice(os.environ.get(DEVICE_ENV, "auto"), f"${DEVICE_ENV}")
    gpus = gpu_devices()
    if requested == "gpu" and not gpus:
        raise DeviceError(
            "a GPU was asked for (device = gpu) but JAX sees none "
            f"(backend {jax.default_backend()!r}); install JAX's CUDA build "
            "(pip install 'jax[cuda12]==0.10.2') on a machine with an NVIDIA GPU, or use --device cpu"
        )
    if requested == "gpu" or (requested == "auto" and gpus and (batch is None or batch >= GPU_MIN_BATCH)):
        return gpus[0]
    return jax.devices("cpu")[0]


@contextlib.contextmanager
def on_device(requested: str = "auto", *, batch: int | None = None):
    """Run the enclosed JAX work on ``choose_device(requested, batch=batch)``; yields the device.

    Arrays created inside, and jitted functions called on uncommitted arrays, go there
    (``jax.default_device``, which is thread-local)."""
    device = choose_device(requested, batch=batch)
    with jax.default_device(device):
        yield device
