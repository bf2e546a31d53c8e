"""The commands users type work as typed: a backbone's own data when none is named, the cost said before the work,
and config mistakes answered before the heavy libraries are imported."""

from __future__ import annotations

import json
import os
import sys

import pytest
from conftest import FAST, ROOT, run_config, train_cli


def test_text_backbone_without_data_gets_its_default_data(tmp_path):
    """`train.py backbone=minilm` (no data=): reviews, said on stderr and recorded; the run trains and tests."""
    out = tmp_path / "run"
    p = train_cli(["backbone=minilm", *FAST[:-1], "trainer.max_steps=2", f"hydra.run.dir={out}"])  # no image_size
    assert p.returncode == 0, p.stderr[-2000:]
    assert "using its default data=reviews" in p.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["status"] == "ok" and res["data"] == "reviews"
    assert "data=digits is image data" in res["data_auto"]
    assert "data=reviews" in (out / ".hydra" / "overrides.yaml").read_text()  # what ran is what Hydra recorded


def test_hub_llm_without_data_fails_on_its_weights_first(tmp_path):
    """The headline command offline: instruction data chosen, then the weights message (not a modality error)."""
    out = tmp_path / "run"
    p = train_cli(["strategy=lora", "backbone=llama7b", f"hydra.run.dir={out}"], env={"HF_HUB_OFFLINE": "1"})
    assert p.returncode == 2
    assert "data=instructions" in p.stderr and "backbone.path=" in p.stderr.splitlines()[-1]
    res = json.loads((out / "results.json").read_text())
    assert res["failure"]["reason"] == "weights" and res["data"] == "instructions"


def test_explicit_mismatch_is_refused_before_any_import(tmp_path):
    """An explicit data= wins, and a mismatch is refused from the declared modalities: torch never imported."""
    from transferlab.config import validate
    from transferlab.config.compose import compose
    from transferlab.errors import ConfigError

    cfg = compose(["backbone=llama7b", "data=digits"], tmp_path)
    with pytest.raises(ConfigError, match="takes text inputs but data=digits is image data"):
        validate(cfg)
    code = (
        "import sys; from transferlab.config import validate; from transferlab.config.compose import compose\n"
        "for args in (['backbone=llama7b', 'data=digits'], ['strategy.lr=-1'], ['head.dropout=1.5']):\n"
        "    try: validate(compose(args, '.'))\n"
        "    except Exception as e: print(type(e).__name__, e)\n"
        "print(sorted(m for m in ('torch', 'lightning', 'transformers') if m in sys.modules))\n"
    )
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True)
    lines = p.stdout.splitlines()
    assert lines[:3] == [
        "ConfigError backbone 'llama7b' takes text inputs but data=digits is image data: pick a matching pair "
        "(e.g. backbone=minilm data=reviews).",
        "ConfigError invalid config: strategy.lr=-1 must be > 0 (or 'auto': feature_extraction).",
        "ConfigError invalid config: head.dropout=1.5 must be in [0, 1).",
    ]
    assert lines[3] == "[]", "validation imported a heavy library before answering"


def test_run_says_its_cost_and_records_estimate_vs_actual(tmp_path, caplog):
    """Planned steps and the cache plan before training, an estimate after a few steps, estimate vs actual after."""
    caplog.set_level("INFO", logger="transferlab")
    res = run_config(
        ["strategy=full", "trainer.max_epochs=2", "trainer.limit_train_batches=4", "callbacks.estimate.after=2"],
        tmp_path,
    )
    text = caplog.text
    assert "plan: 8 optimizer steps (max_epochs=2, 4 batches per epoch)" in text
    assert "feature cache: not used" in text and "estimate: ~" in text and "estimate revised after one epoch" in text
    est = res["estimate"]
    assert est["planned_steps"] == res["global_step"] == 8
    assert est["estimated_fit_s"] > 0 and est["first_estimate_s"] > 0 and est["actual_fit_s"] > 0
    assert json.loads((tmp_path / "results.json").read_text())["estimate"] == est


def test_estimate_needs_a_step_to_time(tmp_path):
    from transferlab.errors import ConfigError

    with pytest.raises(ConfigError, match="callbacks.estimate.after=0 must be >= 1"):
        run_config(["callbacks.estimate.after=0"], tmp_path)


def test_several_loggers_by_list_and_bad_spellings_refused():
    """`logger=[csv,tensorboard]` is Hydra's multi-select (logger files are namespaced); a misspelt item or a
    scalar for a group gets the one-line fix-it."""
    from transferlab.config import check_argv
    from transferlab.errors import ConfigError

    check_argv(["logger=[csv,tensorboard]"])
    for bad in ("logger=[csv,tensorbard]", "strategy=[lora,full]", "cache=false", "plan=true"):
        with pytest.raises(ConfigError, match="is a config group|is a section of settings"):
            check_argv([bad])


