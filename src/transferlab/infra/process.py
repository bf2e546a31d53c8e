"""What a process keeps between the runs it executes, and what it gives back (a sweep's warm worker).

A local sweep (`hydra/launcher=local`, loky) runs many jobs in each worker process. `keep_between_runs()`
(called for sweep jobs) lets the backbone weights file and the feature-cache entries a job read serve the
worker's next jobs; a single run keeps nothing beyond itself. `release_memory()` after each sweep job keeps the
worker near its first job's size.
"""

from __future__ import annotations

_KEEP = [False]


def keep_between_runs(on: bool = True) -> None:
    """This process may run further jobs: loaded weights and cache entries are worth keeping."""
    _KEEP[0] = on


def keeping() -> bool:
    return _KEEP[0]


_BASELINE_MB: list[float] = []  # this worker's memory after its first job, then after its last full collection
GROWTH_MB = 150


def release_memory() -> None:
    """After a sweep job: give back what the job left, so a warm worker stays near its first job's size.

    loky replaces a worker whose memory grew by 300 MB since its first job, and the new process pays the
    imports again. Pages glibc keeps after `free` go back every job (`malloc_trim`, milliseconds), *before*
    the size is read: freed-but-kept pages are not growth. A full garbage collection (reference cycles) runs
    after the first job and then only once the worker has grown by `GROWTH_MB` since its last one. After the
    first job's collection the survivors (modules, the weights and cache entries kept for later jobs) are
    frozen (`gc.freeze`): no later collection, ours or Python's own, scans them again. Measured on 12 small
    jobs in one process: a collection after every job, 0.8 s each, when the size was read before trimming;
    the size study (36 jobs) spent 20 worker-seconds between jobs (BENCHMARKS.md P6).
    """
    import gc

    _trim()
    rss = _rss_mb()
    first = not _BASELINE_MB
    if not (first or rss is None or rss - _BASELINE_MB[0] > GROWTH_MB):
        return
    gc.collect()
    if first:  # what is alive now is the worker's own (imports, kept weights): never scanned again
        gc.freeze()
    _trim()
    rss = _rss_mb()
    if rss is not None:
        _BASELINE_MB[:] = [rss]  # the next collection waits for GROWTH_MB more


def _trim() -> None:
    """Hand glibc's free pages back to the system (`malloc_trim`); nothing to do elsewhere."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl)
        pass


def _rss_mb() -> float | None:
    """Resident memory of this process now (Linux `/proc`), None elsewhere."""
    import os

    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None
