"""The wheel is self-contained: built, installed into a fresh venv, `transferlab-train` runs from any folder.

Offline throughout: the wheel is built without build isolation (setuptools and wheel from this venv) and without an
index, from a copy of the project (a build writes `build/` and `*.egg-info` next to the sources: not into the
checkout). The fresh venv borrows the already-installed dependencies through one `.pth` file naming this venv's
site-packages: a plain path line, so the `.pth` files in that folder (the editable transferlab's among them) are not
processed and only the wheel can provide `transferlab`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest
from conftest import CONF, FAST, ROOT


def _run(cmd: list, cwd: Path, env: dict, timeout: int) -> subprocess.CompletedProcess:
    out = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{cmd[:4]}... exit {out.returncode}\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
    return out


@pytest.mark.slow
def test_wheel_installs_and_trains_from_any_folder(tmp_path: Path) -> None:
    took, start = {}, time.perf_counter()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONDONTWRITEBYTECODE="1")
    cwd = tmp_path / "elsewhere"  # a folder with no checkout in it: the installed configs must be found
    cwd.mkdir()

    # 1. build the wheel from a copy of the project
    project = tmp_path / "project"
    shutil.copytree(ROOT / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, project / name)
    dist = tmp_path / "dist"
    pip = [sys.executable, "-m", "pip"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", dist, project], cwd, env, 600)
    (wheel,) = dist.glob("transferlab-*.whl")
    took["build"] = time.perf_counter() - start

    # the config tree ships in it: every YAML under transferlab/conf (globbed), the package marker, the script
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"transferlab/conf/{p.relative_to(CONF).as_posix()}" for p in CONF.rglob("*.yaml")}
    assert "transferlab/conf/config.yaml" in shipped and len(shipped) >= 40
    assert shipped <= names, sorted(shipped - names)
    assert "transferlab/conf/__init__.py" in names  # hydra's pkg://transferlab.conf
    assert "hydra_plugins/transferlab_sweeper/transferlab_sweeper.py" in names  # the sweeper config.yaml selects
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "transferlab-train = transferlab.cli:train" in zipfile.ZipFile(wheel).read(entry_points).decode()

    # 2. a fresh venv seeing the installed dependencies, the wheel installed into it
    mark = time.perf_counter()
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd, env, 300)
    python = venv / "bin" / "python"
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd, env, 60)
    site = Path(purelib.stdout.strip())
    deps = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))  # this venv's site-packages
    (site / "_transferlab_test_deps.pth").write_text("".join(f"{p}\n" for p in deps))
    # pip itself comes through that path; --ignore-installed: the editable transferlab seen there is neither
    # "already satisfied" nor uninstalled
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", wheel], cwd, env, 300)
    took["venv+install"] = time.perf_counter() - mark

    probe = "import transferlab, transferlab.cli, transferlab.conf as c; print(transferlab.__file__, c.__file__)"
    where = _run([python, "-c", probe], cwd, env, 120)
    for module in map(Path, where.stdout.split()):  # the package and its config tree both come from the wheel
        assert module.resolve().is_relative_to(site.resolve()), module
        assert not module.resolve().is_relative_to(ROOT), f"{module}: the checkout shadows the wheel"

    # 3. the installed command, from a folder outside the checkout
    mark = time.perf_counter()
    train = venv / "bin" / "transferlab-train"
    job = _run([train, "--cfg", "all"], cwd, env, 300)
    assert "seed:" in job.stdout and "TransferlabSweeper" in job.stdout, job.stdout[-2000:]
    took["--cfg job"] = time.perf_counter() - mark

    mark = time.perf_counter()
    run_dir = tmp_path / "run"
    args = [*FAST, "data.train_per_class=5", "logger=csv", f"cache.dir={tmp_path / 'features'}"]
    _run([train, *args, f"hydra.run.dir={run_dir}"], cwd, env, 600)
    took["train"] = time.perf_counter() - mark
    result = json.loads((run_dir / "results.json").read_text())
    assert result["status"] == "ok", result.get("error")
    assert 0 <= result["metrics"]["test/acc"] <= 1
    assert (run_dir / "csv" / "metrics.csv").is_file()
    assert not any(cwd.iterdir()), sorted(p.name for p in cwd.iterdir())  # everything went to the run dir
    took["total"] = time.perf_counter() - start
    print("test_package timings (s):", {k: round(v, 1) for k, v in took.items()})
