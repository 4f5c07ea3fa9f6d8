"""No command can destroy a user's files, and concurrent runs cannot overwrite each other
(``itp_pd.output_folder``): ``--force`` replaces only an earlier itp-pd output folder, every
run holds a lock on its output for its whole length, a killed run's leftovers are tidied up by
the next one, and ``--out`` is checked before any work.

Every test hashes the working folder before and after: nothing outside the output folder may
change. Refusals run in-process through ``itp_pd.cli.main`` with the work itself replaced by a
function that fails the test if called (so "refused before any work" is checked, not timed);
two real fits race through the entry point (one MAP fit's compile, about 30 s on 2 cores).
"""

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from itp_pd.cli import main
from itp_pd.errors import OutputFolderError
from itp_pd.output_folder import (MARKER, check_replaceable, claimed_output, lock_path, output_lock, read_marker,
                                  replaced_atomically)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "examples" / "data" / "pk_trial.csv"
SPEC = REPO / "models" / "pk_2cmt_iv.toml"
RECIPE = """[fit]
name = "r"
method = "map"
seed = 1

[data]
path = "{data}"
sha256 = "{sha}"

[model]
spec = "spec.toml"
estimate = ["CL", "V1"]
random_effects = ["CL", "V1"]

[map]
steps = 50
"""


def make_project(folder: Path) -> Path:
    """``folder`` holding a MAP recipe, its dataset (and units sidecar), its spec and a user's
    notes: the project a user runs ``itp-pd fit`` in. Returns the recipe."""
    folder.mkdir(parents=True)
    for source in (DATA, DATA.with_suffix(".units.toml")):
        (folder / source.name).write_bytes(source.read_bytes())
    (folder / "spec.toml").write_bytes(SPEC.read_bytes())
    (folder / "notes.txt").write_text("what I tried on Tuesday\n")
    sha = hashlib.sha256(DATA.read_bytes()).hexdigest()
    recipe = folder / "r.toml"
    recipe.write_text(RECIPE.format(data=DATA.name, sha=sha))
    return recipe


def snapshot(root: Path, *, outside: Path | None = None) -> dict:
    """Every file (sha256) and folder under ``root``, except under ``outside``."""
    entries = {}
    for path in sorted(root.rglob("*")):
        if outside is not None and (path == outside or path.is_relative_to(outside)):
            continue
        entries[path.relative_to(root).as_posix()] = (
            hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "folder")
    return entries


def write_output(folder: Path, files: dict) -> Path:
    """An itp-pd output folder written the library's way (with its record)."""
    with replaced_atomically(folder) as staging:
        for name, text in files.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_text(text)
    return folder


def must_not_run(*args, **kwargs):
    raise AssertionError("the work started although the output folder was refused")


@pytest.fixture
def no_work(monkeypatch):
    """Every command's work replaced by ``must_not_run``: a refusal after it would exit 1."""
    import itp_pd.cli.simulate
    import itp_pd.demo
    import itp_pd.inference
    import itp_pd.trial

    monkeypatch.setattr(itp_pd.inference, "fit", must_not_run)
    monkeypatch.setattr(itp_pd.cli.simulate, "simulate", must_not_run)
    monkeypatch.setattr(itp_pd.trial, "population_source", must_not_run)
    monkeypatch.setattr(itp_pd.demo, "run_demo", must_not_run)


def refused(argv, capsys) -> str:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and "internal error" not in err
    return err


# --force replaces only an earlier itp-pd output folder -------------------------------------

def test_force_on_the_project_folder_is_refused_and_every_input_survives(tmp_path, capsys, no_work):
    recipe = make_project(tmp_path / "proj")
    before = snapshot(tmp_path)
    err = refused(["fit", recipe, "--out", tmp_path / "proj", "--force"], capsys)
    assert f"output folder {tmp_path / 'proj'} contains an input of this run" in err and "r.toml" in err
    assert "choose an --out" in err
    assert snapshot(tmp_path) == before
    err = refused(["fit", recipe, "--out", tmp_path / "proj"], capsys)  # without --force: the same reason
    assert "contains an input of this run" in err
    assert snapshot(tmp_path) == before


def test_force_refuses_a_folder_itp_pd_did_not_write(tmp_path, capsys, no_work):
    recipe = make_project(tmp_path / "proj")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "table.csv").write_text("a,b\n1,2\n")
    before = snapshot(tmp_path)
    err = refused(["fit", recipe, "--out", tmp_path / "results", "--force"], capsys)
    assert f"{tmp_path / 'results'} is not an itp-pd output folder" in err and MARKER in err
    assert "choose another --out" in err
    assert snapshot(tmp_path) == before


