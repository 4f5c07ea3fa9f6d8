"""Entry-point settings (``itp_pd.runtime``): one XLA device per core unless told otherwise,
float64 and the compilation cache. JAX fixes its devices when it starts, so each case runs in
a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = """
import json, os
from itp_pd.runtime import configure_entry_point
configure_entry_point()
import jax
print(json.dumps({"devices": len(jax.devices("cpu")), "x64": bool(jax.config.jax_enable_x64),
                  "cache": jax.config.jax_compilation_cache_dir}))
"""


def probe(tmp_path, **env_changes):
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "ITP_PD_HOST_DEVICES")}
    env["ITP_PD_COMPILATION_CACHE"] = str(tmp_path / "cache")
    env.update(env_changes)
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120)
    return result


def test_one_device_per_core_by_default_with_float64_and_the_cache(tmp_path):
    result = probe(tmp_path)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["devices"] == len(os.sched_getaffinity(0))
    assert figures["x64"] is True
    assert figures["cache"] == str(tmp_path / "cache") and (tmp_path / "cache").is_dir()


def test_the_device_count_can_be_set_and_xla_flags_win(tmp_path):
    figures = json.loads(probe(tmp_path, ITP_PD_HOST_DEVICES="3").stdout)
    assert figures["devices"] == 3
    figures = json.loads(probe(tmp_path, ITP_PD_HOST_DEVICES="1").stdout)
    assert figures["devices"] == 1
    flags = "--xla_force_host_platform_device_count=2"
    figures = json.loads(probe(tmp_path, ITP_PD_HOST_DEVICES="3", XLA_FLAGS=flags).stdout)
    assert figures["devices"] == 2  # the user's own XLA flag is never overridden


def test_a_bad_device_count_is_a_clear_error(tmp_path):
    result = probe(tmp_path, ITP_PD_HOST_DEVICES="two")
    assert result.returncode != 0
    assert "$ITP_PD_HOST_DEVICES is 'two'" in result.stderr and "at least 1" in result.stderr


def test_the_cache_can_be_turned_off(tmp_path):
    figures = json.loads(probe(tmp_path, ITP_PD_COMPILATION_CACHE="off").stdout)
    assert figures["cache"] in (None, "")
    assert not (tmp_path / "cache").exists()


def test_the_cli_reports_a_bad_device_count_with_exit_code_2(tmp_path):
    env = {**os.environ, "ITP_PD_HOST_DEVICES": "0"}
    result = subprocess.run([sys.executable, "-m", "itp_pd.cli", "simulate", "--help"], capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 0  # --help needs no devices
    result = subprocess.run([sys.executable, "-m", "itp_pd.cli", "check-data", str(tmp_path / "missing.csv")],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2 and "$ITP_PD_HOST_DEVICES is '0'" in result.stderr


def test_ray_workers_started_after_it_get_one_device_each(tmp_path):
    code = ("import os, json\nfrom itp_pd.runtime import use_every_core, one_device_for_child_processes\n"
            "use_every_core(2)\nbefore = os.environ.get('XLA_FLAGS')\none_device_for_child_processes()\n"
            "print(json.dumps([before, os.environ.get('XLA_FLAGS')]))")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    before, after = json.loads(result.stdout)
    assert "device_count=2" in before and after is None
    # A device count the user set stays.
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=3"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert json.loads(result.stdout)[1] == "--xla_force_host_platform_device_count=3"
