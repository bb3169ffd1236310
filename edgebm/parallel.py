"""Execution backends for independent tasks: serial (default), local processes, or Ray tasks (``edgebm[ray]``).

An :class:`Executor` runs ``fn(item)`` for every item and returns the results **in input order**, whatever order the
tasks finish in, so a caller's output does not depend on the backend. Every task runs under the same thread limit
(``threads`` torch / BLAS / OpenMP threads, 1 by default) in every backend: torch's float reductions depend on the
thread count, so this is what makes a serial run and a Ray run of the same seeds give the same numbers.

- :class:`SerialExecutor`: the calling process, one task after the other (what every command does without a flag).
- :class:`ProcessExecutor`: a ``concurrent.futures`` process pool on this machine (``--workers N``), spawned
  workers with the thread limit set before torch loads.
- :class:`RayExecutor`: one Ray task per item with a per-task request of CPUs (and GPUs, where the task can use
  them): ``--ray local`` starts a Ray runtime on this machine, ``--ray ADDRESS`` (``HOST:PORT``, ``ray://HOST:PORT``
  or ``auto``) joins a running cluster whose nodes have the same edgebm and Ray versions installed.

Ray is imported only inside :class:`RayExecutor`: without ``--ray`` nothing imports it (a test asserts this).
:func:`add_ray_argument` / :func:`parse_ray_address` are the one definition of the ``--ray`` option, shared by the
``edgebm`` command and ``python -m bench``.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import re
import sys
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Iterable, Iterator, TypeVar

from .errors import ConfigError

__all__ = ["Resources", "Executor", "SerialExecutor", "ProcessExecutor", "RayExecutor", "make_executor",
           "parse_ray_address", "add_ray_argument", "ray_available", "reading_object_store", "RAY_LOCAL", "RAY_INSTALL_HINT"]

T = TypeVar("T")
R = TypeVar("R")

#: ``--ray local``: start a Ray runtime on this machine for the duration of the command
RAY_LOCAL = "local"
RAY_INSTALL_HINT = "install the extra: pip install 'edgebm[ray]'"
_ADDRESS_RE = re.compile(r"^(ray://)?[A-Za-z0-9_.\-\[\]:]+:[0-9]{1,5}$")
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
#: times Ray re-runs a task whose worker or node died (not one that raised: that error is the caller's)
TASK_RETRIES = 2


@dataclass(frozen=True)
class Resources:
    """What one task asks the scheduler for: ``cpus`` logical CPUs and ``gpus`` GPUs (fractions allowed). Only Ray
    schedules by them; serial and process backends run one task per worker. ``gpus`` is asked for only when the
    cluster has GPUs (:meth:`RayExecutor.gpus_available`), so the same call works on CPU-only and GPU nodes."""

    cpus: float = 1.0
    gpus: float = 0.0

    def __post_init__(self) -> None:
        for name in ("cpus", "gpus"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0 or v != v:
                raise ConfigError(f"resources.{name}", f"{v!r} is invalid", "a number >= 0")
        if self.cpus <= 0:
            raise ConfigError("resources.cpus", f"{self.cpus!r} is invalid", "a number > 0")


# --------------------------------------------------------------------------------------------- --ray option
def parse_ray_address(text: str) -> str:
    """Check a ``--ray`` value: ``local``, ``auto`` or a cluster address ``HOST:PORT`` / ``ray://HOST:PORT``.
    Raises :class:`ConfigError` naming ``--ray``."""
    t = str(text).strip()
    if t in (RAY_LOCAL, "auto") or _ADDRESS_RE.match(t):
        return t
    raise ConfigError("--ray", f"{text!r} is not a Ray address",
                      "give 'local' (start Ray on this machine), 'auto' (the cluster this node belongs to) or "
                      "HOST:PORT / ray://HOST:PORT of a running cluster's head node")


def _ray_type(text: str) -> str:
    try:
        return parse_ray_address(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(f"{e.problem}; {e.fix}") from None


def add_ray_argument(parser: argparse.ArgumentParser, what: str = "the tasks") -> None:
    """Add ``--ray [local|ADDRESS]`` to ``parser`` (``args.ray``: None without the flag, ``"local"`` for a bare
    ``--ray``)."""
    parser.add_argument("--ray", nargs="?", const=RAY_LOCAL, default=None, type=_ray_type, metavar="local|ADDRESS",
                        help=f"run {what} as Ray tasks: 'local' (the default when no value is given) starts Ray on this "
                             "machine, HOST:PORT, ray://HOST:PORT or 'auto' joins a running cluster "
                             "(extra: edgebm[ray])")


def ray_available() -> bool:
    """True when Ray can be imported (checked without importing it)."""
    import importlib.util

    if "ray" in sys.modules:        # imported already, or blocked (sys.modules["ray"] = None)
        return sys.modules["ray"] is not None
    return importlib.util.find_spec("ray") is not None


# --------------------------------------------------------------------------------------------- thread limit
@contextmanager
def thread_limit(threads: int) -> Iterator[None]:
    """Run the body with ``threads`` torch intra-op / BLAS / OpenMP threads, then restore the previous setting.

    Sets the environment variables (read by torch and BLAS when they load in a fresh worker) and, for libraries
    already loaded, torch's intra-op threads and the BLAS / OpenMP pools (threadpoolctl)."""
    from threadpoolctl import threadpool_limits

    old_env = {v: os.environ.get(v) for v in _THREAD_VARS}
    for v in _THREAD_VARS:
        os.environ[v] = str(threads)
    torch = sys.modules.get("torch")
    old_torch = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        if torch is not None and old_torch is not None:   # (torch loaded by the body keeps the limit it loaded with)
            torch.set_num_threads(old_torch)
        for v, old in old_env.items():
            if old is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = old


