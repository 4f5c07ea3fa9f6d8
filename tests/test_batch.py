"""``itp_pd.batch`` and ``itp-pd batch`` on one local 2-CPU Ray instance (CI's machine).

Fits are 50-step MAP fits of the two-compartment PK example: each worker compiles once
(about 15–35 s on 2 busy cores), later fits in a warm worker take about a second.
"""

import csv
import dataclasses
import json
import os
import re
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="itp-pd batch needs Ray: pip install 'itp-pd[batch]'")

import itp_pd.batch  # noqa: E402
from itp_pd.batch import BatchError, batch_key, fit_and_write, ray_session, run_batch  # noqa: E402
from itp_pd.cli import main  # noqa: E402
from itp_pd.errors import SpecError  # noqa: E402
from itp_pd.inference import file_sha256, load_recipe  # noqa: E402
from itp_pd.output_folder import replaced_atomically  # noqa: E402

# Workers cannot import this module (tests/ is not on their sys.path): ship its functions whole.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "examples" / "data" / "pk_trial.csv"
SPEC = REPO / "models" / "pk_2cmt_iv.toml"
FIT_FILES = ("posterior.nc", "summary.csv", "manifest.json")


def write_recipe(folder: Path, stem: str, *, seed: int, name: str = "pk_map", data: Path = DATA,
                 fit_extra: str = "", model_extra: str = "") -> Path:
    """A 50-step MAP recipe of the PK example, naming its data and spec by absolute path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.toml"
    path.write_text(f"""[fit]
name = "{name}"
method = "map"
seed = {seed}
{fit_extra}
[data]
path = "{data}"
sha256 = "{file_sha256(data)}"

[model]
spec = "{SPEC}"
estimate = ["CL", "V1"]
random_effects = ["CL", "V1"]
{model_extra}
[map]
steps = 50
""")
    return path


def die_when_marked(recipe, folder):
    """A fit function whose worker process dies half-way through writing the folder when
    ``<recipe>.crash`` exists (as a segfault or the OOM killer would), and fits otherwise."""
    if recipe.path.with_suffix(".crash").exists():
        with replaced_atomically(folder) as staging:
            (staging / "posterior.nc").write_bytes(b"half-written")
            os._exit(1)
    fit_and_write(recipe, folder)


def must_not_run(recipe, folder):
    raise AssertionError(f"a fit ran that should have been skipped: {recipe.path}")


def folder_of(path: Path, out: Path) -> Path:
    recipe = load_recipe(path)
    return out / f"{recipe.name}-{batch_key(recipe)}"


def modification_times(folder: Path) -> dict:
    return {p.name: p.stat().st_mtime_ns for p in [folder, *folder.iterdir()]}


def read_summary(out: Path) -> list[dict]:
    with open(out / "batch.csv", newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module (starting one takes ~6 s); run_batch uses it."""
    with ray_session(num_cpus=2) as session:
        yield session
    assert not ray.is_initialized(), "ray_session shuts down the instance it started"


@pytest.fixture(scope="module")
def first_batch(local_ray, tmp_path_factory):
    """Three recipes with the same name and different seeds, the first listed twice."""
    root = tmp_path_factory.mktemp("batch")
    paths = [write_recipe(root / "recipes", f"seed{seed}", seed=seed) for seed in (1, 2, 3)]
    out = root / "out"
    report = run_batch([*paths, paths[0]], out)
    return paths, out, report


def test_each_fit_runs_once_into_a_folder_named_by_its_key(first_batch):
    paths, out, report = first_batch
    assert [row.recipe for row in report.rows] == [str(p) for p in paths]  # the repeat ran once
    assert [row.status for row in report.rows] == ["done"] * 3
    assert all(row.seconds > 0 and row.error == "" for row in report.rows)
    folders = [folder_of(p, out) for p in paths]
    assert len(set(folders)) == 3  # same name, different keys: different folders
    for path, folder, row in zip(paths, folders, report.rows):
        assert row.folder == str(folder) and row.key == folder.name.removeprefix("pk_map-")
        assert all((folder / name).is_file() for name in FIT_FILES)
        manifest = json.loads((folder / "manifest.json").read_text())
        recipe = load_recipe(path)
        assert (manifest["recipe_sha256"], manifest["seed"], manifest["method"]) == (recipe.sha256, recipe.seed, "map")
        assert manifest["x64"] is True  # the worker set float64 itself
    # Nothing half-written beside the fits, and the workers shared a compilation cache.
    assert sorted(p.name for p in out.iterdir()) == sorted([".jax-cache", "batch.csv", *(f.name for f in folders)])
    assert any((out / ".jax-cache").iterdir())
    assert [(r["recipe"], r["status"], r["key"]) for r in read_summary(out)] == [
        (row.recipe, "done", row.key) for row in report.rows]


