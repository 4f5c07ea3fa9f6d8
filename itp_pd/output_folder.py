"""Output folders: written whole or not at all, by one run at a time, replacing only what
itp-pd wrote.

Fits, reports, simulations and the demo all write folders of several files. Three promises
hold for every one of them, and this module is where they are kept:

* **Whole or nothing.** ``replaced_atomically`` builds the folder in a staging folder beside
  it and renames it into place, so a run killed half-way leaves either the previous complete
  folder or none, never a mix.
* **One run at a time.** ``output_lock`` holds an exclusive ``flock`` on a lock file beside the
  folder (``.<name>.lock``) for the whole run. A second run into the same folder is refused at
  once, naming the process that holds it, instead of silently replacing the first one's
  results. The kernel releases the lock when its process dies, so a lock file left by a killed
  run is lockable, hence recognisably stale, and is simply taken over.
* **No command deletes what it did not create.** Every folder written through
  ``replaced_atomically`` gets a record, ``.itp-pd-output.json``, listing the files it wrote.
  Only such a folder is ever replaced (``check_replaceable``), and only while it holds nothing
  but those files (or itp-pd output folders nested in it, such as a fit's ``report/``): a
  user's notes added later, a folder of inputs, the current folder or one of its ancestors are
  refused, each with the reason and the fix.

Names beside an output folder ``<name>``, all hidden and all this module's own:

* ``.<name>.lock``: the lock file (removed when the run ends);
* ``.<name>.staging-XXXXXXXX``: the folder being written (renamed to ``<name>`` on success);
* ``.<name>.previous``: the folder being replaced, moved aside for the instant of the swap.

A run killed by SIGKILL or a power cut leaves some of these; the next run into the same place
tidies them up under the lock (``recover_leftovers``): staging folders are removed, and a
``.previous`` is put back as ``<name>`` when the swap was cut between its two renames (else
removed). ``itp_pd.batch`` uses the same mechanism for its workers' folders.

The lock is re-entrant within one process (a module-level registry of held locks), so a
command can claim its output folder before any work and the library functions it calls
(``write_fit`` and the like) take the same lock again without deadlocking. It is not a lock
between threads of one process: one process writes one folder at a time.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import glob
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .errors import OutputFolderError

__all__ = ["MARKER", "OutputFolderError", "check_output_path", "check_replaceable", "claimed_output",
           "clean_leftovers", "lock_path", "output_lock", "read_marker", "recover_leftovers",
           "replaced_atomically"]

MARKER = ".itp-pd-output.json"
STAGING_INFIX = ".staging-"
PREVIOUS_SUFFIX = ".previous"
LOCK_SUFFIX = ".lock"
SHOWN = 8  # foreign files named in a refusal; the rest are counted


@dataclass
class _Held:
    fd: int
    path: Path
    inode: tuple[int, int]
    count: int = 1


_HELD: dict[str, _Held] = {}
_REGISTRY = threading.Lock()


def output_target(directory: str | Path) -> Path:
    """``directory`` as an absolute path with ``..`` and ``.`` worked out (symlinks are kept,
    so that the name replaced is the name the user gave).

    Raises:
        OutputFolderError: it names no folder that could be replaced (``/``).
    """
    target = Path(os.path.abspath(directory))
    if not target.name:
        raise OutputFolderError(f"output folder {directory} is the root folder; name a new folder, e.g. --out results")
    return target


def lock_path(directory: str | Path) -> Path:
    """The lock file of output folder ``directory``: ``.<name>.lock`` beside it."""
    target = output_target(directory)
    return target.with_name(f".{target.name}{LOCK_SUFFIX}")


def _holder_text() -> str:
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("itp-pd", "__main__.py"):  # `itp-pd …` or `python -m itp_pd.cli …`
        argv[0] = "itp-pd"
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started,
                       "command": " ".join(argv)}) + "\n"


def _alive_here(holder: dict) -> bool:
    """False only when ``holder`` names a process of this host that no longer exists."""
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except (OSError, ValueError, TypeError):
        return True
    return True


def _describe_holder(path: Path) -> str:
    """Who holds the lock file ``path``, from what it wrote there. The holder may be writing
    itself in right now (the file empty, or still naming the dead run it took over from), so
    an unreadable record or a dead process is read again for a moment."""
    for _ in range(20):
        try:
            holder = json.loads(path.read_text())
            if _alive_here(holder):
                return (f"process {holder['pid']} on {holder.get('host', '?')}, started "
                        f"{holder.get('started', '?')}: {holder.get('command', '?')}")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
        time.sleep(0.01)
    return f"a process whose details {path} does not give"


def _is_held_elsewhere(path: Path) -> bool:
    """Whether another process holds the lock file ``path`` (a probe; takes nothing)."""
    with _REGISTRY:
        if str(path) in _HELD:
            return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a lock the probe took
    return False


def _acquire(path: Path, given) -> _Held:
    """Take the lock file ``path`` of output folder ``given`` exclusively without waiting, or
    refuse naming its holder."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputFolderError(
                f"another itp-pd run is writing {given} ({_describe_holder(path)}); its lock is {path}. "
                "Wait for it to finish, or choose another --out") from None
        except BaseException:
            os.close(fd)
            raise
        # The previous holder may have removed the file between our open and our flock: then we
        # hold a lock on a name nobody else sees. Lock only what the name still points to.
        stat = os.fstat(fd)
        try:
            current = os.stat(path)
        except FileNotFoundError:
            os.close(fd)
            continue
        if (current.st_dev, current.st_ino) != (stat.st_dev, stat.st_ino):
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, _holder_text().encode())
        return _Held(fd, path, (stat.st_dev, stat.st_ino))