@contextmanager
def reading_object_store() -> Iterator[None]:
    """Silence torch's warning about wrapping a read-only numpy array: arrays a Ray task gets from the object store
    are read-only, and the code that wraps them (training, pruning) only reads them."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        yield


def _limited_call(fn: Callable[[T], R], threads: int, item: T) -> R:
    """``fn(item)`` under :func:`thread_limit` (what every backend runs per task)."""
    with thread_limit(threads):
        return fn(item)


def _check_threads(threads: Any) -> int:
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError("threads", f"{threads!r} is invalid", "an integer >= 1 (threads per task)")
    return threads


# --------------------------------------------------------------------------------------------- executors
class Executor:
    """Runs independent tasks; :meth:`map` / :meth:`imap` return results in input order. Use as a context manager
    (or call :meth:`close`) so workers and a local Ray runtime are shut down."""

    #: short name of the backend (serial, processes, ray)
    name = "executor"

    def __init__(self, threads: int = 1) -> None:
        self.threads = _check_threads(threads)

    @property
    def slots(self) -> int:
        """How many tasks run at once (for logs and for sizing work)."""
        return 1

    def imap(self, fn: Callable[[T], R], items: Iterable[T], resources: Resources | None = None) -> Iterator[R]:
        """Yield ``fn(item)`` for every item, in input order, as soon as each result (and all before it) is there."""
        raise NotImplementedError

    def map(self, fn: Callable[[T], R], items: Iterable[T], resources: Resources | None = None) -> list[R]:
        """``[fn(item) for item in items]``, run on this backend; results in input order."""
        return list(self.imap(fn, items, resources))

    def describe(self) -> str:
        """One line for logs and result headers: backend, parallel slots, threads per task."""
        return f"{self.name}, {self.slots} task(s) at a time x {self.threads} thread(s)"

    def close(self) -> None:
        """Release workers (idempotent)."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class SerialExecutor(Executor):
    """One task after the other in the calling process (the default everywhere)."""

    name = "serial"

    def imap(self, fn, items, resources=None):
        for item in items:
            yield _limited_call(fn, self.threads, item)


def _worker_init(threads: int) -> None:
    for v in _THREAD_VARS:   # before torch / BLAS load in this fresh (spawned) worker
        os.environ[v] = str(threads)


