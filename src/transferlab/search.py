"""Optuna search over transferlab runs: ask/tell on a journal file that any number of workers share.

    python -m transferlab.search --config-dir sweeps --config-name optuna_partial [--workers 2] [overrides...]

The study file's `search:` node holds `direction`, `n_trials`, `sampler` (`_target_` + arguments) and `params`
(Hydra's sweep syntax: `interval(a, b)` floats, `tag(log, ...)`, `range(a, b[, step])` ints a..b-1, `choice(...)`).
Each trial is a normal run in `<sweep dir>/trial_<n>/` (results.json, train.log, .hydra/overrides.yaml), told to
the study as its `objective` metric (a failed run: FAIL). A trial whose config equals an earlier ok run in the
sweep dir reuses that result instead of training again (as `train.py -m` skips finished jobs).

The study is `<sweep dir>/optuna.journal` (optuna's JournalStorage, file backend): more workers (processes, or
nodes on a shared file system) started with the same command share it, and re-running the command continues it
until `n_trials` trials are COMPLETE or FAIL. A trial left RUNNING by a worker that died (same host: its process
is gone; any host: no heartbeat for `search.stale_after_s`, default 600 s; heartbeats every `search.heartbeat_s`,
default 60 s) is marked FAIL with user attr `interrupted`, is not counted, and its params are enqueued again:
the next free worker retries that point. Claims (stale check, count, ask) hold a lock file beside the journal.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from transferlab.adaptation.selection import search_direction
from transferlab.sweep import check_study, compose_study, find_finished, objective_value

log = logging.getLogger("transferlab.search")
JOURNAL = "optuna.journal"
LOG_FORMAT = "[%(levelname)s] %(message)s"


def space(params: dict) -> dict:
    """`search.params` ({key: Hydra sweep text}) -> {key: optuna distribution}."""
    import optuna.distributions as D
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    from transferlab.errors import ConfigError

    parser, out = OverridesParser.create(), {}
    for key, text in params.items():
        v = parser.parse_override(f"{key}={text}").value()
        log_scale = "log" in getattr(v, "tags", ())
        if isinstance(v, IntervalSweep):
            out[key] = D.FloatDistribution(v.start, v.end, log=log_scale)
        elif isinstance(v, RangeSweep) and all(isinstance(x, int) for x in (v.start, v.stop, v.step)):
            out[key] = D.IntDistribution(v.start, v.stop - 1, log=log_scale, step=v.step)
        elif isinstance(v, RangeSweep):
            values = list(v.range())
            out[key] = D.FloatDistribution(values[0], values[-1], step=v.step)
        elif isinstance(v, ChoiceSweep):
            out[key] = D.CategoricalDistribution(v.list)
        else:
            raise ConfigError(
                f"search.params.{key}: '{text}' is not a search space: use interval(a, b), range(a, b), "
                "choice(x, y) or tag(log, interval(a, b)); a fixed value goes into the study file itself."
            )
    return out


def override(key: str, value) -> str:
    """A Hydra override `key=value` for a sampled value (strings quoted unless plain words)."""
    plain = isinstance(value, str) and value.replace("_", "").replace("-", "").replace(".", "").isalnum()
    if isinstance(value, (bool, str)) and not plain or value is None:
        return f"{key}={json.dumps(value)}"
    return f"{key}={value!r}" if isinstance(value, float) else f"{key}={value}"


def _token(pid: int) -> str | None:
    """Process `pid`'s start time (None: gone or a zombie), so that a reused pid is not taken for a worker."""
    if not Path("/proc/self/stat").is_file():
        return ""  # no /proc (macOS): only heartbeats tell that a worker died
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else fields[19]


def counted(t) -> bool:
    """Trials that count towards n_trials: COMPLETE, RUNNING, and FAIL unless interrupted (those are retried)."""
    return t.state.name in ("COMPLETE", "RUNNING") or (t.state.name == "FAIL" and "interrupted" not in t.user_attrs)