def test_slurm_sweep_off_a_cluster_is_refused_before_hydra(tmp_path, monkeypatch):
    """`-m hydra/launcher=slurm` without sbatch: one line naming the fix, exit 2, instead of submitit's traceback
    (`Could not detect "srun"`); with sbatch on PATH (a login node) the command goes on to Hydra."""
    from transferlab.config import check_argv
    from transferlab.errors import ConfigError

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="no `sbatch`.*hydra/launcher=local_submitit"):
        check_argv(["-m", "hydra/launcher=slurm", "seed=0,1"])
    check_argv(["hydra/launcher=slurm", "seed=0"])  # not a multirun: no launcher runs
    sbatch = tmp_path / "sbatch"
    sbatch.write_text("#!/bin/sh\n")
    sbatch.chmod(0o755)
    check_argv(["-m", "hydra/launcher=slurm", "seed=0,1"])
    proc = train_cli(
        ["-m", "--config-dir", "sweeps", "--config-name", "adaptation_methods", "hydra/launcher=slurm"],
        env={"PATH": os.path.dirname(sys.executable)},
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "no `sbatch`" in proc.stderr, proc.stderr


def test_sweep_says_jobs_done_and_eta(tmp_path):
    """A multirun prints its job count, what finished before, and an ETA line as each job ends."""
    args = ["-m", "seed=0,1", "strategy.lr=0.01,-1", *FAST, "logger=none", f"hydra.sweep.dir={tmp_path}"]
    first = train_cli(args)
    out = first.stdout + first.stderr  # Hydra's own log (the job count) goes to stdout, the jobs' to stderr
    assert first.returncode == 0, out[-2000:]
    assert "sweep: 4 jobs" in out and "sweep: 4/4 done (2 failed)" in out and "sweep: 1/4 done, ETA ~" in out
    again = train_cli(args)
    out = again.stdout + again.stderr
    assert "sweep: 4 jobs; 2 finished ok before" in out and "sweep: 4/4 done (2 skipped, 2 failed)" in out


def test_job_count_includes_the_study_grid():
    from transferlab.sweep import compose_study
    from transferlab.sweep_progress import count_jobs

    cfg = compose_study("sweeps", "strategies_vs_datasize", [])
    grid = cfg.grid[cfg.scale]
    assert count_jobs(cfg) == 4 * 3 * 3 == len(grid.strategies.split(",")) * len(grid.sizes.split(",")) * 3


def test_a_new_grid_in_an_old_sweep_dir_loses_nothing(tmp_path):
    """Job numbers name the job dirs: a second grid in the same sweep dir runs its job 0 in the first grid's
    job 0 dir. The earlier run's files move to replaced/<n>/ (never overwritten) and reports read only the live run."""
    from transferlab.sweep import iter_results

    base = [*FAST, "logger=none", "trainer.max_steps=1", f"hydra.sweep.dir={tmp_path}"]
    assert train_cli(["-m", "seed=0,1", *base]).returncode == 0
    first = (tmp_path / "0" / "results.json").read_bytes()
    p = train_cli(["-m", "seed=2,3", *base])
    assert p.returncode == 0, (p.stdout + p.stderr)[-2000:]
    assert "its files moved to" in p.stdout + p.stderr
    assert (tmp_path / "0" / "replaced" / "1" / "results.json").read_bytes() == first
    assert json.loads((tmp_path / "0" / "results.json").read_text())["seed"] == 2
    assert sorted(r["seed"] for _, r in iter_results(tmp_path)) == [2, 3]


@pytest.mark.parametrize("mistake", ["strategy.lr=-1", "backbone=llama7b data=digits", "trainer.max_epochs=-5"])
def test_cli_answers_config_mistakes_without_importing_torch(mistake, tmp_path):
    """The whole command (Hydra, the run's validation, results.json, the summary) answers without torch or
    Lightning: `python -X importtime` lists every module imported."""
    import subprocess
    import sys

    from conftest import ROOT

    cmd = [sys.executable, "-X", "importtime", str(ROOT / "train.py"), *mistake.split(), f"hydra.run.dir={tmp_path}"]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert p.returncode == 2 and "error: " in p.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in p.stderr.splitlines() if line.startswith("import time:")}
    assert not imported & {"torch", "lightning", "transformers"}, sorted(imported & {"torch", "lightning"})
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "failed"


def test_a_fixed_key_of_a_group_the_study_file_sweeps_is_explained(monkeypatch):
    """The study file sweeps `strategy` in its hydra.sweeper.params: a fixed strategy.trainable_groups=2 on the
    command line is set before that sweep, on the default strategy (Hydra: 'not in struct'). The hint reads the
    file's sweep, names the choices that have the key and gives the fix that works (choice() only if all have it)."""
    from transferlab.config import override_hints

    monkeypatch.chdir(ROOT)
    study = ["-m", "--config-dir", "sweeps", "--config-name", "strategies_vs_datasize"]
    (hint,) = override_hints([*study, "strategy.trainable_groups=2"])
    assert "before it sweeps strategy=full,lora,partial,feature_extraction" in hint
    assert "Only strategy=partial of the swept choices have it" in hint and "choice(" not in hint
    (hint,) = override_hints([*study, "strategy=lora,partial", "strategy.lr=3e-3", "strategy.backbone_lr_mult=1"])
    assert "Only strategy=partial of the swept choices" in hint  # the command line's sweep replaces the file's
    assert override_hints(["-m", "--config-dir=sweeps", "-cn", "strategies_vs_datasize", "seed=3"]) == []
    # a plain strategy=lora replaces the file's sweep too: its own keys are judged on lora, a misspelling hinted
    assert override_hints([*study, "strategy=lora", "strategy.alpha=8", "data.train_per_clas=5"]) == [
        "Did you mean data.train_per_class? (data.train_per_clas is not a key of the config)"
    ]
    assert override_hints([*study, "strategy=lora", "strategy.alhpa=8"]) == [
        "Did you mean strategy.alpha? (strategy.alhpa is not a key of the config)"
    ]