class ProcessExecutor(Executor):
    """A pool of ``workers`` spawned processes on this machine (``concurrent.futures``), ``threads`` each. Spawned,
    not forked: a forked child of a process that already ran torch or OpenMP threads can deadlock."""

    name = "processes"

    def __init__(self, workers: int, threads: int = 1) -> None:
        super().__init__(threads)
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError("--workers", f"{workers!r} is invalid", "an integer >= 1")
        import multiprocessing as mp

        self.workers = workers
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                         initializer=_worker_init, initargs=(self.threads,))

    @property
    def slots(self) -> int:
        return self.workers

    def imap(self, fn, items, resources=None):
        call = partial(_limited_call, fn, self.threads)
        pending: collections.deque[Future] = collections.deque()
        it = iter(items)
        window = 2 * self.workers          # bounded look-ahead: finished results do not pile up in memory
        try:
            for item in it:
                pending.append(self._pool.submit(call, item))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor(Executor):
    """Ray tasks, one per item, each asking for ``resources`` (default 1 CPU). ``address``: ``"local"`` starts a
    Ray runtime on this machine (stopped by :meth:`close`); ``"auto"``, ``HOST:PORT`` or ``ray://HOST:PORT``
    joins a running cluster (the nodes need this edgebm version installed: checked once, at start). When Ray is
    already initialised in this process (a caller's own ``ray.init``), that runtime is used and left running.
    ``num_cpus`` caps the CPUs of a local runtime (default: all of this machine's).

    Results come back in input order; at most ``4 x cluster CPUs`` tasks are in flight, so results that finish
    early do not pile up in the object store. A task's exception is raised here as the original exception
    (an :class:`~edgebm.errors.EdgebmError` stays one line in the CLI); the tasks still running are cancelled.
    """

    name = "ray"

    def __init__(self, address: str = RAY_LOCAL, threads: int = 1, num_cpus: int | None = None) -> None:
        super().__init__(threads)
        address = parse_ray_address(address)
        try:
            import ray
        except ImportError:
            raise ConfigError("--ray", "Ray is not installed", RAY_INSTALL_HINT) from None
        self._ray = ray
        self.address = address
        self._owns_runtime = False
        if not ray.is_initialized():
            kw: dict[str, Any] = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=True)
            if address not in (RAY_LOCAL, "auto"):
                _check_reachable(address)    # ray.init retries an unreachable address for minutes
            try:
                if address == RAY_LOCAL:
                    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")   # no telemetry unless the user opted in
                    # Ray turns token authentication on for a new local runtime and says so in a warning: keep it on,
                    # quietly
                    quiet = logging.getLogger("ray._private.authentication.authentication_token_setup")
                    level = quiet.level
                    quiet.setLevel(logging.ERROR)
                    try:
                        ray.init(num_cpus=num_cpus, **kw)
                    finally:
                        quiet.setLevel(level)
                else:
                    ray.init(address=address, **kw)
            except Exception as e:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError...
                msg = " ".join(str(e).split())[:300]
                raise ConfigError("--ray", f"could not {'start' if address == RAY_LOCAL else 'join'} Ray at "
                                  f"{address!r}: {type(e).__name__}: {msg}",
                                  "check the address (ray status on the head node) and that this Ray version "
                                  f"({ray.__version__}) matches the cluster's") from None
            self._owns_runtime = True
        res = ray.cluster_resources()
        self._cpus = int(res.get("CPU", 1))
        self._gpus = float(res.get("GPU", 0.0))
        self._check_workers()

    def _check_workers(self) -> None:
        """One task that imports edgebm on a worker: a cluster without edgebm (or another version) fails here with
        one line instead of in the middle of the work."""
        from . import __version__

        probe = self._ray.remote(num_cpus=0)(_edgebm_version)
        try:
            theirs = self._ray.get(probe.remote(), timeout=300)
        except Exception as e:  # noqa: BLE001
            self.close()
            raise ConfigError("--ray", f"a Ray worker at {self.address!r} cannot run edgebm: "
                              f"{type(e).__name__}: {' '.join(str(e).split())[:200]}",
                              f"install edgebm {__version__} (and its dependencies) on every node") from None
        if theirs != __version__:
            self.close()
            raise ConfigError("--ray", f"the Ray workers run edgebm {theirs}, this process {__version__}",
                              f"install edgebm {__version__} on every node")

    @property
    def slots(self) -> int:
        return max(1, self._cpus)

    @property
    def gpus_available(self) -> float:
        """GPUs in the cluster (0 on CPU-only nodes)."""
        return self._gpus

    def options(self, resources: Resources | None) -> dict[str, Any]:
        """The ``.options(...)`` of one task: CPUs as asked (but no more than the cluster has), GPUs only when the
        cluster has them."""
        r = resources or Resources(cpus=self.threads)
        # tasks are pure functions of their item: one that a dying worker or node took down is safely run again
        opts: dict[str, Any] = {"num_cpus": min(float(r.cpus), float(self._cpus)), "max_retries": TASK_RETRIES}
        if r.gpus > 0 and self._gpus > 0:
            opts["num_gpus"] = min(float(r.gpus), self._gpus)
        return opts

    def imap(self, fn, items, resources=None):
        ray = self._ray
        task = ray.remote(_limited_call).options(**self.options(resources))
        pending: collections.deque[Any] = collections.deque()
        window = 4 * self.slots
        fn_ref = ray.put(fn)       # shipped once, not once per task
        try:
            for item in items:
                pending.append(task.remote(fn_ref, self.threads, item))
                if len(pending) >= window:
                    yield self._get(pending.popleft())
            while pending:
                yield self._get(pending.popleft())
        finally:
            for ref in pending:
                try:
                    # not force=True: that kills the worker process, and Ray can hand the dying worker a task of
                    # the next map (seen here as a WorkerCrashedError); a plain cancel interrupts the task only
                    ray.cancel(ref)
                except Exception:  # noqa: BLE001 - already finished or gone
                    pass

    def _get(self, ref: Any) -> Any:
        from ray.exceptions import RayTaskError

        try:
            return self._ray.get(ref)
        except RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, BaseException):
                raise cause from None
            raise

    def describe(self) -> str:
        where = "local Ray runtime" if self.address == RAY_LOCAL else f"Ray cluster {self.address}"
        gpu = f", {self._gpus:g} GPU(s)" if self._gpus else ""
        return f"ray ({where}: {self._cpus} CPU(s){gpu}), 1 task per CPU x {self.threads} thread(s)"

    def close(self) -> None:
        if self._owns_runtime and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns_runtime = False