class Worker:
    """One process's share of a study: claims trials under a lock, runs them, tells the results."""

    def __init__(self, cfg, storage_path: Path, overrides: list[str], args) -> None:
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        self.cfg, self.search, self.overrides, self.args = cfg, cfg.search, overrides, args
        self.dists = space(dict(self.search.params))
        self.sweep_dir = Path(cfg.hydra.sweep.dir)
        self.storage = JournalStorage(JournalFileBackend(str(storage_path)))
        self.ask_lock = JournalFileOpenLock(str(storage_path) + ".ask")
        self.study = optuna.create_study(
            storage=self.storage,
            study_name=self.search.get("study_name") or cfg.get("sweep_name") or "transferlab",
            direction=search_direction(cfg.objective, self.search.get("direction")),
            load_if_exists=True,
        )
        self.me = {"host": socket.gethostname(), "pid": os.getpid(), "token": _token(os.getpid())}

    def interrupt(self, trial, why: str) -> None:
        """Mark a RUNNING trial FAIL (`interrupted`: not counted) and enqueue its params for a retry."""
        from optuna.trial import TrialState

        study_id = self.storage.get_study_id_from_name(self.study.study_name)
        tid = self.storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        self.storage.set_trial_user_attr(tid, "interrupted", why)
        self.storage.set_trial_state_values(tid, TrialState.FAIL)
        log.warning("trial %d: %s; marked FAIL, its params are tried again", trial.number, why)
        if set(trial.params) == set(self.dists):
            self.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})

    def _stale(self, t, now: float) -> str | None:
        owner = t.user_attrs.get("worker")  # none yet: claimed a moment ago (or killed at that moment)
        beat = t.user_attrs.get("heartbeat") or t.datetime_start.timestamp()
        if owner and owner["host"] == self.me["host"] and _token(owner["pid"]) != owner["token"]:
            return f"its worker (pid {owner['pid']} on {owner['host']}) is gone"
        if now - beat > float(self.search.get("stale_after_s", 600)):
            return f"no heartbeat from its worker for {now - beat:.0f} s"
        return None

    def claim(self):
        """The next trial (params sampled), or None when the study has n_trials counted trials."""
        from hydra.utils import instantiate
        from optuna.trial import TrialState

        self.ask_lock.acquire()
        try:
            now = time.time()
            for t in self.study.get_trials(deepcopy=False, states=[TrialState.RUNNING]):
                if why := self._stale(t, now):
                    self.interrupt(t, why)
            trials = self.study.get_trials(deepcopy=False)
            if sum(map(counted, trials)) >= int(self.search.n_trials):
                return None
            sampler = dict(self.search.get("sampler") or {"_target_": "optuna.samplers.TPESampler"})
            if sampler.get("seed") is not None:  # seed + trial count: workers never draw the same stream
                sampler["seed"] = int(sampler["seed"]) + len(trials)
            self.study.sampler = instantiate(sampler)
            trial = self.study.ask(self.dists)  # an enqueued retry first, with its params
            trial.set_user_attr("worker", self.me)
            return trial
        finally:
            self.ask_lock.release()

    def evaluate(self, trial) -> dict | None:
        """Run the trial's config (or reuse an earlier ok run of the same config); its result."""
        from hydra.core.hydra_config import HydraConfig
        from hydra.core.utils import configure_log
        from omegaconf import OmegaConf, open_dict

        from transferlab.infra import redact
        from transferlab.run import run

        run_dir = (self.sweep_dir / f"trial_{trial.number}").resolve()
        overrides = self.overrides + [override(k, v) for k, v in trial.params.items()]
        cfg = compose_study(self.args.config_dir, self.args.config_name, overrides)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir, cfg.hydra.job.num = str(run_dir), trial.number
        HydraConfig.instance().set_config(cfg)
        logging_cfg = OmegaConf.create(OmegaConf.to_container(cfg.hydra.job_logging, resolve=True))
        with open_dict(cfg):
            del cfg["hydra"]
        found = find_finished(self.sweep_dir, OmegaConf.to_container(cfg, resolve=True))
        if found is not None:
            log.info("trial %d: same config finished ok in %s: its result is reused", trial.number, found.parent)
            trial.set_user_attr("reused", str(found.parent))
            return json.loads(found.read_text())
        (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
        configure_log(logging_cfg)  # as a Hydra job: console + run_dir/train.log
        redact.register(OmegaConf.to_container(cfg, resolve=True))
        OmegaConf.save(OmegaConf.create(redact.scrub(overrides)), run_dir / ".hydra" / "overrides.yaml")
        trial.set_user_attr("run_dir", str(run_dir))
        try:
            return run(cfg)
        except Exception:
            log.exception("trial %d failed", trial.number)
            path = run_dir / "results.json"
            return json.loads(path.read_text()) if path.is_file() else None
        finally:  # the worker's own messages: console only, not this trial's train.log
            logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, force=True)

    def loop(self) -> None:
        from optuna.trial import TrialState

        while (trial := self.claim()) is not None:
            try:
                with heartbeat(trial, float(self.search.get("heartbeat_s", 60))):
                    result = self.evaluate(trial)
                value = objective_value(result, self.cfg.objective)  # ConfigError: no such metric
            except BaseException as e:
                if isinstance(e, Exception):
                    self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
                else:  # Ctrl-C, SIGTERM: the point is retried by the next worker
                    self.interrupt(trial, f"its worker stopped ({type(e).__name__})")
                raise
            state = TrialState.COMPLETE if math.isfinite(value) else TrialState.FAIL
            # skip_if_finished: a worker wrongly taken for dead (no heartbeat) finds its trial already failed
            self.study.tell(trial, value if state == TrialState.COMPLETE else None, state, skip_if_finished=True)


