"""Where the feature cache keeps its entries: checksummed safetensors files, a lock per entry, a process memo.

`lookup(key, path, compute_fn, stats)` is the one entry point (`transferlab.model.features` decides what
to cache and under which key):
- Files are written atomically and carry a SHA-256 of their contents: a torn or corrupt file is discarded
  (with a warning) and recomputed, never used. An unwritable dir keeps the features in memory for this run.
- Parallel sweep jobs that need the same entry don't compute it twice: the first takes a lock file next to
  it and computes, the others wait and read its file. An entry computed in row ranges (`rows`, `chunk`) is
  filled by all of them: while the first computes its ranges from the start, each waiting one computes the
  last ones not taken yet (a lock per range, the results in `<entry>.parts/`), and the first assembles the
  entry from them. Ranges are whole batches, so every batch, and so every feature, is the one a single
  process computes.
- A sweep worker process (`infra.process.keep_between_runs`) keeps the entries it has read (up to
  `MEMO_GB`, least recently used first out) and reuses them in its next jobs while the file on disk is
  unchanged: no re-read, no re-hash. A single run keeps nothing beyond its own datasets.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from transferlab.infra.paths import atomic_write

log = logging.getLogger("transferlab.model.features")


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    corrupt: int = 0
    persisted: bool = True
    dir: str = ""
    reason: str = ""
    forwards: int = 0  # backbone (prefix) forward passes over samples, this run
    by_domain: dict[str, int] = field(default_factory=dict)  # those forwards per domain
    memo_hits: int = 0  # entries reused from this process's earlier jobs (a sweep's warm worker)
    waited_s: float = 0.0  # time spent waiting for another process computing the same entry
    helped_rows: int = 0  # rows this process computed for an entry another process was filling
    rows_from_others: int = 0  # rows of the entries this process filled that other processes computed
    prefix_groups: int | None = None  # None: whole backbone cached; k: the first k layer groups (partial)
    device: str = "cpu"  # where the frozen forwards ran (the run's own accelerator)
    keys: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "keys"}


def _checksum(features: torch.Tensor, labels: torch.Tensor) -> str:
    return hashlib.sha256(features.numpy().tobytes() + labels.numpy().tobytes()).hexdigest()


def load(path: Path, stats: CacheStats):
    """Features from `path`, or None when absent; corrupt files are deleted and reported."""
    from safetensors import safe_open

    if not path.exists():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            feats, labels = f.get_tensor("features"), f.get_tensor("labels")
        if meta.get("sha256") != _checksum(feats, labels):
            raise ValueError("checksum mismatch")
        return feats, labels
    except Exception as e:  # truncated, corrupt, or tampered
        log.warning("feature cache file %s is corrupt (%s): discarding it and recomputing", path, e)
        stats.corrupt += 1
        path.unlink(missing_ok=True)
        return None


def save(path: Path, feats: torch.Tensor, labels: torch.Tensor, stats: CacheStats) -> None:
    from safetensors.torch import save_file

    meta = {"sha256": _checksum(feats, labels)}
    try:
        atomic_write(path, lambda tmp: save_file({"features": feats, "labels": labels}, str(tmp), metadata=meta))
    except OSError as e:  # read-only or full disk: keep the in-memory features, don't persist
        if stats.persisted:
            log.warning(
                "feature cache dir %s is not writable (%s): features are kept for this run only", path.parent, e
            )
        stats.persisted = False


# Features a process keeps across its jobs (a warm sweep worker). Small on purpose: loky replaces a worker whose
# memory grew by 300 MB after its first job, and a replaced worker pays the imports again.
MEMO_GB = 0.2
_MEMO: dict[str, tuple[tuple | None, torch.Tensor, torch.Tensor]] = {}  # key -> (file stat, features, labels)


def _stat(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


def _memo_get(key: str, path: Path):
    """This process's copy of `key`, if the file behind it is unchanged since (absent stays absent)."""
    entry = _MEMO.get(key)
    if entry is None or entry[0] != _stat(path):
        _MEMO.pop(key, None)
        return None
    _MEMO[key] = _MEMO.pop(key)  # most recently used last
    return entry[1], entry[2]


def _memo_put(key: str, path: Path, feats: torch.Tensor, labels: torch.Tensor) -> None:
    from transferlab.infra.process import keeping

    if not keeping():  # a single run: its datasets hold what it needs
        return
    _MEMO[key] = (_stat(path), feats, labels)
    while _MEMO and sum(f.numel() * f.element_size() for _, f, _ in _MEMO.values()) > MEMO_GB * 1e9:
        del _MEMO[next(iter(_MEMO))]