def _release(held: _Held) -> None:
    # Unlink before unlocking: a process waiting on the old inode then sees that the name has
    # moved on and opens the file afresh.
    with contextlib.suppress(OSError):
        current = os.stat(held.path)
        if (current.st_dev, current.st_ino) == held.inode:
            os.unlink(held.path)
    os.close(held.fd)


@contextlib.contextmanager
def output_lock(directory: str | Path) -> Iterator[Path]:
    """Hold the exclusive lock of output folder ``directory`` for the block; on first taking
    it, tidy up what killed runs left beside the folder (``recover_leftovers``).

    Re-entrant within this process: a nested ``output_lock`` of the same folder only counts.

    Yields:
        the folder as an absolute path (``output_target``).

    Raises:
        OutputFolderError: another process holds the lock (the message names it), or the folder
            that would hold ``directory`` does not exist.
    """
    target = output_target(directory)
    _check_parent(target, directory)
    path = lock_path(target)
    key = str(path)
    with _REGISTRY:
        held = _HELD.get(key)
        if held is not None:
            held.count += 1
    if held is None:
        held = _acquire(path, directory)
        try:
            recover_leftovers(target)
        except BaseException:
            _release(held)
            raise
        with _REGISTRY:
            _HELD[key] = held
    try:
        yield target
    finally:
        with _REGISTRY:
            held.count -= 1
            last = held.count == 0
            if last:
                del _HELD[key]
        if last:
            _release(held)


def _staging_folders(target: Path) -> list[Path]:
    pattern = f".{glob.escape(target.name)}{STAGING_INFIX}*"
    return sorted(target.parent.glob(pattern))


def recover_leftovers(directory: str | Path) -> None:
    """Tidy up what a killed run left beside ``directory`` (the caller holds its lock):
    remove ``.<name>.staging-*`` folders; put ``.<name>.previous`` back as ``<name>`` when
    ``<name>`` is missing (the run died between moving the old folder aside and renaming the
    new one in), else remove it (the new one was already in place)."""
    target = output_target(directory)
    for staging in _staging_folders(target):
        shutil.rmtree(staging, ignore_errors=True)
    previous = target.with_name(f".{target.name}{PREVIOUS_SUFFIX}")
    if previous.is_dir() and not previous.is_symlink():
        if not os.path.lexists(target):
            os.replace(previous, target)
        else:
            shutil.rmtree(previous, ignore_errors=True)


def clean_leftovers(directory: str | Path) -> None:
    """Tidy up beside ``directory`` if anything is left there and no live run holds its lock
    (then the leftovers are that run's own work in progress, and are left alone)."""
    target = output_target(directory)
    if not target.parent.is_dir():
        return
    leftovers = (_staging_folders(target) or target.with_name(f".{target.name}{PREVIOUS_SUFFIX}").exists()
                 or lock_path(target).exists())
    if leftovers:
        with contextlib.suppress(OutputFolderError), output_lock(target):
            pass


