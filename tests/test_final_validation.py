"""The val metrics (and the DA `selection` scores) describe the final model, also when `max_steps` ends
training mid-epoch: fit's last validation then saw an earlier step, so the run validates again."""

from __future__ import annotations

from types import SimpleNamespace

from conftest import run_config

from transferlab.callbacks.validated import ValidatedAt
from transferlab.run import stages


def _run(tmp_path, name, steps):
    overrides = ["strategy=full", "trainer.max_epochs=5", f"trainer.max_steps={steps}", "cache=off", "seed=0"]
    return run_config(overrides, tmp_path / name)


def test_max_steps_mid_epoch_validates_the_final_model(tmp_path):
    at_epoch_end = _run(tmp_path, "two", 2)  # 2 batches an epoch (FAST): fit validates after step 2
    mid_epoch = _run(tmp_path, "three", 3)  # stops one step into epoch 2: fit's last validation was at step 2
    assert at_epoch_end["global_step"] == at_epoch_end["val_step"] == 2
    assert mid_epoch["global_step"] == mid_epoch["val_step"] == 3
    # before the fix, the 3-step run reported the 2-step model's val metrics to the last digit
    assert mid_epoch["metrics"]["val/loss"] != at_epoch_end["metrics"]["val/loss"]


class _Trainer(SimpleNamespace):
    def validate(self, module, datamodule, verbose):
        self.validations += 1
        self.callbacks[0].step = self.global_step
        self.callback_metrics["val/acc"] = 1.0


def _trainer(val_step, metrics):
    cb = ValidatedAt()
    cb.step = val_step
    return _Trainer(callbacks=[cb], global_step=7, callback_metrics=dict(metrics), validations=0)


def test_validate_final_validates_only_a_stale_or_missing_validation():
    data = SimpleNamespace(fractions=(0.2, 0.2))
    for val_step, metrics, expected in [
        (7, {"val/acc": 0.5}, 0),  # fit validated the final model: nothing to do
        (5, {"val/acc": 0.5}, 1),  # stale: an earlier step's model
        (None, {}, 1),  # fit never validated
    ]:
        trainer = _trainer(val_step, metrics)
        stages.validate_final(trainer, None, data)
        assert trainer.validations == expected, (val_step, metrics)
        assert trainer.callbacks[0].step == 7
    trainer = _trainer(None, {})
    stages.validate_final(trainer, None, SimpleNamespace(fractions=(0.0, 0.2)))  # no val split: nothing to validate
    assert trainer.validations == 0