def test_force_refuses_an_itp_pd_output_holding_a_file_added_later(tmp_path, capsys, no_work):
    recipe = make_project(tmp_path / "proj")
    out = write_output(tmp_path / "out", {"summary.csv": "old\n"})
    (out / "my_notes.txt").write_text("do not lose me\n")
    (out / "plots").mkdir()
    (out / "plots" / "mine.png").write_bytes(b"\x89PNG")
    before = snapshot(tmp_path)
    err = refused(["fit", recipe, "--out", out, "--force"], capsys)
    assert "holds 2 file(s) itp-pd did not write there: my_notes.txt, plots/" in err
    assert "never deletes what it did not create" in err and f"move them out of {out}" in err
    assert snapshot(tmp_path) == before


def test_the_record_lists_the_files_written_and_nested_outputs_stay_replaceable(tmp_path):
    out = write_output(tmp_path / "fit", {"posterior.nc": "x", "sub/table.csv": "y"})
    record = read_marker(out)
    assert record["written_by"] == "itp-pd" and record["version"]
    assert record["files"] == ["posterior.nc", "sub/table.csv"]
    write_output(out / "report", {"index.html": "<html>"})  # `itp-pd diagnose` writes inside a fit
    check_replaceable(out)  # a nested itp-pd output is itp-pd's too
    (out / "report" / "comments.txt").write_text("mine")
    with pytest.raises(OutputFolderError, match="report/comments.txt"):
        check_replaceable(out)


def test_the_library_too_replaces_only_what_it_wrote_and_a_failed_block_changes_nothing(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "data.csv").write_text("1\n")
    before = snapshot(tmp_path)
    with pytest.raises(OutputFolderError, match="not an itp-pd output folder"):
        with replaced_atomically(foreign) as staging:
            (staging / "result.csv").write_text("new\n")
    assert snapshot(tmp_path) == before  # the staging folder and the lock are gone too
    out = write_output(tmp_path / "out", {"a.csv": "1\n"})
    before = snapshot(tmp_path)
    with pytest.raises(RuntimeError):
        with replaced_atomically(out) as staging:
            (staging / "a.csv").write_text("half")
            raise RuntimeError("killed half-way")
    assert snapshot(tmp_path) == before
    write_output(out, {"b.csv": "2\n"})  # a genuine itp-pd output is replaced
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "b.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign", "out"]


# --out is checked before any work ------------------------------------------------------------

@pytest.mark.parametrize("case", ["missing parent", "dot", "cwd", "ancestor of cwd", "ancestor of the recipe"])
def test_an_output_path_that_cannot_be_written_safely_is_refused_before_any_work(
        tmp_path, capsys, monkeypatch, no_work, case):
    recipe = make_project(tmp_path / "work" / "proj")
    work = tmp_path / "work"
    monkeypatch.chdir(work)
    out, expected = {
        "missing parent": (work / "no" / "such" / "x", f"create it first: mkdir -p {work / 'no' / 'such'}"),
        "dot": (".", "is the current folder"),
        "cwd": (work, "is the current folder"),
        "ancestor of cwd": (tmp_path, "contains the current folder"),
        "ancestor of the recipe": (work / "proj" / "..", "contains an input of this run"),
    }[case]
    if case == "ancestor of the recipe":
        (tmp_path / "elsewhere").mkdir()
        monkeypatch.chdir(tmp_path / "elsewhere")
    before = snapshot(tmp_path)
    err = refused(["fit", recipe, "--out", out, "--force"], capsys)
    assert expected in err, err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", [["simulate", "control"], ["trial", "control"], ["demo"]])
def test_every_command_checks_its_output_path_before_any_work(tmp_path, capsys, monkeypatch, no_work, command):
    monkeypatch.chdir(tmp_path)
    assert "is the current folder" in refused([*command, "--out", ".", "--force"], capsys)
    assert "create it first: mkdir -p" in refused([*command, "--out", tmp_path / "a" / "b"], capsys)
    assert snapshot(tmp_path) == {}
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("keep")
    before = snapshot(tmp_path)
    assert "not an itp-pd output folder" in refused([*command, "--out", tmp_path / "mine", "--force"], capsys)
    assert snapshot(tmp_path) == before


# the lock: one run per output folder ---------------------------------------------------------

HOLDER = textwrap.dedent("""
    import sys, time
    from itp_pd.output_folder import replaced_atomically
    with replaced_atomically(sys.argv[1]) as staging:
        (staging / "half.csv").write_text("half-written")
        print("writing", flush=True)
        time.sleep(120)
""")


