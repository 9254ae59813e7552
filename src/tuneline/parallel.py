"""Order-preserving chunked map over worker processes (fork), or inline for one worker."""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any


def resolve_workers(requested: int) -> int:
    return requested or os.cpu_count() or 1


@contextmanager
def chunk_mapper(
    workers: int, initializer: Callable[..., None], initargs: tuple[Any, ...]
) -> Iterator[Callable[[Callable[[Any], Any], Iterable[Any]], Iterator[Any]]]:
    """Yield ``map(fn, chunks)`` that runs in ``workers`` processes, keeping input order.

    Results are consumed in order, so any stateful decision taken on them in the parent
    is independent of the number of workers.
    """
    if workers <= 1:
        initializer(*initargs)
        yield map
        return
    pool = mp.get_context("fork").Pool(workers, initializer, initargs)
    try:
        yield lambda fn, chunks: pool.imap(fn, chunks, chunksize=1)
    finally:
        pool.close()
        pool.join()
