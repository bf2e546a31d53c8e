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


def release_memory() -> None:
    """After a sweep job: give back what the job left, so a warm worker stays near its first job's size.

    loky replaces a worker whose memory grew by 300 MB since its first job, and the new process pays the
    imports again. Pages glibc keeps after `free` go back every job (`malloc_trim`, milliseconds); a full
    garbage collection (reference cycles: 0.2-0.4 s) runs only once the worker has grown by `GROWTH_MB` since
    its last collection (or its first job), so memory the worker keeps on purpose (weights and cache entries
    kept for later jobs) doesn't make every job pay for one. Measured on 7 jobs in one process: +227 MB
    untrimmed, +114 MB trimmed; in the size study (36 jobs) the collections took 6 s of worker time while
    they ran after every job once past the threshold.
    """
    import gc

    rss = _rss_mb()
    collected = rss is None or (bool(_BASELINE_MB) and rss - _BASELINE_MB[0] > GROWTH_MB)
    if collected:
        gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        pass
    if rss is not None and (collected or not _BASELINE_MB):
        _BASELINE_MB[:] = [_rss_mb() or rss]  # the next collection waits for GROWTH_MB more


GROWTH_MB = 150


def _rss_mb() -> float | None:
    """Resident memory of this process now (Linux `/proc`), None elsewhere."""
    import os

    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None
