"""Scale-out: submitit jobs (the SLURM code path, run locally) and the Optuna journal search (transferlab.search)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FAST, ROOT, train_cli

from transferlab.errors import ConfigError

TINY = [*FAST, "logger=none", "callbacks.checkpoint=null", "data.train_per_class=2"]
# optuna_partial at a tiny budget: 2 steps, 2 images per class, one val/test batch
SEARCH_TINY = [
    "grid.small.steps=2",
    "grid.small.per_class=2",
    "logger=none",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
]


def test_submitit_local_launcher_composes():
    proc = train_cli(["hydra/launcher=local_submitit", "--cfg", "hydra", "--resolve"], timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # one torch thread per job: the launcher's cpus_per_task (1)
    assert "submitit_launcher.LocalLauncher" in proc.stdout and "OMP_NUM_THREADS: '1'" in proc.stdout


@pytest.mark.parametrize("study", sorted(p.stem for p in (ROOT / "sweeps").glob("*.yaml")))
def test_every_study_file_composes_with_the_submitit_launchers(study):
    """The README's "laptop -> cluster is one override on the same sweep command": every study file sets
    hydra.job.env_set itself, as local_submitit does (a literal value in both failed to merge: UnsupportedValueType)."""
    for launcher in ("local_submitit", "slurm"):
        args = ["--config-dir", "sweeps", "--config-name", study, f"hydra/launcher={launcher}", "--cfg", "hydra"]
        proc = train_cli(args, timeout=120)
        assert proc.returncode == 0, (launcher, proc.stderr[-2000:])
        assert "submitit_launcher." in proc.stdout and "OMP_NUM_THREADS: '1'" in proc.stdout, launcher


def _submitit_sweep(sweep: Path, grid: list[str]) -> dict[str, tuple[dict, int]]:
    """Run `train.py -m hydra/launcher=local_submitit` over `grid`; {job dir: (results.json, its mtime)}."""
    proc = train_cli(
        [
            "-m",
            "hydra/launcher=local_submitit",
            f"hydra.sweep.dir={sweep}",
            "hydra.sweep.subdir=${hydra.job.override_dirname}",
            *TINY,
            *grid,
        ],
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {p.parent.name: (json.loads(p.read_text()), p.stat().st_mtime_ns) for p in sweep.glob("*/results.json")}


def _skips(sweep: Path, job: str) -> int:
    return (sweep / job / "train.log").read_text().count("skipping job")


def _submitit_jobs(sweep: Path) -> dict[str, str]:
    """{job dir name: submitit job id} from each submitit job's own log (the job prints its results.json path)."""
    out = {}
    for err in sweep.glob(".submitit/*/*_0_log.err"):
        for line in err.read_text().splitlines():
            if line.startswith("transferlab result ("):
                out[Path(line.split("(", 1)[1].rstrip("):")).parent.name] = err.parent.name
    return out


@pytest.mark.slow
def test_submitit_local_sweep_skips_finished_and_tolerates_a_failed_job(tmp_path: Path):
    sweep = tmp_path / "sweep"
    first = _submitit_sweep(sweep, ["seed=0,1", "strategy.lr=0.01,0.02"])
    assert len(first) == 4 and {r["status"] for r, _ in first.values()} == {"ok"}
    jobs = _submitit_jobs(sweep)  # each job ran in its own submitit-managed process (local job id = its pid)
    assert set(jobs) == set(first) and len(set(jobs.values())) == 4
    assert all((sweep / ".submitit" / j / f"{j}_0_result.pkl").is_file() for j in jobs.values())

    again = _submitit_sweep(sweep, ["seed=0,1", "strategy.lr=0.01,0.02"])
    assert {k: t for k, (_, t) in again.items()} == {k: t for k, (_, t) in first.items()}  # nothing rewritten
    assert all(_skips(sweep, k) == 1 for k in first)

    # one point fails inside its job (strategy.lr=-1 composes, the run's validation refuses it): the others finish
    grid = ["seed=0", "strategy.lr=0.01,0.03,-1"]
    third = _submitit_sweep(sweep, grid)
    new = {k: r for k, (r, _) in third.items() if k not in first}
    failed = next(k for k in new if "strategy.lr=-1" in k)
    assert new[failed]["status"] == "failed" and "strategy.lr=-1" in new[failed]["error"]
    assert [r["status"] for k, r in new.items() if k != failed] == ["ok"]
    fourth = _submitit_sweep(sweep, grid)  # runs the failed job only
    changed = {k for k, (_, t) in fourth.items() if t != third[k][1]}
    assert changed == {failed}
    done = next(k for k in first if "seed=0" in k and "strategy.lr=0.01," in k)  # in both grids
    finished = next(k for k in new if k != failed)
    skips = {k: _skips(sweep, k) for k in fourth}
    assert skips == {**{k: 1 for k in first}, done: 3, finished: 1, failed: 0}


def _search_cmd(study: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "transferlab.search",
        "--config-dir",
        str(ROOT / "sweeps"),
        "--config-name",
        "optuna_partial",
        f"hydra.sweep.dir={study}",
        *SEARCH_TINY,
        *extra,
    ]


def _start(study: Path, log: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(_search_cmd(study, *extra), cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)


def _trials(study: Path) -> list:
    import optuna

    if not (study / "optuna.journal").is_file():
        return []
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(study / "optuna.journal")))
    try:
        return optuna.load_study(study_name="optuna_partial", storage=storage).get_trials(deepcopy=False)
    except KeyError:  # not created yet
        return []


def _finished(trials: list) -> list:
    """COMPLETE or FAIL trials, interrupted ones aside (their points are retried)."""
    from transferlab.search import counted

    return [t for t in trials if counted(t) and t.state.name != "RUNNING"]