def test_the_key_is_stable_and_changes_with_every_input(tmp_path, monkeypatch):
    spec = tmp_path / "spec.toml"
    spec.write_bytes(SPEC.read_bytes())
    path = write_recipe(tmp_path, "a", seed=1)
    path.write_text(path.read_text().replace(str(SPEC), str(spec)))  # its own copy of the spec
    recipe = load_recipe(path)
    key = batch_key(recipe)
    assert re.fullmatch("[0-9a-f]{16}", key)
    assert batch_key(load_recipe(path)) == key  # same inputs, same key

    assert batch_key(dataclasses.replace(recipe, data_sha256="0" * 64)) != key
    assert batch_key(dataclasses.replace(recipe, values_path=spec)) != key
    monkeypatch.setattr(itp_pd.batch, "__version__", "99.0")
    assert batch_key(recipe) != key
    monkeypatch.undo()
    spec.write_text(spec.read_text() + "\n# edited\n")  # the spec changed, the recipe did not
    assert batch_key(load_recipe(path)) != key
    spec.write_bytes(SPEC.read_bytes())
    assert batch_key(load_recipe(path)) == key
    path.write_text(path.read_text() + "# a comment\n")  # any change to the recipe's bytes
    assert batch_key(load_recipe(path)) != key


def test_a_rerun_skips_every_finished_fit_without_touching_it(first_batch):
    paths, out, _ = first_batch
    before = {p: modification_times(folder_of(p, out)) for p in paths}
    report = run_batch(paths, out, fit_function=must_not_run, progress=False)
    assert [row.status for row in report.rows] == ["skipped"] * 3
    assert all(row.seconds is None for row in report.rows)
    assert {p: modification_times(folder_of(p, out)) for p in paths} == before
    assert [r["status"] for r in read_summary(out)] == ["skipped"] * 3


def test_a_worker_that_dies_fails_only_its_fit_and_the_rerun_resumes(local_ray, tmp_path):
    # The third recipe asks for a GPU; the batch's device="cpu" overrides it on this CPU machine.
    paths = [write_recipe(tmp_path / "recipes", f"seed{seed}", seed=seed,
                          fit_extra='device = "gpu"' if seed == 13 else "") for seed in (11, 12, 13)]
    out = tmp_path / "out"
    marker = paths[1].with_suffix(".crash")
    marker.touch()
    report = run_batch(paths, out, device="cpu", fit_function=die_when_marked, progress=False)
    assert [row.status for row in report.rows] == ["done", "failed", "done"]
    assert "WorkerCrashedError" in report.rows[1].error and report.rows[1].seconds is None
    crashed = folder_of(paths[1], out)
    assert not crashed.exists() and not list(out.glob(f".{crashed.name}*"))  # no half-written folder
    assert "cpu" in json.loads((folder_of(paths[2], out) / "manifest.json").read_text())["device"]

    marker.unlink()
    kept = {p: modification_times(folder_of(p, out)) for p in (paths[0], paths[2])}
    resumed = run_batch(paths, out, device="cpu", fit_function=die_when_marked, progress=False)
    assert [row.status for row in resumed.rows] == ["skipped", "done", "skipped"]
    assert all((crashed / name).is_file() for name in FIT_FILES)
    assert {p: modification_times(folder_of(p, out)) for p in (paths[0], paths[2])} == kept


