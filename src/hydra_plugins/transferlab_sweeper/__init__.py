"""transferlab's Hydra sweeper (`hydra/sweeper=transferlab`, the default in transferlab's config)."""
