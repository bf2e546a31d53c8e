"""Warm sweep workers: a worker process runs many jobs (imports, cached features reused) with the same results as
a job run alone; parallel jobs needing the same feature-cache entry compute it once."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import FAST, ROOT, train_cli

from transferlab.model.feature_store import CacheStats, lookup


@pytest.mark.slow
def test_a_job_gives_the_same_metrics_alone_and_in_a_warm_worker(tmp_path: Path):
    env = {"TRANSFERLAB_CACHE": str(tmp_path / "cache")}  # (not an override: it would name the job dirs)
    common = [*FAST, "strategy=partial", "logger=none", "callbacks.checkpoint=null"]
    sweep = tmp_path / "sweep"
    swept = train_cli(
        [
            "-m",
            "hydra/launcher=local",
            "hydra.launcher.n_jobs=1",  # one worker: seed=1 runs in the process that ran seed=0
            f"hydra.sweep.dir={sweep}",
            "hydra.sweep.subdir=${hydra.job.override_dirname}",
            *common,
            "seed=0,1",
        ],
        timeout=400,
        env=env,
    )
    assert swept.returncode == 0, swept.stderr[-3000:]
    jobs = {f"seed={r['seed']}": r for r in (json.loads(p.read_text()) for p in sweep.glob("*/results.json"))}
    assert set(jobs) == {"seed=0", "seed=1"}
    assert jobs["seed=0"]["pid"] == jobs["seed=1"]["pid"]  # the same worker process: imports paid once
    assert jobs["seed=1"]["feature_cache"]["memo_hits"] == 1  # the prefix outputs kept from seed=0, not re-read
    alone = train_cli([*common, "seed=1", f"hydra.run.dir={tmp_path / 'alone'}"], timeout=300, env=env)
    assert alone.returncode == 0, alone.stderr[-3000:]
    single = json.loads((tmp_path / "alone" / "results.json").read_text())
    assert single["pid"] != jobs["seed=1"]["pid"] and single["feature_cache"]["memo_hits"] == 0
    assert single["metrics"] == pytest.approx(jobs["seed=1"]["metrics"], abs=1e-6)


WORKER = textwrap.dedent(
    """
    import sys, time, torch
    from pathlib import Path
    from transferlab.model.feature_store import CacheStats, lookup

    path, log = Path(sys.argv[1]), Path(sys.argv[2])

    def compute():
        with log.open("a") as f:
            f.write("computed\\n")
        time.sleep(2.0)
        return torch.arange(6.0).reshape(3, 2), torch.tensor([0, 1, 2])

    stats = CacheStats()
    feats, labels = lookup("k", path, compute, stats)
    print(stats.misses, stats.hits, round(stats.waited_s, 1), float(feats.sum()))
    """
)


def test_parallel_jobs_compute_a_cache_entry_once(tmp_path: Path):
    path, log = tmp_path / "cache" / "k.safetensors", tmp_path / "computed.log"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(path), str(log)], stdout=subprocess.PIPE, text=True, cwd=ROOT
        )
        for _ in range(2)
    ]
    outs = sorted(p.communicate(timeout=120)[0].split() for p in procs)
    assert all(p.returncode == 0 for p in procs)
    assert log.read_text().count("computed") == 1  # the other process waited for the file
    (m1, h1, _, s1), (m2, h2, _, s2) = outs
    assert {(m1, h1), (m2, h2)} == {("0", "1"), ("1", "0")} and s1 == s2 == "15.0"


RANGES_WORKER = textwrap.dedent(
    """
    import os, sys, time, torch
    from pathlib import Path
    from transferlab.model.feature_store import CacheStats, lookup

    path, log, first = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "first"
    parts = path.with_name(path.name + ".parts")

    def rows(lo, hi):
        with log.open("a") as f:
            f.write(f"{sys.argv[3]} {lo} {hi}\\n")
        if first and lo == 0:  # the first range waits until the other process has computed one of the last
            end = time.time() + 120
            while not list(parts.glob("*.safetensors")) and time.time() < end:
                time.sleep(0.05)
        x = torch.arange(lo, hi, dtype=torch.float32)
        return torch.stack([x, 2 * x], 1), torch.arange(lo, hi) % 3

    stats = CacheStats()
    feats, labels = lookup("k", path, rows, stats, rows=10, chunk=2)
    print(stats.misses, stats.hits, stats.helped_rows, stats.rows_from_others, float(feats.sum()), labels.tolist())
    """
)


def test_parallel_jobs_fill_an_entry_in_ranges_each_computed_once(tmp_path: Path):
    path, log = tmp_path / "cache" / "k.safetensors", tmp_path / "computed.log"
    started = tmp_path / "cache" / "k.safetensors.lock"
    first = subprocess.Popen(
        [sys.executable, "-c", RANGES_WORKER, str(path), str(log), "first"], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    end = time.time() + 120
    while not (log.exists() and started.exists()) and time.time() < end:  # the first holds the entry's lock
        time.sleep(0.05)
    second = subprocess.Popen(
        [sys.executable, "-c", RANGES_WORKER, str(path), str(log), "second"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    (out1, _), (out2, _) = first.communicate(timeout=180), second.communicate(timeout=180)
    assert first.returncode == 0 and second.returncode == 0
    done = [line.split() for line in log.read_text().splitlines()]
    spans = sorted((int(lo), int(hi)) for _, lo, hi in done)
    assert spans == [(i, i + 2) for i in range(0, 10, 2)]  # each range computed once, by one of them
    by_second = sum(int(hi) - int(lo) for who, lo, hi in done if who == "second")
    m1, h1, helped1, others1, *rest1 = out1.strip().split(maxsplit=4)
    m2, h2, helped2, others2, *rest2 = out2.strip().split(maxsplit=4)
    assert (m1, h1, m2, h2) == ("1", "0", "0", "1") and by_second >= 2  # the waiting one computed the last range(s)
    assert int(helped2) == int(others1) == by_second and int(helped1) == int(others2) == 0
    expected = f"{3 * sum(range(10)):.1f} {[i % 3 for i in range(10)]}"
    assert rest1 == rest2 == [expected]  # both read the same entry, in row order
    assert not path.with_name("k.safetensors.parts").exists()  # the ranges' files are gone once it is saved


def test_a_process_reuses_its_entries_until_the_file_changes(tmp_path: Path, monkeypatch):
    from transferlab.infra import process

    monkeypatch.setattr(process, "_KEEP", [True])  # as in a sweep worker
    path = tmp_path / "k.safetensors"
    calls = []

    def compute():
        calls.append(1)
        return torch.ones(4, 2), torch.zeros(4, dtype=torch.long)

    import torch

    first, second = CacheStats(), CacheStats()
    lookup("key-a", path, compute, first)
    lookup("key-a", path, compute, second)
    assert (first.misses, second.memo_hits, len(calls)) == (1, 1, 1)
    path.write_bytes(path.read_bytes()[:-10])  # the file changed on disk: the process's copy is dropped
    third = CacheStats()
    lookup("key-a", path, compute, third)
    assert third.memo_hits == 0 and third.corrupt == 1 and len(calls) == 2
    monkeypatch.setattr(process, "_KEEP", [False])  # a single run keeps nothing for later runs
    fourth, fifth = CacheStats(), CacheStats()
    lookup("key-b", tmp_path / "b.safetensors", compute, fourth)
    lookup("key-b", tmp_path / "b.safetensors", compute, fifth)
    assert fifth.memo_hits == 0 and fifth.hits == 1


RELEASE = textwrap.dedent(
    """
    import gc
    from transferlab.infra import process

    sizes = iter([1000.0, 1000.0, 1100.0, 1180.0, 1190.0, 1200.0, 1400.0, 1200.0])  # MB, read after each trim
    process._rss_mb = lambda: next(sizes)
    trims = []
    process._trim = lambda: trims.append(1)
    collections = []
    gc.callbacks.append(lambda phase, info: phase == "start" and info["generation"] == 2 and collections.append(1))
    done = []
    for job in range(5):
        before = len(collections)
        process.release_memory()
        done.append(len(collections) - before)
    print(done, gc.get_freeze_count() > 0, len(trims))
    """
)


def test_a_warm_worker_collects_after_its_first_job_and_then_only_on_growth():
    """release_memory: job 1 collects and freezes the survivors (imports, kept weights: later collections
    skip them); later jobs collect only once the size *after* trimming freed pages has grown more than
    GROWTH_MB (150) past the size after the last collection."""
    out = subprocess.run([sys.executable, "-c", RELEASE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    # sizes read: job1 1000 (first: collect) -> 1000 after; job2 1100; job3 1180 > 1150 -> collect -> 1190;
    # job4 1200 (< 1190 + 150); job5 1400 -> collect -> 1200
    assert out.stdout.split() == ["[1,", "0,", "1,", "0,", "1]", "True", "8"]