class _EntryLock:
    """A lock file per cache entry: one process computes it, the others wait (no lock when the dir is
    read-only: each process then computes its own in-memory copy). `while_waiting` runs once before a
    waiting process blocks (helping to fill the entry)."""

    def __init__(self, path: Path, stats: CacheStats, while_waiting=None) -> None:
        self.path, self.stats, self.lock, self.while_waiting = path, stats, None, while_waiting

    def __enter__(self):
        import time

        from filelock import FileLock, Timeout

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.lock = FileLock(str(self.path) + ".lock")
            try:
                self.lock.acquire(timeout=0)
            except Timeout:
                log.info("feature cache: another process is computing %s; waiting for it", self.path.name)
                if self.while_waiting is not None:
                    self.while_waiting()
                t = time.perf_counter()
                self.lock.acquire()
                self.stats.waited_s += time.perf_counter() - t
        except OSError:
            self.lock = None
        return self

    def __exit__(self, *exc) -> None:
        if self.lock is not None:
            self.lock.release()


class _Ranges:
    """An entry of `rows` rows computed in ranges of `chunk` rows by every process that needs it at once.

    The process holding the entry's lock takes ranges from the first up; the others, while they wait, take
    them from the last down and save each to `<entry>.parts/<i>.safetensors`. A lock per range means each
    is computed once; where they meet, each stops, and the first waits for the ranges still being computed.
    A range whose computing process died is computed again by the first.
    """

    def __init__(self, path: Path, compute_rows, rows: int, chunk: int, stats: CacheStats) -> None:
        self.path, self.compute_rows, self.rows, self.chunk, self.stats = path, compute_rows, rows, chunk, stats
        self.dir = path.with_name(path.name + ".parts")
        self.n = -(-rows // chunk)
        self.held: list = []

    def _span(self, i: int) -> tuple[int, int]:
        return i * self.chunk, min(self.rows, (i + 1) * self.chunk)

    def _lock(self, i: int):
        from filelock import FileLock

        return FileLock(str(self.dir / f"{i}.lock"))

    def _part(self, i: int) -> Path:
        return self.dir / f"{i}.safetensors"

    def help(self) -> None:
        """A waiting process: compute the last ranges nobody has taken, until it meets one that is taken."""
        from filelock import Timeout

        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError:
            return
        for i in reversed(range(self.n)):
            lock = self._lock(i)
            try:
                lock.acquire(timeout=0)
            except (Timeout, OSError):
                return
            try:
                if self.path.exists():  # the entry is complete
                    return
                if self._part(i).exists():  # another waiting process computed it
                    continue
                lo, hi = self._span(i)
                save(self._part(i), *self.compute_rows(lo, hi), self.stats)
                self.stats.helped_rows += hi - lo
            finally:
                lock.release()

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The process holding the entry's lock: its ranges, then the others' (waiting for those in progress)."""
        import time

        from filelock import Timeout

        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError:  # nowhere to coordinate: compute it all here
            return self.compute_rows(0, self.rows)
        parts: dict[int, tuple] = {}

        def take(i: int) -> None:
            hit = load(self._part(i), self.stats)
            if hit is not None:
                self.stats.rows_from_others += len(hit[1])
            parts[i] = hit if hit is not None else self.compute_rows(*self._span(i))

        for i in range(self.n):
            lock = self._lock(i)
            try:
                lock.acquire(timeout=0)
            except Timeout:
                break  # a waiting process has it: the rest is theirs
            self.held.append(lock)
            take(i)
        for i in range(self.n):
            if i not in parts:
                lock, t = self._lock(i), time.perf_counter()
                lock.acquire()
                self.stats.waited_s += time.perf_counter() - t
                self.held.append(lock)
                take(i)
        return torch.cat([parts[i][0] for i in range(self.n)]), torch.cat([parts[i][1] for i in range(self.n)])

    def finish(self) -> None:
        """After the entry is saved (or failed): drop the ranges' files, release their locks."""
        import shutil

        if self.path.exists():
            shutil.rmtree(self.dir, ignore_errors=True)
        for lock in self.held:
            lock.release()
        self.held.clear()


def lookup(key: str, path: Path, compute_fn, stats: CacheStats, rows: int | None = None, chunk: int | None = None):
    """`(features, labels)` for `key`: this process's copy, the file, or computed once (and saved).

    `compute_fn()` computes the whole entry; with `rows` and `chunk`, `compute_fn(lo, hi)` computes rows
    `[lo, hi)` and the entry is filled in ranges of `chunk` rows by every process that needs it at once
    (`chunk` a multiple of the batch size: each batch is the one `compute_fn(0, rows)` would form).
    """
    hit = _memo_get(key, path)
    if hit is not None:
        stats.hits += 1
        stats.memo_hits += 1
        return hit
    hit = load(path, stats)
    if hit is None:
        ranges = _Ranges(path, compute_fn, rows, chunk, stats) if rows and chunk and rows > chunk else None
        whole = (lambda: compute_fn(0, rows)) if rows else compute_fn
        with _EntryLock(path, stats, while_waiting=ranges.help if ranges else None):
            hit = load(path, stats)  # another process may have written it while this one waited
            if hit is None:
                stats.misses += 1
                try:
                    hit = ranges.compute() if ranges else whole()
                    save(path, *hit, stats)
                finally:
                    if ranges:
                        ranges.finish()
            else:
                stats.hits += 1
    else:
        stats.hits += 1
    _memo_put(key, path, *hit)
    return hit
