"""Compose the real config tree without the command line (tests, benchmarks, notebooks).

cfg = compose(["strategy=partial", "data=mnist_to_digits"], out_dir="runs/x")
result = transferlab.run.run(cfg)
"""

from __future__ import annotations

from pathlib import Path

CONF = Path(__file__).resolve().parents[1] / "conf"  # package data: the config tree ships with transferlab


def compose(overrides: list[str], out_dir: Path | str, conf_dir: Path | str = CONF):
    """Compose transferlab/conf/config.yaml with `overrides` as `python train.py` would, with HydraConfig set.

    `${hydra:...}` interpolations (run dir, group choices) resolve as in a real run; the run dir
    is `out_dir`.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(Path(conf_dir).resolve()), version_base="1.3"):
        cfg = hydra_compose("config", overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(out_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg
