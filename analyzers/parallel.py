"""Fields measured in parallel processes.

Segmentation is most of a plate's analysis (tens of milliseconds a field, hundreds of fields a
plate) and every field is independent, so a plate's fields are spread over worker processes
(threads would not help: the numpy/scipy/scikit-image calls hold the GIL much of the time).
The pool is made on first use and kept for the life of the process, so a campaign pays the
workers' start-up (importing scikit-image) once. Small plates — tests, tiny dry-runs — are
measured in the calling process: for them the pool would cost more than it saves.

``CELLPILOT_ANALYSIS_WORKERS`` sets the number of workers (1 turns the pool off); the default
is the number of CPUs this process may use, at most 8.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

__all__ = ["MIN_PARALLEL_PIXELS", "analysis_workers", "map_fields", "map_with_kwargs"]

T = TypeVar("T")
R = TypeVar("R")

# A plate below this many pixels (all fields, all channels) is measured in-process; about 100
# fields of 2 x 256 x 256: where a pool of two already pays for itself.
MIN_PARALLEL_PIXELS = 12_000_000

_pool: ProcessPoolExecutor | None = None
_pool_workers = 0


def analysis_workers() -> int:
    """Worker processes for field measurement (``CELLPILOT_ANALYSIS_WORKERS``, else the CPUs)."""
    env = os.environ.get("CELLPILOT_ANALYSIS_WORKERS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ValueError(
                f"CELLPILOT_ANALYSIS_WORKERS must be a whole number, not {env!r}"
            ) from None
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return min(n, 8)


def _get_pool(workers: int) -> ProcessPoolExecutor:
    global _pool, _pool_workers
    if _pool is None or _pool_workers != workers:
        if _pool is not None:
            _pool.shutdown(cancel_futures=True)
        # spawn, not fork: the caller may hold torch's threads and open database connections
        _pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_one_thread_each,
        )
        _pool_workers = workers
    return _pool


def _one_thread_each() -> None:
    """A worker's numerical libraries (torch for the learned segmenter) use one thread: the
    pool already spreads fields over the CPUs, and a thread pool per worker would
    oversubscribe them. Set before torch is imported (it is, lazily, by the first field)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"


@atexit.register
def _discard_pool() -> None:
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=False, cancel_futures=True)
    _pool = None


def map_fields(fn: Callable[[T], R], items: Sequence[T], pixels: int) -> list[R]:
    """``[fn(x) for x in items]``, in worker processes when the work is large enough.

    Args:
        fn: a module-level function (it is pickled to the workers).
        items: its arguments, one per field (picklable).
        pixels: the total pixel count of the fields, which decides whether a pool pays.
    """
    workers = analysis_workers()
    if workers < 2 or len(items) < 2 * workers or pixels < MIN_PARALLEL_PIXELS:
        return [fn(x) for x in items]
    chunk = max(1, len(items) // (workers * 4))
    try:
        return list(_get_pool(workers).map(fn, items, chunksize=chunk))
    except BrokenProcessPool:  # a worker was killed: measure here rather than lose the plate
        _discard_pool()
        return [fn(x) for x in items]


def _apply(args: tuple[Callable[..., Any], Any, dict[str, Any]]) -> Any:
    fn, x, kwargs = args
    return fn(x, **kwargs)


def map_with_kwargs(
    fn: Callable[..., R], items: Sequence[tuple[Any, dict[str, Any]]], pixels: int
) -> list[R]:
    """:func:`map_fields` for ``fn(x, **kwargs)`` over ``(x, kwargs)`` pairs."""
    return map_fields(_apply, [(fn, x, kw) for x, kw in items], pixels)
