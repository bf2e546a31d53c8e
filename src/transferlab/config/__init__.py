"""The config layer: the shipped config tree (`transferlab/conf`), composing it, checking it.

- `compose`: compose the tree without a command line (tests, benchmarks, notebooks);
- `schema`, `rules`, `files`: what `validate(cfg)` checks, before anything loads;
- `instantiate`: Hydra's instantiate with transferlab's user errors let through.

Only Hydra/OmegaConf are imported here: a config error is answered before torch is imported.
"""

from transferlab.config.validate import check_argv, override_hints, validate

__all__ = ["check_argv", "override_hints", "validate"]