@pytest.mark.slow
def test_search_two_workers_share_one_journal(tmp_path: Path):
    study = tmp_path / "study"
    workers = [_start(study, tmp_path / f"w{i}.log", "search.n_trials=6", "search.heartbeat_s=0.3") for i in range(2)]
    codes = [w.wait(timeout=300) for w in workers]
    assert codes == [0, 0], [(tmp_path / f"w{i}.log").read_text()[-2000:] for i in range(2)]
    trials = _trials(study)
    assert sorted(t.number for t in trials) == list(range(6)) and len(_finished(trials)) == 6
    assert {t.state.name for t in trials} == {"COMPLETE"}
    assert {t.user_attrs["worker"]["pid"] for t in trials} == {w.pid for w in workers}  # both took trials
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 6  # no point run twice
    assert any(t.user_attrs["heartbeat"] > t.datetime_start.timestamp() + 0.3 for t in trials)  # beats while running
    for t in trials:  # each trial is a normal run with its own run dir and results.json
        result = json.loads((study / f"trial_{t.number}" / "results.json").read_text())
        assert result["status"] == "ok" and result["config"]["strategy"]["lr"] == t.params["strategy.lr"]
        assert result["metrics"]["val/acc"] == t.value
    summary = json.loads((study / "search.json").read_text())
    assert summary["complete"] == 6 and summary["best"]["value"] == max(t.value for t in trials)


@pytest.mark.slow
def test_search_resumes_after_a_worker_is_killed(tmp_path: Path):
    study = tmp_path / "study"
    worker = _start(study, tmp_path / "killed.log", "search.n_trials=4")
    deadline = time.time() + 240
    while time.time() < deadline and worker.poll() is None:
        trials = _trials(study)
        fresh = [
            t
            for t in trials
            if t.state.name == "RUNNING"
            and "worker" in t.user_attrs
            and t.datetime_start.timestamp() > time.time() - 0.5
        ]
        if _finished(trials) and fresh:  # a trial just started (a tiny trial takes seconds): it is still running
            break
        time.sleep(0.1)
    assert worker.poll() is None, (tmp_path / "killed.log").read_text()[-2000:]
    os.kill(worker.pid, signal.SIGKILL)  # mid-study: one trial RUNNING
    worker.wait()
    killed = next(t for t in _trials(study) if t.state.name == "RUNNING")

    rerun = subprocess.run(
        _search_cmd(study, "search.n_trials=4"), cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert "is gone" in rerun.stderr + rerun.stdout
    trials = _trials(study)
    assert len(_finished(trials)) == 4 and not [t for t in trials if t.state.name == "RUNNING"]
    stale = trials[killed.number]
    assert stale.state.name == "FAIL" and "is gone" in stale.user_attrs["interrupted"]
    retry = next(t for t in trials if t.user_attrs.get("retry_of") == killed.number)
    assert retry.params == killed.params and retry.state.name == "COMPLETE"
    assert json.loads((study / "search.json").read_text())["interrupted"] == 1


def test_search_space_and_overrides():
    import optuna.distributions as D

    from transferlab.search import override, space

    dists = space(
        {
            "strategy.lr": "tag(log, interval(1e-4, 1e-1))",
            "strategy.trainable_groups": "range(1, 5)",
            "head.dropout": "interval(0.0, 0.5)",
            "strategy": "choice(partial, full)",
        }
    )
    assert dists["strategy.lr"] == D.FloatDistribution(1e-4, 1e-1, log=True)
    assert dists["strategy.trainable_groups"] == D.IntDistribution(1, 4)  # as `-m x=range(1,5)`: 1..4
    assert dists["head.dropout"] == D.FloatDistribution(0.0, 0.5)
    assert dists["strategy"] == D.CategoricalDistribution(["partial", "full"])
    with pytest.raises(ConfigError, match="not a search space"):
        space({"seed": "3"})
    assert override("strategy.lr", 0.00123) == "strategy.lr=0.00123"
    assert override("head.bottleneck", None) == "head.bottleneck=null"
    assert override("data.root", "a b") == 'data.root="a b"' and override("strategy", "full") == "strategy=full"


def test_dead_worker_is_told_from_a_live_one():
    from transferlab.search import _token

    assert _token(os.getpid()) not in (None, "")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert _token(gone.pid) is None


def test_stale_trials_by_process_or_heartbeat():
    from datetime import datetime
    from types import SimpleNamespace

    from transferlab.search import Worker, _token

    worker = Worker.__new__(Worker)  # only what _stale reads
    worker.me, worker.search = {"host": "here", "pid": os.getpid()}, {"stale_after_s": 600}
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    now = time.time()

    def trial(host: str, pid: int, token, beat: float | None, started: float = now):
        attrs = {"worker": {"host": host, "pid": pid, "token": token}, "heartbeat": beat}
        return SimpleNamespace(user_attrs=attrs, datetime_start=datetime.fromtimestamp(started))

    assert worker._stale(trial("here", os.getpid(), _token(os.getpid()), now), now) is None
    assert "is gone" in worker._stale(trial("here", gone.pid, "123", now), now)
    assert "is gone" in worker._stale(trial("here", os.getpid(), "not its start time", now), now)  # a reused pid
    assert worker._stale(trial("elsewhere", 1, "1", now - 60), now) is None
    assert "no heartbeat" in worker._stale(trial("elsewhere", 1, "1", now - 601), now)
    assert "no heartbeat" in worker._stale(trial("elsewhere", 1, "1", None, started=now - 601), now)
    claimed = SimpleNamespace(user_attrs={}, datetime_start=datetime.fromtimestamp(now - 5))
    assert worker._stale(claimed, now) is None  # claimed a moment ago, owner not written yet
