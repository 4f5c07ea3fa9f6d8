"""Many independent fits (sensitivity analyses, bootstrap or simulation-study replicates,
per-site fits), one Ray task each: ``run_batch(recipe_paths, out)``.

Why it is shaped this way:

* **Idempotent folders.** Each fit goes to ``OUT/<name>-<key>/``, where the key hashes every
  input of the fit (``batch_key``). ``write_fit`` renames a complete staging folder into place,
  so a folder that exists is a finished fit: a re-run skips it, and a batch that was interrupted
  or had failures resumes by running the same command again. What a killed worker left beside
  its folder (a staging folder, a lock file) is tidied up by ``itp_pd.output_folder``, the one
  mechanism every output folder uses; a batch holds the lock of ``OUT/batch.csv`` for its whole
  run, so a second batch into the same OUT is refused at once.
* **Refuse before running.** Every recipe (and the spec it names) is checked before Ray starts,
  so a typo in recipe 37 does not surface after 36 fits.
* **Failures are rows, not crashes.** A fit that raises, or whose worker process dies, is
  reported as "failed" with its message; the other fits finish. Tasks are not retried
  (``max_retries=0``): a crash is reported, and re-running the batch is the retry.
* **Shared compilation.** Workers share a persistent XLA cache in ``OUT/.jax-cache``, so only the
  first fit of a given shape pays for compiling it (15 s → 7 s per fresh worker on a 2-core CPU
  for the two-compartment PK MAP fit).

Ray is an optional dependency (``pip install 'itp-pd[batch]'``), imported only when a batch
runs. The folder and the CSV summary are plain files: nothing of Ray is needed to read them.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import logging
import os
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .devices import check_device_choice
from .errors import ItpPdError, OutputFolderError, SpecError
from .inference.recipe import FitRecipe, file_sha256, load_recipe
from .output_folder import clean_leftovers, output_lock

STATUSES = ("done", "skipped", "failed")
SUMMARY_FILE = "batch.csv"
CACHE_FOLDER = ".jax-cache"
# The driver and workers pass only small metadata through the object store (never posteriors),
# so a small store lets a 2-CPU CI machine start Ray without reserving 30% of its memory.
LOCAL_OBJECT_STORE_BYTES = 200 * 2**20
INSTALL_HINT = "pip install 'itp-pd[batch]'"

FitFunction = Callable[[FitRecipe, Path], None]


class BatchError(ItpPdError, ValueError):
    """A batch that cannot start (no Ray, conflicting Ray options, a GPU asked of a cluster
    without one), or a fit function that did not write its folder."""


@dataclass(frozen=True)
class PlannedFit:
    """One fit of the batch, checked and placed: its recipe (device override applied), the
    path it was given as, its key and its output folder."""

    recipe_path: str
    recipe: FitRecipe
    key: str
    folder: Path


@dataclass(frozen=True)
class BatchRow:
    """The outcome of one fit. ``seconds``: the fit's time in its worker (``None`` when it was
    skipped or failed); ``error``: why it failed (empty otherwise)."""

    recipe: str
    name: str
    key: str
    status: str
    folder: str
    seconds: float | None = None
    error: str = ""


@dataclass
class BatchReport:
    """Every fit of a batch in the order given, and where the summary was written."""

    rows: list[BatchRow]
    out: Path
    summary_path: Path

    def count(self, status: str) -> int:
        return sum(row.status == status for row in self.rows)

    @property
    def failed(self) -> list[BatchRow]:
        return [row for row in self.rows if row.status == "failed"]

    def table(self) -> str:
        """A fixed-width table of the fits (status, seconds, folder, recipe) and a count line."""
        width = max([len("fit")] + [len(Path(row.folder).name) for row in self.rows])
        lines = [f"{'status':<8} {'seconds':>8}  {'fit':<{width}}  recipe"]
        for row in self.rows:
            seconds = "-" if row.seconds is None else f"{row.seconds:.1f}"
            lines.append(f"{row.status:<8} {seconds:>8}  {Path(row.folder).name:<{width}}  {row.recipe}")
        counts = ", ".join(f"{self.count(status)} {status}" for status in STATUSES)
        lines.append(f"{len(self.rows)} fit(s): {counts}; results in {self.out}/, summary {self.summary_path}")
        return "\n".join(lines)


def batch_key(recipe: FitRecipe) -> str:
    """The identity of a fit: 16 hex digits of a sha256 over the recipe file's bytes, the
    dataset's, spec's and values file's sha256 and the itp-pd version. The same inputs give
    the same key (so a finished fit is found again); any change gives a new folder.

    The batch's ``device`` override is not part of it: where a fit ran does not change what
    it estimates, so a fit done on a GPU is not repeated on a CPU."""
    if recipe.sha256 is None:
        raise BatchError(f"recipe {recipe.name!r} was not read from a file (it has no sha256); "
                         "a batch needs recipe files: write it to a TOML file and load_recipe() it")
    parts = {
        "recipe": recipe.sha256,
        "data": recipe.data_sha256,
        "spec": file_sha256(recipe.spec_path),
        "values": file_sha256(recipe.values_path) if recipe.values_path else "",
        "itp-pd": __version__,
    }
    text = "\n".join(f"{name}={value}" for name, value in parts.items())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fit_and_write(recipe: FitRecipe, folder: Path) -> None:
    """The default fit of a batch task: ``fit`` without progress bars, then ``write_fit``."""
    from .inference import fit, write_fit

    write_fit(fit(recipe, progress=False), folder)


def plan_batch(recipe_paths: Iterable[str | Path], out: str | Path, *, device: str = "auto") -> list[PlannedFit]:
    """Read and check every recipe (and its spec), give each its key and folder, drop repeats.

    Args:
        recipe_paths: fit recipe TOML files.
        out: the batch's output folder.
        device: ``"auto"`` keeps each recipe's ``device``; ``"cpu"``/``"gpu"`` replaces it.

    Raises:
        SpecError: one error listing the problems of every bad recipe, each naming its file;
            nothing has run.
    """
    from .inference import recipe_spec

    device = check_device_choice(device, "the batch's device")
    out = Path(out)
    planned, problems, messages, seen = [], [], [], set()
    paths = [str(path) for path in recipe_paths]
    if not paths:
        raise BatchError("no recipes were given; expected one or more fit recipe TOML files, "
                         "e.g. itp-pd batch recipes/*.toml")
    for path in paths:
        try:
            recipe = load_recipe(path)
            recipe_spec(recipe)  # the spec loads and the recipe's estimate names exist in it
        except SpecError as error:
            problems.extend(getattr(error, "problems", ()))
            messages.append(str(error))
            continue
        if device != "auto":
            recipe = dataclasses.replace(recipe, device=device)
        key = batch_key(recipe)
        if (recipe.name, key) in seen:  # the same fit listed twice (a repeated path or a copy)
            continue
        seen.add((recipe.name, key))
        planned.append(PlannedFit(path, recipe, key, out / f"{recipe.name}-{key}"))
    if messages:
        error = SpecError(f"batch refused before any fit ran: {len(messages)} of {len(paths)} recipe(s) "
                          "have problems; fix them and run the batch again:\n" + "\n".join(messages))
        error.problems = tuple(problems)
        raise error
    return planned


def require_ray():
    """The ``ray`` module, or a BatchError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise BatchError(f"Ray is not installed in this environment ({sys.executable}); batches run "
                         f"their fits on Ray: {INSTALL_HINT}") from None
    return ray