def _check_parent(target: Path, given) -> None:
    parent = target.parent
    if not parent.exists():
        raise OutputFolderError(
            f"the folder that would hold output folder {given}, {parent}, does not exist; itp-pd does not "
            f"create folders above its output (a typo would scatter results): create it first: mkdir -p {parent}")
    if not parent.is_dir():
        raise OutputFolderError(f"output folder {given} would be inside {parent}, which is a file, not a folder; "
                                "choose another --out")


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def check_output_path(directory: str | Path, *, inputs: Iterable[str | Path | None] = ()) -> Path:
    """Refuse an output path that could never be written safely, before any work: one whose
    parent folder does not exist, the current folder or one of its ancestors, and a folder that
    is, or contains, one of the run's ``inputs`` (``None`` entries are skipped).

    Returns:
        the folder as an absolute path (``output_target``).
    """
    target = output_target(directory)
    _check_parent(target, directory)
    cwd = Path.cwd().resolve()
    resolved = target.resolve()
    for form in {target, resolved}:
        if _inside(cwd, form):
            what = "the current folder" if form == cwd else f"a folder that contains the current folder ({cwd})"
            raise OutputFolderError(
                f"output folder {directory} is {what}; itp-pd writes a new folder and never replaces the one "
                "you are working in: name a new folder inside it, e.g. --out results")
    for given in inputs:
        if given is None:
            continue
        path = Path(os.path.abspath(given))
        for form in {target, resolved}:
            if _inside(path, form) or _inside(path.resolve(), form):
                where = "is" if path.resolve() == resolved else "contains"
                raise OutputFolderError(
                    f"output folder {directory} {where} an input of this run, {given}; replacing it would delete "
                    f"that input: choose an --out that is neither {given} nor a folder above it (a new folder "
                    "beside your inputs is fine)")
    return target


def read_marker(directory: str | Path) -> dict | None:
    """The ``.itp-pd-output.json`` record of ``directory``, or ``None`` when it has none or
    one that is not itp-pd's (not JSON, not ``written_by = "itp-pd"``, no list of files)."""
    path = Path(directory) / MARKER
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not (isinstance(record, dict) and record.get("written_by") == "itp-pd"
            and isinstance(record.get("files"), list) and all(isinstance(f, str) for f in record["files"])):
        return None
    return record


def _listing(folder: Path) -> list[str]:
    """Every file (and empty folder, as ``name/``) under ``folder``, relative, POSIX, sorted."""
    entries = []
    for root, dirs, files in os.walk(folder):
        relative = Path(root).relative_to(folder)
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            entries.append((relative / name).as_posix())
        if not dirs and not files and root != str(folder):
            entries.append(relative.as_posix() + "/")
    return sorted(entries)


def _write_marker(folder: Path) -> None:
    record = {"written_by": "itp-pd", "version": __version__,
              "written": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "files": [entry for entry in _listing(folder) if entry != MARKER]}
    (folder / MARKER).write_text(json.dumps(record, indent=1) + "\n")


def _leftover_owner(path: Path) -> str | None:
    """``x`` when ``path`` is one of this module's own leftovers beside a folder ``x``: a
    ``.x.previous`` or ``.x.staging-…`` folder, or a ``.x.lock`` file that is empty or holds a
    lock holder's record; else ``None`` (a user's file that merely looks alike stays foreign)."""
    name = path.name
    if not name.startswith(".") or path.is_symlink():
        return None
    body = name[1:]
    if path.is_dir():
        if body.endswith(PREVIOUS_SUFFIX) and len(body) > len(PREVIOUS_SUFFIX):
            return body[:-len(PREVIOUS_SUFFIX)]
        if STAGING_INFIX in body:
            return body.rsplit(STAGING_INFIX, 1)[0] or None
        return None
    if body.endswith(LOCK_SUFFIX) and len(body) > len(LOCK_SUFFIX) and path.is_file():
        try:
            text = path.read_text()
            record = json.loads(text) if text.strip() else {"pid": None}
            if isinstance(record, dict) and "pid" in record:
                return body[:-len(LOCK_SUFFIX)]
        except (OSError, ValueError):
            return None
    return None


def _not_written(folder: Path, listed: set[str], prefix: str, foreign: list[str], busy: list[str]) -> None:
    """Collect into ``foreign`` what under ``folder`` is not in its record ``listed`` (nor in
    an itp-pd output folder nested in it, nor a leftover of one), and into ``busy`` the nested
    folders a live run is writing."""
    listed_dirs = {"/".join(entry.rstrip("/").split("/")[:i]) for entry in listed
                   for i in range(1, entry.rstrip("/").count("/") + 1)}
    listed_dirs |= {entry.rstrip("/") for entry in listed if entry.endswith("/")}

    def walk(directory: Path, relative: str) -> None:
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            rel = f"{relative}{entry.name}"
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                if rel in listed_dirs:
                    walk(path, rel + "/")
                    continue
                nested = read_marker(path)
                if nested is not None:
                    _not_written(path, set(nested["files"]), f"{prefix}{rel}/", foreign, busy)
                    continue
            elif rel in listed or rel == MARKER:
                continue
            owner = _leftover_owner(path)
            if owner is not None:
                lock = directory / f".{owner}{LOCK_SUFFIX}"
                if lock.exists() and _is_held_elsewhere(lock):
                    busy.append(f"{prefix}{relative}{owner}")
                continue
            foreign.append(f"{prefix}{rel}" + ("/" if entry.is_dir(follow_symlinks=False) else ""))

    walk(folder, "")


