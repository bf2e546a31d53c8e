"""Console entry points: `transferlab-train` (= `python train.py` in a checkout).

The config tree ships inside the package (`transferlab/conf`), so a non-editable install runs from any
folder. Only Hydra and OmegaConf are imported here; the run imports torch/lightning when it needs them.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="pkg://transferlab.conf", config_name="config")
def _hydra_main(cfg: DictConfig):
    from transferlab.run.entry import main as run_main  # lazy: keeps --help and config errors fast

    return run_main(cfg)


def train() -> None:
    """Train one run (or a sweep with -m); see README.md."""
    import os

    from transferlab.config import check_argv
    from transferlab.errors import ConfigError
    from transferlab.run.rundir import guard_argv

    # torch's C++ warnings (c10d's connection retries print a C++ backtrace each): errors only, unless set
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    try:
        check_argv(sys.argv[1:])  # spellings Hydra would answer with a traceback
        guard_argv(sys.argv[1:])  # before Hydra writes .hydra/ into an explicit run dir
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    from transferlab.config.modality import ENV, auto_data

    argv, note = auto_data(sys.argv[1:])  # backbone=llama7b and no data=: the backbone's default data
    if note:
        print(f"note: {note}", file=sys.stderr)
        sys.argv[1:] = argv
        os.environ[ENV] = note
    try:
        _hydra_main()
    except SystemExit as e:
        if e.code == 1:  # Hydra refused the command line: suggest the key a mistyped override meant
            from transferlab.config import override_hints

            for line in override_hints(sys.argv[1:]):
                print(line, file=sys.stderr)
        raise