def test_the_lock_names_its_holder_and_a_killed_holders_leftovers_go_at_the_next_run(tmp_path):
    out = write_output(tmp_path / "out", {"a.csv": "1\n"})
    before = snapshot(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "writing"
        with pytest.raises(OutputFolderError) as caught:
            with output_lock(out):
                pass
        assert f"another itp-pd run is writing {out} (process {holder.pid} on" in str(caught.value)
        assert "Wait for it to finish, or choose another --out" in str(caught.value)
    finally:
        holder.send_signal(signal.SIGKILL)  # as the OOM killer would, mid-write
        holder.wait()
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert ".out.lock" in leftovers and any(name.startswith(".out.staging-") for name in leftovers)
    with output_lock(out):  # the kernel released the dead holder's lock: stale, taken over
        assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out"]  # staging removed
    assert snapshot(tmp_path) == before  # the previous result is whole, and nothing is left beside it


def test_the_lock_is_reentrant_within_a_process_and_removed_at_the_end(tmp_path):
    out = tmp_path / "out"
    with output_lock(out):
        holder = json.loads(lock_path(out).read_text())
        assert holder["pid"] == os.getpid() and holder["host"]
        with claimed_output(out, replace=False):  # the command's claim, then the library's write
            write_output(out, {"a.csv": "1\n"})
        assert lock_path(out).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_previous_folder_left_by_a_run_killed_mid_swap_is_put_back_or_removed(tmp_path):
    old = write_output(tmp_path / "old", {"a.csv": "old\n"})
    os.replace(old, tmp_path / ".out.previous")  # killed after moving the old folder aside
    (tmp_path / ".out.lock").write_text('{"pid": 4194000, "host": "gone"}\n')  # no process holds it
    with output_lock(tmp_path / "out"):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (tmp_path / "out" / "a.csv").read_text() == "old\n"
    (tmp_path / ".out.previous").mkdir()  # killed after renaming the new one in
    with output_lock(tmp_path / "out"):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.fixture(scope="module")
def race(tmp_path_factory):
    """Two `itp-pd fit --force` runs started together into one earlier itp-pd output beside
    which a killed run left a stale lock, a staging folder and a moved-aside ``.previous``."""
    root = tmp_path_factory.mktemp("race")
    work = root / "work"
    make_project(work / "proj")
    out = write_output(work / "out", {"summary.csv": "an earlier fit\n"})
    dead = {"pid": 4194000, "host": socket.gethostname(), "started": "yesterday"}  # a killed run of this host
    (work / ".out.lock").write_text(json.dumps(dead) + "\n")
    (work / ".out.staging-dead1234").mkdir()
    (work / ".out.staging-dead1234" / "posterior.nc").write_bytes(b"half")
    (work / ".out.previous").mkdir()
    inputs = snapshot(work, outside=out)
    for leftover in (".out.lock", ".out.staging-dead1234", ".out.staging-dead1234/posterior.nc", ".out.previous"):
        del inputs[leftover]
    command = [sys.executable, "-m", "itp_pd.cli", "fit", "proj/r.toml", "--out", "out", "--force", "--quiet"]
    runs = [subprocess.Popen(command, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    ended = {}
    while len(ended) < 2:
        for run in runs:
            if run.pid not in ended and run.poll() is not None:
                ended[run.pid] = time.monotonic()
        time.sleep(0.05)
    results = [(run, *run.communicate()) for run in runs]
    return work, out, inputs, results, ended


def test_of_two_concurrent_runs_one_writes_and_the_other_is_refused_at_once_naming_it(race):
    work, out, _, results, ended = race
    codes = sorted(run.returncode for run, _, _ in results)
    # The winner writes its folder: exit 0, or 3 when 50 MAP steps do not pass the convergence check.
    assert codes in ([0, 2], [2, 3]), [err for _, _, err in results]
    (winner, stdout, _), = [r for r in results if r[0].returncode != 2]
    (loser, _, err), = [r for r in results if r[0].returncode == 2]
    assert f"another itp-pd run is writing out (process {winner.pid} on" in err, err
    assert "4194000" not in err  # not the stale lock's dead process
    assert ended[loser.pid] < ended[winner.pid]  # refused while the other was still fitting
    assert "wrote out/" in stdout


def test_force_replaces_a_genuine_itp_pd_output_and_the_killed_runs_leftovers_are_gone(race):
    work, out, inputs, _, _ = race
    record = read_marker(out)
    assert {"posterior.nc", "summary.csv", "diagnostics.json", "manifest.json", "losses.csv"} == set(record["files"])
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, *record["files"]])
    assert snapshot(work, outside=out) == inputs  # every input whole; lock, staging, .previous gone


def test_diagnose_refuses_to_write_over_the_fit_it_reads(race, capsys, monkeypatch):
    work, out, _, _, _ = race
    monkeypatch.chdir(work)
    before = snapshot(work)
    err = refused(["diagnose", out, "--out", out, "--force"], capsys)
    assert f"output folder {out} is an input of this run" in err
    assert snapshot(work) == before
