"""Progressive unfreezing under an LR scheduler: groups that join mid-run follow the run's schedule."""

from __future__ import annotations

import pytest
import torch
from conftest import run_config
from torch.optim import lr_scheduler as S

from transferlab.errors import ConfigError
from transferlab.model.schedules import add_group, linear_warmup, linear_warmup_factor, why_not_extendable

RUN = [
    "strategy=progressive",
    "strategy.unit=step",
    "strategy.warmup_steps=2",
    "strategy.lr_decay=0.5",
    "trainer.max_steps=6",
    "data.image_size=32",
    "data.train_per_class=10",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.enable_progress_bar=false",
    "logger=none",
    "++scheduler={_target_:transferlab.model.schedules.linear_warmup,_partial_:true,warmup:0.5}",
]


def test_joined_groups_follow_the_warmup_schedule_and_their_own_ramp(run_dir, monkeypatch):
    """One group joins per step; each trains at lr x backbone_lr_mult x lr_decay^k x schedule x its ramp."""
    import lightning as L

    import transferlab.strategies.progressive as prog
    from transferlab.strategies.unfreeze import ProgressiveUnfreezing

    used, total = {}, []

    class Record(L.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):  # the LRs this step uses
            total[:] = [int(trainer.estimated_stepping_batches)]
            used[trainer.global_step] = {g["name"]: g["lr"] for g in optimizer.param_groups}

    monkeypatch.setattr(prog.Progressive, "callbacks", lambda self: [ProgressiveUnfreezing(self), Record()])
    result = run_config(RUN, run_dir, fast=False)
    assert result["status"] == "ok" and result["global_step"] == 6
    assert sorted(used) == list(range(6)) and len(used[5]) == 6  # head + 5 joined groups
    for t, lrs in used.items():
        f = linear_warmup_factor(t, total[0], warmup=0.5)
        assert lrs.pop("head") == pytest.approx(1e-3 * f)
        for k, lr in enumerate(lrs.values()):  # joining order: depth k from the top joined at step k + 1
            ramp = min(1.0, (t - (k + 1) + 1) / 2)
            assert lr == pytest.approx(1e-4 * 0.5**k * f * ramp), (t, k)


def _optimizer(n_groups: int = 2) -> torch.optim.Optimizer:
    params = [torch.nn.Parameter(torch.zeros(2)) for _ in range(n_groups + 1)]
    groups = [{"params": [p], "lr": 0.1 / 10**i, "name": f"g{i}"} for i, p in enumerate(params[:n_groups])]
    opt = torch.optim.SGD(groups, lr=0.1, momentum=0.9)
    opt.spare = params[-1]
    return opt


@pytest.mark.parametrize(
    "make",
    [
        lambda o: linear_warmup(o, 10, warmup=0.3),
        lambda o: S.StepLR(o, 2, gamma=0.5),
        lambda o: S.CosineAnnealingLR(o, 10),
        lambda o: S.MultiplicativeLR(o, lambda s: 0.9),
        lambda o: S.SequentialLR(o, [S.LinearLR(o, 0.1, total_iters=3), S.ExponentialLR(o, 0.9)], [3]),
    ],
    ids=["linear_warmup", "StepLR", "CosineAnnealingLR", "MultiplicativeLR", "SequentialLR"],
)
def test_an_added_group_keeps_the_schedules_ratio(make):
    """After `add_group`, stepping works and the new group's LR stays proportional to the first group's."""
    opt = _optimizer()
    sched = make(opt)
    for _ in range(3):
        opt.step()
        sched.step()
    ratio = opt.param_groups[0]["lr"] / opt.param_groups[0]["initial_lr"]
    assert why_not_extendable(sched, opt) is None
    opt.add_param_group({"params": [opt.spare], "lr": 0.02 * ratio, "initial_lr": 0.02, "name": "joined"})
    add_group(sched, 0, 0.02)
    for _ in range(5):
        opt.step()
        sched.step()
        head, joined = opt.param_groups[0], opt.param_groups[-1]
        assert joined["lr"] / 0.02 == pytest.approx(head["lr"] / head["initial_lr"])
    assert len(sched.get_last_lr()) == 3


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda o: S.CyclicLR(o, 0.001, 0.1), "max_lrs"),
        (lambda o: S.OneCycleLR(o, 0.1, total_steps=10), "max_lr"),
        (lambda o: S.ReduceLROnPlateau(o), "min_lrs"),
    ],
    ids=["CyclicLR", "OneCycleLR", "ReduceLROnPlateau"],
)
def test_schedulers_with_other_per_group_state_are_named(make, fragment):
    opt = _optimizer(1)
    assert fragment in why_not_extendable(make(opt), opt)


def test_progressive_with_a_scheduler_it_cant_extend_is_refused_before_training(run_dir, tmp_path, monkeypatch):
    (tmp_path / "one_cycle_factory.py").write_text(
        "import torch\n"
        "def one_cycle(optimizer, total_steps):\n"
        "    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.01, total_steps=total_steps)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    overrides = [*RUN[:-1], "++scheduler={_target_:one_cycle_factory.one_cycle,_partial_:true}"]
    with pytest.raises(ConfigError, match="OneCycleLR keeps per-group settings.*max_lr.*strategy=partial"):
        run_config(overrides, run_dir, fast=False)


def test_results_report_what_was_unfrozen_by_the_end(run_dir):
    """`params` and `norm` stay the before-fit figures; `params_final` and `unfrozen` say what trained at the end."""
    import json

    from conftest import compose

    from transferlab.config.instantiate import build

    args = ["strategy=progressive", "strategy.norm=train", "trainer.max_epochs=3", "logger=none"]
    result = run_config(args, run_dir)  # FAST: 2 batches an epoch; one more group joins each epoch
    on_disk = json.loads((run_dir / "results.json").read_text())
    assert result["status"] == "ok" and all(on_disk[k] == result[k] for k in ("params_final", "unfrozen"))
    assert result["unfrozen"]["groups"] == [
        {"group": "backbone.7:blocks.6", "step": 2, "epoch": 1},
        {"group": "backbone.6:blocks.5", "step": 4, "epoch": 2},
    ]
    groups = {g.name: g for g in build(compose(args, run_dir / "c").backbone).layer_groups()}
    joined = groups["7:blocks.6"].numel() + groups["6:blocks.5"].numel()
    assert result["params"]["trainable"] == 1280 * 10 + 10  # before fit: the head
    assert result["params_final"]["trainable"] == result["params"]["trainable"] + joined
    assert result["params_final"]["total"] == result["params"]["total"]
    assert result["norm"]["trainable_bn_layers"] == 0  # before fit
    bn = result["unfrozen"]["trainable_bn_layers"]
    assert bn > 0 and result["unfrozen"]["batch_stat_bn_layers"] == bn  # norm=train: they used batch statistics
