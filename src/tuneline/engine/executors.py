"""Executors: an ordered, streaming map of a block function over worker processes or a Ray cluster.

Both take a module-level function and a list of picklable task arguments and yield the results in the order
of the arguments, whatever order the workers finish in, so a stage's driver takes its decisions in one fixed
order. The functions are idempotent (their scratch outputs are written whole, see
:mod:`tuneline.engine.blocks`), which is what makes Ray's re-run of a task whose worker died safe.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import multiprocessing as mp
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager, suppress
from itertools import chain, islice
from typing import Any, Protocol, TypeVar

from tuneline.config.schema import RayConfig, TunelineConfig
from tuneline.errors import TunelineError
from tuneline.redact import redact_text

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger("tuneline")


class EngineError(TunelineError, RuntimeError):
    """The configured engine cannot run here (Ray not installed, cluster unreachable)."""


class Executor(Protocol):
    name: str
    workers: int

    def imap(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]:
        """``fn`` over ``tasks``, results in task order."""


class LocalExecutor:
    """``workers`` forked processes (inline for one worker or one task).

    A worker that dies (the kernel's OOM killer, a signal) fails the stage at once with :class:`EngineError`
    instead of leaving it waiting for a result that never comes; what the stage wrote so far is in its
    temporary output, which the next run removes.
    """

    name = "local"

    def __init__(self, workers: int) -> None:
        self.workers = workers or os.cpu_count() or 1
        self._pool: ProcessPoolExecutor | None = None

    def imap(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]:
        """Tasks are taken from ``tasks`` as workers free up (two per worker in flight), so a generator of tasks
        is never held whole, pickled, in the pool's queue."""
        pending = iter(tasks)
        head = list(islice(pending, 2))
        if self.workers <= 1 or len(head) <= 1:
            for task in chain(head, pending):
                yield run_task(fn, task)
            return
        if self._pool is None:
            # the driver's objects so far (its imports, mostly) go to the GC's permanent generation: a collection
            # would otherwise write to every one of them and copy the pages it shares with the forked workers
            gc.freeze()
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=mp.get_context("fork"), initializer=reuse_freed_memory
            )
        window: deque[Future[R]] = deque()
        try:
            for task in chain(head, pending):
                window.append(self._pool.submit(run_task, fn, task))
                if len(window) >= 2 * self.workers:
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()
        except BrokenProcessPool:
            raise EngineError(
                f"a worker process died while running {getattr(fn, '__name__', 'a task')} (killed, or out of "
                "memory?): nothing was published; re-run, with fewer workers (clean.workers) or smaller blocks "
                "(data.block_records) if memory is short"
            ) from None
        finally:
            for future in window:
                future.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            gc.unfreeze()  # a process that runs on (tests, a notebook) gets its objects collected again


def run_task(fn: Callable[[T], R], task: T) -> R:
    """``fn(task)`` with Python's cyclic garbage collector paused.

    A block task makes and drops a few containers per record (parsed records are trees of dicts and lists,
    freed by reference counting alone), and the collector, triggered every 700 of them, walked each chunk's
    young objects again and again: 7% of the clean stage's time. What a task leaves in cycles (an exception's
    traceback) is collected once the collector runs again after it."""
    if not gc.isenabled():
        return fn(task)
    gc.disable()
    try:
        return fn(task)
    finally:
        gc.enable()


class RayExecutor:
    """Each task a Ray task (one CPU), two per CPU of the cluster in flight, results in task order.

    Plain Ray tasks, not a Ray Data pipeline per map: Ray Data's streaming executor, and results carried in its
    Arrow blocks, cost a stage on 2 CPUs about 10 s at 1M records (``benchmarks/data_prep.py``).
    ``max_retries`` is Ray's: a task whose worker process or node died is re-run; an exception raised by the
    function itself is an error of the data or the config and fails the stage at once.
    """

    name = "ray"

    def __init__(self, cfg: RayConfig) -> None:
        try:
            import ray
        except ImportError:
            raise EngineError("data.engine=ray needs Ray: pip install 'tuneline[ray]'") from None
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            address = cfg.address or os.environ.get("RAY_ADDRESS")
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address:
                kwargs["address"] = address
                log.info("ray: joining the cluster at %s", redact_text(address))
            elif cfg.num_cpus:
                kwargs["num_cpus"] = cfg.num_cpus
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError) as exc:
                raise EngineError(f"data.ray.address={address!r}: cannot join the Ray cluster ({exc})") from None
            self._started = True
        self.workers = int(ray.cluster_resources().get("CPU", 1))
        self._run = ray.remote(run_task).options(num_cpus=1, max_retries=cfg.max_retries, retry_exceptions=False)
        log.info("ray: %d CPUs in the cluster", self.workers)

    def imap(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]:
        window: deque[Any] = deque()
        try:
            for task in tasks:
                window.append(self._run.remote(fn, task))
                if len(window) >= 2 * self.workers:
                    yield self._get(window.popleft())
            while window:
                yield self._get(window.popleft())
        finally:
            for ref in window:
                with suppress(Exception):
                    self._ray.cancel(ref)

    def _get(self, ref: Any) -> Any:
        from ray.exceptions import RayTaskError, WorkerCrashedError

        try:
            return self._ray.get(ref)
        except RayTaskError as exc:  # the function raised: its own error, not Ray's wrapping of it
            if isinstance(exc.cause, TunelineError):
                raise exc.cause from None
            raise
        except WorkerCrashedError:
            raise EngineError(
                "a Ray worker died more often than data.ray.max_retries allows (killed, or out of memory?): "
                "nothing was published; re-run, with smaller blocks (data.block_records) if memory is short"
            ) from None

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()


def release_freed_memory() -> None:
    """Hand the heap's freed pages back to the OS (glibc's ``malloc_trim``; elsewhere nothing).

    A driver's large, short-lived arrays (the pairs of a dedup step) come from the heap, whose top glibc keeps
    after they are freed: the process would stay as large as its largest step, and larger with the corpus."""
    with suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_MIB = 1 << 20


def reuse_freed_memory() -> None:
    """Let glibc keep freed heap memory for the next block instead of handing it back at once (elsewhere nothing).

    A stage allocates and frees a block's worth of records over and over. By default glibc returns the heap's
    top whenever 128 KiB of it are free and maps every buffer over 128 KiB afresh, and each page of either
    faults in again on its next use: ingesting 1M records took ~600k page faults and 3 s of system time on two
    cores, 0.7 s of its wall time (``benchmarks/data_prep.py``). Local workers run with it (the pool's
    initializer), the driver does not. The few large tasks of the dedup steps hand their memory back when they
    end (:func:`release_freed_memory`): kept, a worker's largest bucket stayed with it, and the stage's peak grew
    with the corpus (clean at 1M / 2M: 298 / 320 MiB)."""
    with suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 32 * _MIB)  # glibc's largest: a block's buffers come from the heap
        libc.mallopt(_M_TRIM_THRESHOLD, 128 * _MIB)  # 64 MiB let ingest fault 390k pages again; 256 kept more
        libc.mallopt(_M_TOP_PAD, 32 * _MIB)


@contextmanager
def executor_for(config: TunelineConfig, workers: int | None = None) -> Iterator[Executor]:
    """The executor ``data.engine`` names; ``workers`` (local only) defaults to ``clean.workers``."""
    ex: LocalExecutor | RayExecutor
    if config.data.engine == "ray":
        ex = RayExecutor(config.data.ray)
    else:
        ex = LocalExecutor(config.clean.workers if workers is None else workers)
    try:
        yield ex
    finally:
        ex.close()