def test_a_bad_recipe_refuses_the_whole_batch_before_anything_runs(local_ray, tmp_path):
    good = write_recipe(tmp_path, "good", seed=1)
    bad_method = write_recipe(tmp_path, "bad_method", seed=1)
    bad_method.write_text(bad_method.read_text().replace('method = "map"', 'method = "mcmc"'))
    unknown_parameter = write_recipe(tmp_path, "unknown_parameter", seed=1)
    unknown_parameter.write_text(unknown_parameter.read_text().replace('estimate = ["CL", "V1"]', 'estimate = ["CLX"]'))
    out = tmp_path / "out"
    with pytest.raises(SpecError) as refused:
        run_batch([good, bad_method, unknown_parameter], out, fit_function=must_not_run, progress=False)
    message = str(refused.value)
    assert "2 of 3 recipe(s)" in message and str(bad_method) in message and "fit.method" in message
    assert "CLX" in message and str(good) not in message
    assert not out.exists()


def test_a_gpu_fit_on_a_cluster_without_gpus_is_refused(local_ray, tmp_path):
    gpu = write_recipe(tmp_path, "gpu", seed=1, fit_extra='device = "gpu"')
    with pytest.raises(BatchError, match="ask for a GPU.*--device cpu"):
        run_batch([gpu], tmp_path / "out", fit_function=must_not_run, progress=False)
    assert not folder_of(gpu, tmp_path / "out").exists()


def writes_nothing(recipe, folder):
    """A fit function that forgets to write its folder."""


def test_a_fit_function_that_writes_nothing_is_a_failed_fit(local_ray, tmp_path):
    path = write_recipe(tmp_path, "quiet", seed=1)
    report = run_batch([path], tmp_path / "out", fit_function=writes_nothing, progress=False)
    assert report.rows[0].status == "failed"
    assert "BatchError" in report.rows[0].error and "without writing" in report.rows[0].error


def test_cli_prints_the_table_and_exits_1_when_a_fit_failed(first_batch, tmp_path, capsys, monkeypatch):
    paths, out, _ = first_batch
    broken_data = tmp_path / "broken.csv"
    broken_data.write_text("ID,TIME,DV\n1,0,abc\n")  # its sha256 matches; reading it fails in the worker
    broken = write_recipe(tmp_path, "broken", seed=1, name="broken", data=broken_data)
    code = main(["batch", str(paths[0]), str(broken), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    lines = captured.out.splitlines()
    assert lines[0].split() == ["status", "seconds", "fit", "recipe"]
    assert lines[1].split() == ["skipped", "-", folder_of(paths[0], out).name, str(paths[0])]
    assert lines[2].split() == ["failed", "-", folder_of(broken, out).name, str(broken)]
    assert "1 skipped, 1 failed" in lines[3]
    assert "DatasetError" in captured.err and "run the same command again" in captured.err
    assert [r["status"] for r in read_summary(out)] == ["skipped", "failed"]

    code = main(["batch", str(tmp_path / "missing.toml"), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 2 and "missing.toml" in captured.err and captured.out == ""

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    code = main(["batch", str(paths[0]), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 2 and "pip install 'itp-pd[batch]'" in captured.err


def copy_the_summary(recipe, folder):
    """A fit function that records what batch.csv says while it runs, then writes a tiny folder."""
    seen = (folder.parent / "batch.csv").read_text()
    with replaced_atomically(folder) as staging:
        (staging / "seen.csv").write_text(seen)


def test_batch_csv_is_written_as_fits_finish_so_a_killed_batch_leaves_it_true(local_ray, tmp_path):
    paths = [write_recipe(tmp_path, f"seed{seed}", seed=seed) for seed in (21, 22)]
    out = tmp_path / "out"
    report = run_batch(paths, out, fit_function=copy_the_summary, progress=False)
    assert [row.status for row in report.rows] == ["done", "done"]
    for path in paths:
        folder = folder_of(path, out)
        with open(folder / "seen.csv", newline="") as stream:
            seen = {row["folder"]: row["status"] for row in csv.DictReader(stream)}
        # While this fit ran, batch.csv already listed it, as pending (not the last batch's rows).
        assert seen[str(folder)] == "pending" and len(seen) == 2
    assert [r["status"] for r in read_summary(out)] == ["done", "done"]