def check_replaceable(directory: str | Path, *, inputs: Iterable[str | Path | None] = ()) -> None:
    """Refuse to replace ``directory`` unless itp-pd wrote it and it holds nothing else: it is
    a real folder (not a file, not a symbolic link) with an ``.itp-pd-output.json`` record,
    every file in it is listed there (or in the record of an itp-pd output folder nested in it),
    no live run writes inside it, and it contains none of the run's ``inputs``.

    Raises:
        OutputFolderError: naming the folder, what makes it not replaceable, and the fix.
    """
    target = check_output_path(directory, inputs=inputs)
    fix = (f"choose another --out (a new folder), or, if {directory} really is to go, move or delete it "
           "yourself")
    if target.is_symlink():
        raise OutputFolderError(f"--force refused: {directory} is a symbolic link (to {target.resolve()}), not a "
                                f"folder itp-pd wrote; {fix}")
    if not target.is_dir():
        raise OutputFolderError(f"--force refused: {directory} is a file, not an itp-pd output folder; {fix}")
    record = read_marker(target)
    if record is None:
        raise OutputFolderError(
            f"--force refused: {directory} is not an itp-pd output folder (it has no {MARKER}, the record itp-pd "
            "writes into every folder it creates), so replacing it could delete files itp-pd did not write. "
            "--force replaces only an earlier itp-pd output folder; " + fix)
    foreign, busy = [], []
    _not_written(target, set(record["files"]), "", foreign, busy)
    if busy:
        raise OutputFolderError(
            f"--force refused: another itp-pd run is writing inside {directory} (into {', '.join(busy)}); wait for "
            "it to finish, or choose another --out")
    if foreign:
        shown = ", ".join(foreign[:SHOWN]) + (f" and {len(foreign) - SHOWN} more" if len(foreign) > SHOWN else "")
        raise OutputFolderError(
            f"--force refused: {directory} holds {len(foreign)} file(s) itp-pd did not write there: {shown}; "
            f"itp-pd never deletes what it did not create: move them out of {directory}, or choose another --out")


@contextlib.contextmanager
def claimed_output(directory: str | Path, *, replace: bool, inputs: Iterable[str | Path | None] = ()) -> Iterator[Path]:
    """Claim output folder ``directory`` for a whole run, before any work: check the path
    (``check_output_path``), take its lock (``output_lock``), and refuse an existing folder
    unless ``replace`` (``--force``), and then unless it is replaceable (``check_replaceable``).

    Yields:
        the folder as an absolute path; write it with ``replaced_atomically`` inside the block.
    """
    inputs = list(inputs)
    check_output_path(directory, inputs=inputs)
    with output_lock(directory) as target:
        if os.path.lexists(target):
            if not replace:
                raise OutputFolderError(
                    f"output folder {directory} already exists; choose another --out, or add --force to replace it "
                    "(--force replaces only an earlier itp-pd output folder)")
            check_replaceable(directory, inputs=inputs)
        yield target


@contextlib.contextmanager
def replaced_atomically(directory: str | Path) -> Iterator[Path]:
    """Yield a staging folder beside ``directory``; when the block succeeds it becomes
    ``directory`` (with its ``.itp-pd-output.json`` record of the files written; an existing
    folder is moved aside, the staging folder renamed in, the old one removed). When the block
    fails or is interrupted, the staging folder is removed and ``directory`` is left as it was.

    The whole of it runs under ``output_lock(directory)``. An existing ``directory`` is
    replaced only if ``check_replaceable`` allows it (checked again at the swap, in case
    something was added meanwhile). The folder holding ``directory`` must exist: a library
    caller writing a subfolder of its own creates it first.

    Raises:
        OutputFolderError: another run holds the lock, the parent folder is missing, or the
            existing folder is not replaceable (then this run's results are discarded).
    """
    with output_lock(directory) as target:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}{STAGING_INFIX}", dir=target.parent))
        try:
            staging.chmod(0o755)  # mkdtemp makes it private; results are for the team
            yield staging
            _write_marker(staging)
            previous = None
            if os.path.lexists(target):
                check_replaceable(target)
                previous = target.with_name(f".{target.name}{PREVIOUS_SUFFIX}")
                shutil.rmtree(previous, ignore_errors=True)
                os.replace(target, previous)
            try:
                os.replace(staging, target)
            except BaseException:
                if previous is not None:
                    os.replace(previous, target)
                raise
            if previous is not None:
                shutil.rmtree(previous, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