@contextlib.contextmanager
def heartbeat(trial, every_s: float):
    """Refresh the trial's `heartbeat` user attr every `every_s` seconds while it runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every_s):
            trial.set_user_attr("heartbeat", time.time())

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def summary(worker: Worker) -> dict:
    """search.json: trial counts and the best trial so far."""
    trials = worker.study.get_trials(deepcopy=False)
    state = [t.state.name if "interrupted" not in t.user_attrs else "INTERRUPTED" for t in trials]
    out = {"study": worker.study.study_name, "direction": worker.study.direction.name.lower()}
    out |= {"objective": worker.cfg.objective, "n_trials": int(worker.search.n_trials)}
    out |= {k.lower(): state.count(k) for k in ("COMPLETE", "FAIL", "INTERRUPTED", "RUNNING")}
    if out["complete"]:
        best = worker.study.best_trial
        run_dir = best.user_attrs.get("run_dir") or best.user_attrs.get("reused")
        out["best"] = {"number": best.number, "value": best.value, "params": best.params, "run_dir": run_dir}
    return out


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(prog="python -m transferlab.search", description=__doc__.split("\n")[0])
    p.add_argument("--config-dir", "-cd", default=None, help="folder of the study file (e.g. sweeps)")
    p.add_argument("--config-name", "-cn", required=True, help="the study file's name (with a `search:` node)")
    p.add_argument("--workers", type=int, default=1, help="processes on this machine sharing the study")
    p.add_argument("--storage", default=None, help=f"the journal file (default: <sweep dir>/{JOURNAL})")
    return p.parse_known_args(argv)


def helper_cmd(args: argparse.Namespace, overrides: list[str]) -> list[str]:
    """The command of one more worker on this machine: the same study, one process."""
    cmd = [sys.executable, "-m", "transferlab.search", "--config-name", args.config_name]
    cmd += ["--config-dir", str(Path(args.config_dir).resolve())] if args.config_dir else []
    cmd += ["--storage", str(Path(args.storage).resolve())] if args.storage else []
    return cmd + overrides


def main(argv: list[str] | None = None) -> int:
    from hydra.core.hydra_config import HydraConfig

    from transferlab.errors import ConfigError
    from transferlab.infra import results

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        cfg = compose_study(args.config_dir, args.config_name, overrides)
        HydraConfig.instance().set_config(cfg)
        check_study(cfg)
        if not cfg.get("search") or not cfg.get("objective"):
            raise ConfigError(f"{args.config_name} has no `search:` node or no `objective:`: not a search study")
        search_direction(cfg.objective, cfg.search.get("direction"))  # before any trial runs
        os.environ.update({k: str(v) for k, v in (cfg.hydra.job.env_set or {}).items()})  # before torch loads
        sweep_dir = Path(cfg.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        pin = [f"hydra.sweep.dir={sweep_dir.resolve()}"]  # one study dir for all workers, even with ${now:...}
        helpers = [subprocess.Popen(helper_cmd(args, overrides + pin)) for _ in range(max(0, args.workers - 1))]
        worker = Worker(cfg, Path(args.storage or sweep_dir / JOURNAL), overrides + pin, args)
        worker.loop()
        codes = [h.wait() for h in helpers]
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = summary(worker)
    results.write(out, sweep_dir, "search.json")
    print(json.dumps(out, indent=2, default=str))
    return max([0, *codes])


if __name__ == "__main__":
    sys.exit(main())
