"""A run: the stage recipe (`recipe`), the model builder (`build`), the stages after it (`stages`).

    from transferlab.run import build_model, run

`run(cfg)` trains and tests one composed config and writes results.json; `build_model(cfg)` gives its
strategy, datamodule and LightningModule without training (export, tools). Importing this package
is cheap: torch and lightning are imported by the stages that need them.
"""

from transferlab.run.build import Built, build_model
from transferlab.run.recipe import Recipe, run

__all__ = ["Built", "Recipe", "build_model", "run"]
