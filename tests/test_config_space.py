"""A property test over the config space: every generated input ends cleanly, nothing earlier is overwritten.

Cases are drawn with a fixed seed: a base configuration (group choices that run offline), then one leaf of
its composed config given a value of the wrong type, out of range, extreme but type-valid, or empty, or a
group given a scalar. Each case runs as `train.py` would (`transferlab.run.entry.main`, in-process, tiny
budget) and must end with status ok/untrained, or exit 2 with one message and `status: failed` in
results.json and no traceback, or be refused by Hydra while composing (one message, nothing written).
Every tenth case re-runs into the previous case's run dir: refused, the earlier files unchanged.

`TRANSFERLAB_CONFIG_SPACE_CASES` (default 200) sets the number of cases and `TRANSFERLAB_CONFIG_SPACE_SEED`
(default 0) the draw; failures are listed together.
The inputs it found failing before they were fixed are rows of the bad-input table (test_bad_inputs.py).
"""

from __future__ import annotations

import faulthandler
import json
import os
import random
import resource
import shutil
import signal
import sys
from pathlib import Path

import pytest
from conftest import compose

BUDGET = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=1",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.enable_progress_bar=false",
    "data.image_size=32",
    "data.train_per_class=5",
]
BASES = [
    [],
    ["strategy=partial"],
    ["strategy=full"],
    ["strategy=progressive"],
    ["strategy=lora"],
    ["strategy=partial", "data=mnist_to_digits", "adaptation=dann", "data.train_per_class=3"],
]
GROUPS = ["backbone", "strategy", "adaptation", "data", "hardware", "logger", "cache", "plan", "augment", "tta"]
BUDGET_KEYS = {a.split("=")[0] for a in BUDGET} | {"trainer.max_steps"}
SKIP = ("paths.", "hydra.", "callbacks.checkpoint.dirpath", "logger.csv.save_dir")
SECONDS_PER_CASE = 90


def _leaves(node, prefix: str = "") -> dict:
    out = {}
    for k, v in node.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_leaves(v, key + "."))
        else:
            out[key] = v
    return out


def _bad_values(v) -> list:
    """Values of the wrong type, out of range, extreme but type-valid, or empty, for a leaf holding `v`."""
    if isinstance(v, bool):
        return ["maybe", 2, None]
    if isinstance(v, int):
        return [-1, 0, 10**9, "abc", 2.5, None, "[]"]
    if isinstance(v, float):
        return [-1.0, 0.0, 1e9, "nan", "abc", None]
    if isinstance(v, str):
        return ["", "no_such_value", 3, None, "[1,2]"]
    if v is None:
        return ["abc", -1, 0, 1e9]
    return ["[]", "abc", None]


def _render(v) -> str:
    return "null" if v is None else ("''" if v == "" else str(v))


def cases(n: int, seed: int = 0) -> list[list[str]]:
    from omegaconf import OmegaConf

    rng = random.Random(seed)
    leaves = {}
    out = []
    for _ in range(n):
        base = rng.choice(BASES)
        if rng.random() < 0.12:  # a group given a scalar (or a dict-like string)
            out.append([*base, f"{rng.choice(GROUPS)}={rng.choice(['5', 'true', 'False', 'null', '{a: 1}'])}"])
            continue
        key = tuple(base)
        if key not in leaves:
            tree = OmegaConf.to_container(compose([*BUDGET, *base], "/tmp/unused"), resolve=False)
            leaves[key] = {k: v for k, v in _leaves(tree).items() if not k.startswith(SKIP)}
        name, value = rng.choice(sorted(leaves[key].items(), key=lambda kv: kv[0]))
        # the budget keys' huge (or null: the library default) values are valid requests for a long run
        bad = rng.choice([b for b in _bad_values(value) if not (name in BUDGET_KEYS and b in (10**9, 1e9, None))])
        out.append([*base, f"{name}={_render(bad)}"])
    return out


class _TooLong(BaseException):  # not caught as a run failure
    pass


