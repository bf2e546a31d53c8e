"""Run-directory safety: a run never overwrites another run's files.

A run dir that already holds a run (a `results.json`) is reused only to resume it (`ckpt_path=...`),
or with `overwrite=true`, which first moves every file of the earlier run into `replaced/<n>/`. A
resume keeps the earlier `.hydra/` in `.hydra/before-resume-<n>/`; a failed resume leaves the earlier
`results.json` as it was (the failure goes to `results.resume-failed.json`).

`guard_argv` runs in the console entry before Hydra writes `.hydra/` into the dir; `guard` runs in
`run(cfg)` for the Python API. Both refuse with the same message.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from transferlab.errors import ConfigError

RESULTS = "results.json"
WRITES_NOTHING = {"-h", "--help", "--hydra-help", "--info", "-c", "--resolve"}
REPLACED = "replaced"
log = logging.getLogger("transferlab")


def _earlier(out_dir: Path) -> dict | None:
    path = out_dir / RESULTS
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {"status": "unreadable"}


def _refusal(out_dir: Path, earlier: dict) -> ConfigError:
    ckpt_dir = out_dir / "checkpoints"
    ckpts = sorted(p.name for p in ckpt_dir.glob("*.ckpt")) if ckpt_dir.is_dir() else []
    fixes = ["resume it with `ckpt_path=last`"] if "last.ckpt" in ckpts else []
    fixes += [
        "pick a new dir (leave hydra.run.dir unset)",
        f"pass `overwrite=true` to move the earlier run into '{out_dir / REPLACED}/<n>/' and start afresh",
    ]
    held = f"results.json: status {earlier.get('status')}" + (f"; checkpoints {', '.join(ckpts)}" if ckpts else "")
    return ConfigError(
        f"the run dir '{out_dir}' already holds a run ({held}); a new run would overwrite its files. "
        f"{'; or '.join(fixes).capitalize()}."
    )


def _next_slot(parent: Path, prefix: str = "") -> Path:
    n = 1
    while (parent / f"{prefix}{n}").exists():
        n += 1
    return parent / f"{prefix}{n}"


def set_aside(out_dir: Path, keep: set[str] = frozenset()) -> Path:
    """Move every entry of `out_dir` (but earlier `replaced/` sets and `keep`) into `replaced/<n>/`; returns it."""
    slot = _next_slot(out_dir / REPLACED)
    slot.mkdir(parents=True)
    for entry in sorted(out_dir.iterdir()):
        if entry.name != REPLACED and entry.name not in keep:
            shutil.move(str(entry), str(slot / entry.name))
    return slot


def keep_hydra_record(out_dir: Path) -> None:
    """A resume rewrites `.hydra/`: keep the earlier one in `.hydra/before-resume-<n>/`."""
    hydra = out_dir / ".hydra"
    files = [p for p in hydra.glob("*.yaml")] if hydra.is_dir() else []
    if files:
        slot = _next_slot(hydra, "before-resume-")
        slot.mkdir()
        for f in files:
            shutil.copy2(f, slot / f.name)


def _multirun() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:  # no Hydra run (tests, notebooks)
        return False


def guard(out_dir: Path | str, resume: bool, overwrite: bool) -> None:
    """Refuse (ConfigError) to start a new run in a dir that holds one; with `overwrite`, set it aside first.

    Sweep jobs are not refused: a sweep skips its finished jobs (`transferlab.sweep`), so a job that runs in a
    dir holding a run is a failed one re-run, a `+rerun=true`, or another grid's job under the same number:
    the earlier files move to `replaced/<n>/` first (this job's `.hydra/` and log, already written, stay).
    """
    out_dir = Path(out_dir)
    earlier = _earlier(out_dir)
    if earlier is None or resume:
        return
    if _multirun():
        slot = set_aside(out_dir, keep={".hydra", "train.log"})
        log.warning(
            "the job dir held an earlier run (status %s, another config or re-run): its files moved to %s",
            earlier.get("status"),
            slot,
        )
        return
    if not overwrite:
        raise _refusal(out_dir, earlier)
    set_aside(out_dir)


def _arg(argv: list[str], key: str) -> str | None:
    for a in argv:
        if a.lstrip("+").startswith(f"{key}="):
            return a.split("=", 1)[1]
    return None


def guard_argv(argv: list[str]) -> None:
    """The console entry's check, before Hydra writes into an explicit `hydra.run.dir` (single runs only)."""
    if any(a in ("-m", "--multirun") for a in argv):
        return  # sweeps have their own skip/rerun rules
    if any(a in WRITES_NOTHING or a.startswith(("--cfg", "--shell-completion")) for a in argv):
        return  # Hydra prints and exits
    run_dir = _arg(argv, "hydra.run.dir")
    if run_dir is None:
        return
    ckpt = _arg(argv, "ckpt_path")
    overwrite = (_arg(argv, "overwrite") or "false").lower() == "true"
    resume = ckpt not in (None, "null")
    guard(Path(run_dir), resume=resume, overwrite=overwrite)
    if resume:
        keep_hydra_record(Path(run_dir))