def _check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """Open (and close) a TCP connection to a cluster address ``[ray://]HOST:PORT``; :class:`ConfigError` naming
    ``--ray`` when nothing answers within ``timeout_s`` seconds."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as e:
        raise ConfigError("--ray", f"could not join Ray at {address!r}: nothing answers at {host}:{port} "
                          f"({e.strerror or type(e).__name__})",
                          "start the cluster (ray start --head on the head node) or give its HOST:PORT") from None


def _edgebm_version() -> str:
    from . import __version__

    return __version__


def make_executor(ray: str | None = None, workers: int = 1, threads: int = 1, num_cpus: int | None = None) -> Executor:
    """The executor for the command-line options: ``ray`` (the ``--ray`` value, None without the flag) wins,
    else ``workers`` > 1 gives a local process pool, else serial. ``--ray`` and ``--workers`` > 1 together are
    refused (Ray already runs one task per CPU)."""
    if ray is not None:
        if workers != 1:
            raise ConfigError("--workers", f"{workers} given with --ray",
                              "drop --workers: with --ray every CPU of the Ray runtime runs a task")
        return RayExecutor(ray, threads=threads, num_cpus=num_cpus)
    if workers > 1:
        return ProcessExecutor(workers, threads=threads)
    return SerialExecutor(threads=threads)