def _check_ray_options(address: str | None, num_cpus: int | None) -> None:
    if address is not None and num_cpus is not None:
        raise BatchError(f"num_cpus ({num_cpus}) sizes a local Ray instance, but address={address!r} "
                         "connects to a running cluster, whose size was set when it started "
                         "(ray start --num-cpus N); leave num_cpus out")


@contextlib.contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None):
    """Use Ray for the enclosed block; yields the ``ray`` module.

    Without ``address``: a Ray already initialised in this process is used as it is;
    otherwise a fresh local instance is started (``address="local"``, so a ``ray start``
    cluster on this machine or ``$RAY_ADDRESS`` is not picked up by surprise) with
    ``num_cpus`` CPUs (default: all), no dashboard and a small object store. With
    ``address`` (``"auto"``, ``"host:6379"`` or ``"ray://host:10001"``): connect to that
    cluster. Only what this call initialised is shut down (or disconnected) at the end.
    """
    ray = require_ray()
    if ray.is_initialized():
        if address is not None or num_cpus is not None:
            raise BatchError("Ray is already initialised in this process, so address/num_cpus "
                             f"(got {address!r}, {num_cpus!r}) cannot apply; leave them out to use "
                             "that Ray, or call ray.shutdown() first")
        yield ray
        return
    _check_ray_options(address, num_cpus)
    with warnings.catch_warnings():
        # Ray starts its processes by fork + exec, which JAX's at-fork warning (meant for a bare
        # fork of a multithreaded process) flags needlessly.
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
        if address is None:
            from .runtime import one_device_for_child_processes

            one_device_for_child_processes()  # one fit per core, each on one XLA device
            ray.init(address="local", num_cpus=num_cpus, object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                     include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    try:
        yield ray
    finally:
        ray.shutdown()


def _run_fit_task(recipe: FitRecipe, folder: Path, cache_dir: Path, fit_function: FitFunction | None) -> dict:
    """Body of one Ray task: the process-wide JAX settings a fit needs, the fit, its timing."""
    import jax

    from .runtime import enable_compilation_cache

    jax.config.update("jax_enable_x64", True)
    enable_compilation_cache(cache_dir)
    # Every worker of a batch runs the same programs, so even the many ~40 ms eager compiles of
    # NumPyro's set-up are worth sharing (enable_compilation_cache keeps only those over 1 s).
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    started = time.perf_counter()
    (fit_function or fit_and_write)(recipe, folder)
    if not folder.is_dir():
        raise BatchError(f"the fit function {getattr(fit_function, '__name__', fit_function)!r} returned "
                         f"without writing {folder}; it must write the fit's results there "
                         "(e.g. itp_pd.inference.write_fit(result, folder))")
    return {"seconds": time.perf_counter() - started, "host": socket.gethostname(), "pid": os.getpid()}


def _describe_failure(ray, error: Exception) -> str:
    """One message for a failed task: the fit's own exception, or what happened to its worker."""
    if isinstance(error, ray.exceptions.RayTaskError) and error.cause is not None:
        return f"{type(error.cause).__name__}: {error.cause}"
    if isinstance(error, ray.exceptions.WorkerCrashedError):
        return ("WorkerCrashedError: the worker process died while fitting (a crash, os._exit, or the "
                "out-of-memory killer); its log is in Ray's session logs (/tmp/ray/session_latest/logs)")
    return f"{type(error).__name__}: {error}"


def _wants_gpu(recipe: FitRecipe, cluster_gpus: float) -> bool:
    return recipe.device == "gpu" or (recipe.device == "auto" and cluster_gpus > 0)


def _write_summary(rows: list[BatchRow], path: Path) -> None:
    """``batch.csv``, one row per fit, replaced whole (a reader never sees half of it)."""
    staging = path.with_name(f".{path.name}.partial")
    with open(staging, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=[f.name for f in dataclasses.fields(BatchRow)])
        writer.writeheader()
        for row in rows:
            writer.writerow({**dataclasses.asdict(row), "seconds": "" if row.seconds is None else f"{row.seconds:.3f}"})
    os.replace(staging, path)


def run_batch(recipe_paths: Iterable[str | Path], out: str | Path, *, address: str | None = None,
              num_cpus: int | None = None, device: str = "auto", fit_function: FitFunction | None = None,
              progress: bool = True) -> BatchReport:
    """Fit every recipe on Ray, one task each; skip fits whose folder exists.

    Args:
        recipe_paths: fit recipe TOML files (a repeated fit, same name and key, runs once).
        out: output folder: ``OUT/<name>-<key>/`` per fit, ``OUT/batch.csv``, ``OUT/.jax-cache``.
            With a remote cluster it must be a path every node sees (a shared file system).
        address: ``None`` starts a local Ray instance (or uses one already initialised in this
            process); ``"auto"``, ``"host:6379"`` or ``"ray://host:10001"`` connects to a cluster,
            whose nodes need itp-pd installed.
        num_cpus: CPUs of the local instance (default all); fits run one per CPU.
        device: ``"auto"`` (each recipe's own ``device``), ``"cpu"`` or ``"gpu"`` for all. A fit
            reserves a GPU when its device is ``"gpu"``, or ``"auto"`` on a cluster with GPUs.
        fit_function: ``(recipe, folder) -> None`` that fits and writes ``folder`` (default
            ``fit_and_write``); Ray ships it to workers with cloudpickle.
        progress: one line per finished fit on stderr.

    Returns:
        BatchReport, also written to ``OUT/batch.csv``.

    Raises:
        SpecError: a bad recipe (nothing has run). BatchError: Ray missing, conflicting Ray
            options, or a GPU asked of a cluster without one. OutputFolderError: another batch
            is writing OUT, or the folder that would hold OUT does not exist.
    """
    require_ray()
    _check_ray_options(address, num_cpus)  # before any work, even when every fit is already done
    out = Path(out)
    planned = plan_batch(recipe_paths, out, device=device)
    if not out.parent.is_dir():
        raise OutputFolderError(f"the folder that would hold the batch's output folder {out}, {out.parent.absolute()}, "
                                f"does not exist; create it first: mkdir -p {out.parent}")
    out.mkdir(exist_ok=True)  # OUT only: a typo in --out must not create folders above it
    # The lock of OUT/batch.csv (OUT/.batch.csv.lock) for the whole batch: a second batch into OUT
    # is refused at once, naming this process, instead of both fitting and writing the summary.
    with output_lock(out / SUMMARY_FILE):
        return _run_batch(planned, out, address, num_cpus, fit_function, progress)


def _run_batch(planned: list[PlannedFit], out: Path, address, num_cpus, fit_function, progress) -> BatchReport:
    for fit in planned:
        # A killed worker's leftovers go now (under each folder's lock): a `.previous` put back
        # is a finished fit, and skipped.
        clean_leftovers(fit.folder)
    rows = {fit.folder: BatchRow(fit.recipe_path, fit.recipe.name, fit.key, "skipped", str(fit.folder))
            for fit in planned if fit.folder.is_dir()}
    to_run = [fit for fit in planned if fit.folder not in rows]
    note = (lambda message: print(message, file=sys.stderr, flush=True)) if progress else (lambda message: None)
    note(f"batch: {len(planned)} fit(s) in {out}/: {len(rows)} already done (skipped), {len(to_run)} to run")

    def write_progress(finished: dict) -> None:
        # Rewritten after every finished fit, so that batch.csv is never stale: after a kill it
        # says which fits were done and which were still pending.
        pending = {fit.folder: BatchRow(fit.recipe_path, fit.recipe.name, fit.key, "pending", str(fit.folder))
                   for fit in to_run}
        current = {**pending, **rows, **finished}
        _write_summary([current[fit.folder] for fit in planned], out / SUMMARY_FILE)

    if to_run:
        write_progress({})
        # Ray's driver prints worker-death notices on stdout; stdout is for results, so they go
        # to stderr while the batch runs.
        with contextlib.redirect_stdout(sys.stderr), ray_session(address, num_cpus=num_cpus) as ray:
            rows.update(_run_on_ray(ray, to_run, out, fit_function, note, write_progress))
    report = BatchReport([rows[fit.folder] for fit in planned], out, out / SUMMARY_FILE)
    _write_summary(report.rows, report.summary_path)
    return report


def _run_on_ray(ray, to_run: list[PlannedFit], out: Path, fit_function, note,
                on_finished=lambda rows: None) -> dict[Path, BatchRow]:
    """Submit one task per fit, collect them as they finish; rows keyed by folder.
    ``on_finished(rows)`` is called with the rows so far after each one."""
    resources = ray.cluster_resources()
    cluster_gpus = resources.get("GPU", 0)
    needs_gpu = [fit.recipe_path for fit in to_run if fit.recipe.device == "gpu"]
    if needs_gpu and cluster_gpus == 0:
        raise BatchError(f"{len(needs_gpu)} fit(s) ask for a GPU (device = gpu), e.g. {needs_gpu[0]}, but the "
                         f"Ray cluster has none (resources: {resources.get('CPU', 0):g} CPUs, 0 GPUs); "
                         "use device cpu (--device cpu), or a cluster with GPUs (--address)")
    note(f"batch: Ray has {resources.get('CPU', 0):g} CPU(s), {cluster_gpus:g} GPU(s)")
    task = ray.remote(max_retries=0)(_run_fit_task)
    # Workers get absolute paths: their working folder need not be the driver's.
    cache_dir = (out / CACHE_FOLDER).resolve()
    pending = {}
    for fit in to_run:
        gpu = _wants_gpu(fit.recipe, cluster_gpus)
        # Ray hides GPUs from tasks that reserved none; saying "cpu" keeps such fits off them
        # even if a future Ray stops hiding them.
        recipe = fit.recipe if gpu else dataclasses.replace(fit.recipe, device="cpu")
        ref = task.options(num_gpus=1 if gpu else 0).remote(recipe, fit.folder.resolve(), cache_dir, fit_function)
        pending[ref] = fit
    rows, finished = {}, 0
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                fit = pending.pop(ref)
                finished += 1
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as error:
                    clean_leftovers(fit.folder)  # a dead worker's staging folder and lock file
                    row = BatchRow(fit.recipe_path, fit.recipe.name, fit.key, "failed", str(fit.folder),
                                   error=_describe_failure(ray, error))
                    note(f"[{finished}/{len(to_run)}] failed {fit.folder.name} ({fit.recipe_path}): {row.error}")
                else:
                    row = BatchRow(fit.recipe_path, fit.recipe.name, fit.key, "done", str(fit.folder),
                                   seconds=result["seconds"])
                    note(f"[{finished}/{len(to_run)}] done   {fit.folder.name} ({result['seconds']:.1f} s)")
                rows[fit.folder] = row
                on_finished(rows)
    except BaseException:
        for ref in pending:  # interrupted: stop this batch's remaining work on a shared cluster
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        raise
    return rows
