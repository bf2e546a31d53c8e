"""What a run trains: the LightningModules (`module`, `lm_module`), the head, the batch-norm policy
(`norm`), the feature cache (`features`) and learning-rate schedules. Submodules import lazily."""
