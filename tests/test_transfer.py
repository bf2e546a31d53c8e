"""The claim everything rests on: pretrained weights transfer (slow, real training)."""

from __future__ import annotations

import pytest
from conftest import run_config

# Partial fine-tuning of EfficientNet-Lite0 on labelled MNIST-5k, tested on sklearn digits (target).
# Without bridging the 8x8 sensor shift both models stay near chance on the target (measured:
# pretrained 0.145 vs random 0.206 at 64 px), so both runs use the target-imitating augmentation.
BUDGET = [
    "strategy=partial",
    "strategy.trainable_groups=2",  # MARGIN was measured at this depth (the default before unfrozen_depth.md)
    "data=mnist_to_digits",
    "augment=mnist_to_digits",
    "data.train_per_class=50",
    "data.image_size=32",
    "trainer.max_epochs=3",
    "trainer.limit_val_batches=0",
    "trainer.enable_progress_bar=false",
    "logger=none",
]


@pytest.mark.slow
def test_pretrained_beats_random_init_on_the_target_domain(tmp_path):
    pretrained = run_config([*BUDGET, "seed=0"], tmp_path / "pretrained", fast=False)
    random_init = run_config([*BUDGET, "seed=0", "backbone.pretrained=false"], tmp_path / "random", fast=False)
    assert random_init["backbone"]["source"] == "random-init"
    p, r = pretrained["metrics"]["test/target_acc"], random_init["metrics"]["test/target_acc"]
    print(f"target acc: pretrained {p:.4f}, random init {r:.4f}")
    assert p > r + MARGIN, (p, r)


MARGIN = 0.07  # measured with this budget, seed 0: pretrained 0.421 vs random init 0.280 (+0.141)
