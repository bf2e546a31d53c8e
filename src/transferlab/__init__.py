"""transferlab: composable transfer-learning experiments (Hydra configs -> Lightning runs).

Importing the package is cheap: heavy libraries (torch, lightning, timm, transformers) are
imported by the modules that need them.
"""

__version__ = "0.1.0"
