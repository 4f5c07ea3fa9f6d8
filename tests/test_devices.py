"""Device choice (``itp_pd.devices``) on a machine without a GPU (CI's)."""

import jax
import pytest

from itp_pd.devices import DEVICE_ENV, DeviceError, choose_device, gpu_devices, on_device

pytestmark = pytest.mark.skipif(bool(gpu_devices()), reason="these expectations are for a machine without a GPU")


def test_auto_and_cpu_choose_the_cpu_without_a_gpu(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    cpu = jax.devices("cpu")[0]
    assert choose_device("auto", batch=10**6) == cpu and choose_device("cpu") == cpu
    with on_device("cpu") as device:
        assert device == cpu and jax.numpy.zeros(3).devices() == {cpu}


def test_a_gpu_asked_of_a_machine_without_one_says_how_to_get_one(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    with pytest.raises(DeviceError, match=r"jax\[cuda12\].*--device cpu"):
        choose_device("gpu")
    monkeypatch.setenv(DEVICE_ENV, "gpu")  # the environment overrides "auto" only
    with pytest.raises(DeviceError):
        choose_device("auto")
    assert choose_device("cpu") == jax.devices("cpu")[0]


def test_unknown_choices_name_where_they_came_from(monkeypatch):
    with pytest.raises(DeviceError, match="device is 'tpu'; expected one of auto, cpu, gpu"):
        choose_device("tpu")
    monkeypatch.setenv(DEVICE_ENV, "bogus")
    with pytest.raises(DeviceError, match=r"\$ITP_PD_DEVICE is 'bogus'"):
        choose_device("auto")