def _alarm(signum, frame):
    raise _TooLong()


def _one(args: list[str], run_dir: Path, capsys) -> str | None:
    """None when the case ended cleanly (within SECONDS_PER_CASE), else what went wrong."""
    old = signal.signal(signal.SIGALRM, _alarm)
    try:
        signal.alarm(SECONDS_PER_CASE)
        # a hang in C code (the alarm can't interrupt it): stop the session with the stacks, don't hang CI
        faulthandler.dump_traceback_later(3 * SECONDS_PER_CASE, exit=True, file=sys.__stderr__)
        return _case(args, run_dir, capsys)
    except _TooLong:
        return f"still running after {SECONDS_PER_CASE} s"
    finally:
        faulthandler.cancel_dump_traceback_later()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _case(args: list[str], run_dir: Path, capsys) -> str | None:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from transferlab.config import check_argv
    from transferlab.errors import ConfigError
    from transferlab.run.entry import main

    capsys.readouterr()  # drop the previous case's output
    try:
        check_argv(args)  # what train.py checks before Hydra composes
    except ConfigError:
        return None if not run_dir.exists() else "refused but something was written"
    try:
        cfg = compose([*BUDGET, *args], run_dir)
    except (HydraException, OmegaConfBaseException):
        return None if not run_dir.exists() else "Hydra refused it but something was written"
    try:
        result = main(cfg)
    except SystemExit as e:
        err = capsys.readouterr().err
        if e.code != 2:
            return f"exit {e.code}"
        if "Traceback" in err or "error:" not in err:
            return f"exit 2 without one clear message: {err[-300:]}"
        written = json.loads((run_dir / "results.json").read_text()) if (run_dir / "results.json").exists() else {}
        return None if written.get("status") == "failed" else f"exit 2 but results.json says {written.get('status')}"
    except Exception as e:  # a bare traceback for the user
        return f"{type(e).__name__}: {str(e)[:300]}"
    if not isinstance(result, dict) or result.get("status") not in ("ok", "untrained"):
        return f"returned {str(result)[:200]}"
    return None


def _rerun_refused(run_dir: Path, capsys) -> str | None:
    """A new run into a dir that holds one must be refused (exit 2) with the earlier files unchanged."""
    from transferlab.run.entry import main

    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    capsys.readouterr()
    try:
        main(compose([*BUDGET, "seed=7"], run_dir))
        return "not refused"
    except SystemExit as e:
        err = capsys.readouterr().err
        if e.code != 2 or "already holds a run" not in err:
            return f"exit {e.code}: {err[-300:]}"
    after = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    return None if before == after else "files changed"


@pytest.mark.slow
def test_generated_inputs_end_cleanly(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths a case generates (cache.dir=abc) land here, not in the checkout
    n = int(os.environ.get("TRANSFERLAB_CONFIG_SPACE_CASES", "200"))
    failures: list[str] = []
    limit = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (16 * 2**30, limit[1]))  # a runaway size fails here, not in the OOM killer
    try:
        _cases(n, tmp_path, capsys, failures)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, limit)
    print(f"\n{n} generated cases, {len(failures)} failed")
    assert not failures, "\n".join(failures)


def _cases(n: int, tmp_path: Path, capsys, failures: list) -> None:
    previous, keep = None, False
    for i, args in enumerate(cases(n, int(os.environ.get("TRANSFERLAB_CONFIG_SPACE_SEED", "0")))):
        run_dir = tmp_path / f"case{i}"
        problem = _one(args, run_dir, capsys)
        if problem:
            failures.append(f"{' '.join(args)} -> {problem}")
        if i % 10 == 9 and previous is not None and (previous / "results.json").exists():
            rerun = _rerun_refused(previous, capsys)
            if rerun:
                failures.append(f"re-run into {previous.name}: {rerun}")
                keep = True
        if previous is not None and not keep:  # checkpoints add up to GBs over 200 cases: keep only failures
            shutil.rmtree(previous, ignore_errors=True)
        previous, keep = run_dir, bool(problem)
