"""Bad inputs and faults: each answered with one clear, early error (or a controlled warning), nothing lost.

`CASES` is the table: one row per case (overrides or fault injection -> expected error and message
fragment, and the stage it must stop at). `test_bad_input` runs the rows of modes "run", "compose" and
"cli"; the fault rows ("nan_stop", "disk_full", ...) have their own tests below, which take their
fragment from the same row. A stage of "validate" or "data" means the run stopped before any backbone
was built: results.json then has no `backbone` entry (the evidence, rather than the clock).

    python tests/test_bad_inputs.py      # prints the README's Troubleshooting table from CASES
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import contracts
from conftest import CONF, ROOT, compose, run_config, train_cli

EARLY = ("validate", "data")  # stages before any backbone/weights
TEXT = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=1",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.enable_progress_bar=false",
]


@dataclass
class Case:
    """One row: run `overrides` (after `setup(tmp)`), expect `error` whose message holds `fragment`.

    mode: "run" (in-process run), "compose" (Hydra refuses the command line), "cli" (subprocess,
        `exit` code, no traceback), "warn" (the run succeeds with a warning and a results entry),
        "fault" (fault injection with its own test).
    stage: where it must stop (results.json `failure.stage`); validate/data = before any weights.
    fix: the README's "what to do".
    """

    id: str
    overrides: list[str]
    error: str
    fragment: str
    stage: str | None = "validate"
    mode: str = "run"
    fix: str = ""
    setup: Callable[[Path], None] | None = None
    fast: bool = True
    exit: int = 2
    extra: dict = field(default_factory=dict)


# -- fixtures written by the rows ------------------------------------------------------------------
def _png(path: Path, value: int = 128) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    ramp = np.add.outer(np.arange(8), np.arange(8)) * 2  # not constant: a blank image is refused (data.sanity)
    Image.fromarray(np.clip(value + ramp - 14, 0, 255).astype(np.uint8), "L").save(path)


def images(n_a: int = 20, n_b: int = 20, broken: int = 0) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        for i in range(n_a):
            _png(tmp / "imgs" / "a" / f"{i}.png", 40 + i)
        for i in range(n_b):
            _png(tmp / "imgs" / "b" / f"{i}.png", 200 - i)
        for i in range(broken):
            (tmp / "imgs" / "a" / f"broken{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")

    return setup


def blank_images(n_a: int, n_b: int) -> Callable[[Path], None]:
    """Every image one flat grey (a broken export): decodes fine, carries nothing."""

    def setup(tmp: Path) -> None:
        from PIL import Image

        for c, n in (("a", n_a), ("b", n_b)):
            for i in range(n):
                (tmp / "imgs" / c).mkdir(parents=True, exist_ok=True)
                Image.new("L", (8, 8), 40 + i).save(tmp / "imgs" / c / f"{i}.png")

    return setup


def same_images(n_a: int, n_b: int) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        for c, n in (("a", n_a), ("b", n_b)):
            for i in range(n):
                _png(tmp / "imgs" / c / f"{i}.png", 100)

    return setup


def same_in_class_b(n_a: int, n_b: int) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        for i in range(n_a):
            _png(tmp / "imgs" / "a" / f"{i}.png", 40 + i)
        for i in range(n_b):
            _png(tmp / "imgs" / "b" / f"{i}.png", 200)

    return setup


def images_with_blanks(n_a: int, n_b: int, blanks: int) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        from PIL import Image

        images(n_a, n_b)(tmp)
        for i in range(blanks):
            Image.new("L", (8, 8), 0).save(tmp / "imgs" / "a" / f"{i}.png")  # replaces a good one

    return setup


def image_pair(n_source: int, n_target: int) -> Callable[[Path], None]:
    """Source images in `imgs/`, a smaller target domain with the same classes in `target/`."""

    def setup(tmp: Path) -> None:
        images(n_source, n_source)(tmp)
        for i in range(n_target):
            _png(tmp / "target" / "a" / f"{i}.png", 60 + i)
            _png(tmp / "target" / "b" / f"{i}.png", 180 - i)

    return setup


def empty_classes(tmp: Path) -> None:
    (tmp / "imgs" / "a").mkdir(parents=True)
    (tmp / "imgs" / "b").mkdir(parents=True)


def _finished_run(d: Path) -> None:
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps({"status": "ok"}))


def _torn_checkpoint(d: Path) -> None:
    (d / "checkpoints").mkdir(parents=True)
    (d / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 torn")


def csv(text: str) -> Callable[[Path], None]:
    return lambda tmp: (tmp / "d.csv").write_text(text)


def model_folder(*files: str, config: dict | None = None, index: list[str] | None = None) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        d = tmp / "model"
        d.mkdir()
        (d / "config.json").write_text(json.dumps(config or {"model_type": "bert"}))
        for f in files:
            (d / f).write_text("{}")
        if index:
            (d / "model.safetensors.index.json").write_text(
                json.dumps({"weight_map": {f"w{i}": s for i, s in enumerate(index)}})
            )
            (d / index[0]).write_text("")

    return setup


class _Evil:
    """Pickles to `os.system(...)`: loading it unsafely would run the command."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return os.system, (f"touch {self.target}",)


def pickled_code(tmp: Path) -> None:
    import torch

    torch.save({"conv1.weight": _Evil(tmp / "pwned")}, tmp / "evil.pth")


def scheduler_module(tmp: Path) -> None:
    """`my_schedules.one_cycle(optimizer, total_steps)`: a user's OneCycleLR factory, importable from `tmp`."""
    (tmp / "my_schedules.py").write_text(
        "import torch\n\n\ndef one_cycle(optimizer, total_steps):\n"
        "    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.01, total_steps=total_steps)\n"
    )
    sys.path.insert(0, str(tmp))


IMG = ["data=imagefolder", "data.root={tmp}/imgs", "data.num_workers=0"]
IMG_PAIR = [*IMG, "data.target_root={tmp}/target"]
CSV = ["backbone=minilm", "data=text_files", "data.source.path={tmp}/d.csv"]
HF_FOLDER = ["backbone=bert_base", "backbone.path={tmp}/model", "data=reviews"]

CASES = [
    # -- the command line and the config, before anything loads -------------------------------
    Case(
        "unknown_choice",
        ["strategy=finetune_everything"],
        "MissingConfigException",
        "Could not find 'strategy/finetune_everything'",
        None,
        "compose",
        "pick one of the listed options",
    ),
    Case(
        "unknown_key",
        ["data.train_per_clas=5"],
        "Hydra exit 1",
        "Did you mean data.train_per_class?",
        None,
        "cli",
        "fix the key's spelling",
        exit=1,
    ),
    Case(
        "fixed_key_of_a_swept_group",
        ["-m", "hydra.sweep.dir={tmp}/sweep", "strategy=lora,adapter", "strategy.peft_lr=1e-3"],
        "Hydra exit 1",
        "Sweep it too, strategy.peft_lr=choice(1e-3), or run one command per strategy",
        None,
        "cli",
        "Hydra sets it before the sweep, on the default strategy: make it a sweep of one value (where only some of "
        "the swept choices have the key, e.g. `strategy.trainable_groups` in `sweeps/strategies_vs_datasize.yaml`, "
        "whose file sweeps `strategy`, the hint names them: run them in their own command)",
        exit=1,
    ),
    Case(
        "added_unknown_key",
        ["+data.train_per_clas=5"],
        "ConfigError",
        "Did you mean data.train_per_class?",
        fix="fix the spelling (keys are checked against the class's signature)",
    ),
    Case(
        "added_unknown_key_cli",
        ["+data.train_per_clas=5"],
        "exit 2",
        "Did you mean data.train_per_class?",
        None,
        "cli",
        "same, from the command line: exit code 2, no traceback",
    ),
    Case(
        "unknown_optimizer_key",
        ["+optimizer.betaz=[0.9,0.99]"],
        "ConfigError",
        "Did you mean optimizer.betas?",
        fix="use the optimizer's own parameter names",
    ),
    Case(
        "unknown_trainer_key",
        ["+trainer.max_epoch=3"],
        "ConfigError",
        "Did you mean trainer.max_epochs?",
        fix="use `lightning.Trainer` argument names",
    ),
    Case(
        "unknown_strategy_key",
        ["strategy=partial", "+strategy.trainable_group=3"],
        "ConfigError",
        "Did you mean strategy.trainable_groups?",
        fix="see the strategy's YAML for its keys",
    ),
    Case(
        "wrong_type",
        ["trainer.max_epochs=ten"],
        "ConfigError",
        "trainer.max_epochs='ten' should be int",
        fix="give a number",
    ),
    Case(
        "wrong_type_data",
        ["data.batch_size=big"],
        "ConfigError",
        "data.batch_size='big' should be int",
        fix="give an integer",
    ),
    Case(
        "wrong_type_literal",
        ["trainer.deterministic=maybe"],
        "ConfigError",
        "trainer.deterministic='maybe' should be bool",
        fix="true, false or warn",
    ),
    Case("seed_not_int", ["seed=foo"], "ConfigError", "seed='foo' must be an integer >= 0", fix="seed=0, 1, ..."),
    Case(
        "dropout_range",
        ["head.dropout=1.5"],
        "ConfigError",
        "head.dropout=1.5 must be in [0, 1)",
        fix="a probability below 1",
    ),
    Case(
        "negative_weight_decay",
        ["optimizer.weight_decay=-1"],
        "ConfigError",
        "optimizer.weight_decay=-1 must be >= 0",
        fix="0 or more",
    ),
    Case(
        "nan_guard_policy",
        ["callbacks.nan_guard.policy=ignore"],
        "ConfigError",
        "callbacks.nan_guard.policy='ignore' should be 'stop' or 'skip'",
        fix="stop or skip",
    ),
    Case(
        "norm_unknown",
        ["strategy=partial", "strategy.norm=frozn"],
        "ConfigError",
        "Did you mean 'frozen'?",
        fix="strategy.norm=train, frozen or adabn",
    ),
    Case(
        "norm_batch_of_one",
        ["strategy=partial", "strategy.norm=train", "data.batch_size=1"],
        "ConfigError",
        "Use strategy.norm=frozen",
        "build",
        fix="strategy.norm=frozen, or a larger data.batch_size",
    ),
    Case(
        "geometry_unknown_key",
        ["data=mnist_to_digits", "+data.geometry.target.zoom=2"],
        "DataError",
        "use crop, pad, fill, resize",
        "data",
        fix="data.geometry.<source|target>.{crop,pad,fill,resize}",
    ),
    Case(
        "da_loss_cannot_act",
        ["data=mnist_to_digits", "strategy=feature_extraction", "adaptation=dann"],
        "ConfigError",
        "head.bottleneck=256",
        "build",
        fix="head.bottleneck=256 (the loss acts on it), or a strategy that trains the backbone",
    ),
    Case(
        "da_running_stats_joint",
        ["data=mnist_to_digits", "adaptation=dann", "da.forward=joint", "da.running_stats=source"],
        "ConfigError",
        "da.running_stats=source needs separate passes",
        fix="`da.forward=separate` (one pass has one set of statistics), or `da.running_stats=both`",
    ),
    Case(
        "da_epoch_unknown",
        ["data=mnist_to_digits", "adaptation=dann", "da.epoch=shortest"],
        "ConfigError",
        "da.epoch='shortest' must be 'source' or 'longest'",
        fix="`da.epoch=source` (an epoch is one pass over the labelled source data) or `da.epoch=longest`",
    ),
    Case(
        "da_rng_unknown",
        ["data=mnist_to_digits", "adaptation=dann", "da.rng=separate"],
        "ConfigError",
        "da.rng='separate' must be 'isolated' or 'shared'",
        fix="`da.rng=isolated` (the target side draws its own random stream) or `da.rng=shared`",
    ),
    Case(
        "da_target_smaller_than_a_batch",
        [*IMG_PAIR, "adaptation=dann", "strategy=partial", "data.batch_size=16"],
        "DataError",
        "fewer than one batch",
        "build",
        setup=image_pair(20, 6),
        fix="more unlabelled target images, or a smaller data.batch_size",
    ),
    Case(
        "objective_without_target",
        ["+objective=val/target_snd"],
        "ConfigError",
        "has none: use a domain pair",
        "data",
        fix="a domain pair, or objective=val/acc",
    ),
    Case(
        "missing_root", ["data=imagefolder"], "ConfigError", "data.root is required", fix="`data.root=/path/to/images`"
    ),
    Case(
        "missing_model_name",
        ["backbone=timm"],
        "ConfigError",
        "backbone.model_name is required",
        fix="`backbone.model_name=resnet18` (any `timm.list_models()` name)",
    ),
    Case(
        "peft_on_image_backbone",
        ["strategy=prefix_tuning"],
        "ConfigError",
        "can't adapt an image backbone",
        fix="PEFT prompt/prefix methods need a text backbone (`backbone=minilm data=reviews`)",
    ),
    Case(
        "text_backbone_image_data",
        ["backbone=minilm"],
        "ConfigError",
        "takes text inputs but data=digits is image data",
        fix="pair text backbones with text data",
    ),
    Case(
        "zero_shot_on_instructions",
        ["backbone=smollm2", "data=instructions", "strategy=zero_shot", *TEXT],
        "ConfigError",
        "nothing to do on instruction data",
        fast=False,
        fix="train (e.g. strategy=lora) or max_epochs=0",
    ),
    Case(
        "instructions_on_an_encoder",
        ["backbone=minilm", "data=instructions", "strategy=lora"],
        "ConfigError",
        "needs a causal language model",
        fast=False,
        fix="a causal LM backbone (e.g. backbone=smollm2)",
    ),
    Case(
        "lora_rank_as_wide_as_the_model",
        ["backbone=minilm", "data=reviews", "strategy=lora", "strategy.r=384", *TEXT],
        "ConfigError",
        "is not a low rank for 'minilm'",
        fast=False,
        fix="strategy.r below the adapted layers' width (typically 4-64); refused before weights load",
    ),
    Case(
        "lora_target_pattern_not_a_regex",
        ["strategy=lora", r"strategy.target_modules='blocks\.[56'"],
        "ConfigError",
        "must be a list of module names or a valid regular expression",
        fix=r"a list of module names, or a valid pattern matching whole names (e.g. `blocks\.6\..*conv_pw`)",
    ),
    Case(
        "lora_merge_check_zero",
        ["strategy=lora", "strategy.merge_check=0"],
        "ConfigError",
        "must be a number of test examples >= 1, or null",
        fix="a number of test examples (e.g. `strategy.merge_check=100`), or null for the whole test set",
    ),
    Case(
        "lora_dropout_range",
        ["strategy=lora", "strategy.dropout=1.5"],
        "ConfigError",
        "strategy.dropout=1.5 must be 'auto' or in [0, 1)",
        fix="`strategy.dropout=auto` (0 on image backbones, 0.05 on text) or a probability below 1",
    ),
    Case(
        "memory_format_unknown",
        ["memory_format=nhwc"],
        "ConfigError",
        "memory_format='nhwc' must be 'auto', 'channels_last' or 'contiguous'",
        fix="memory_format=auto (channels_last on a CPU for depthwise-conv backbones), channels_last or contiguous",
    ),
    Case(
        "backbone_dropout_unknown",
        ["backbone_dropout=frozen"],
        "ConfigError",
        "backbone_dropout='frozen' must be 'after_trainable', 'all' or 'frozen_subtrees'",
        fix="backbone_dropout=after_trainable (training mode after the first trainable parameter), all or "
        "frozen_subtrees (the rule before 2026-12-07)",
    ),
    Case(
        "depthwise_crop_unknown",
        ["depthwise_crop=maybe"],
        "ConfigError",
        "depthwise_crop='maybe' must be 'auto', true or false",
        fix="depthwise_crop=auto (on a CPU for depthwise-conv backbones), true or false (the layers' own kernels)",
    ),
    Case(
        "cpu_devices_minus_one",
        ["hardware.devices=-1"],
        "ConfigError",
        "on a CPU (hardware.accelerator=cpu) devices is the number of processes",
        fix="hardware.devices=1 (or hardware=ddp_cpu for several CPU processes); -1 and device ids select GPUs",
    ),
    Case(
        "devices_not_a_count",
        ["hardware.devices=abc"],
        "ConfigError",
        "hardware.devices='abc' must be a device count in [1, 1024]",
        fix="a device count, -1 / auto (all GPUs), or device ids such as [0,1] or '0,1'",
    ),
    Case(
        "fused_optimizer_unknown",
        ["fused_optimizer=yes"],
        "ConfigError",
        "fused_optimizer='yes' must be 'auto', true or false",
        fix="fused_optimizer=false (default: torch's implementation), true (the fused kernel) or auto (fused on a CPU)",
    ),
    Case(
        "fill_uninitialized_memory_not_a_bool",
        ["fill_uninitialized_memory=yes"],
        "ConfigError",
        "fill_uninitialized_memory='yes' must be true or false",
        fix="fill_uninitialized_memory=false (default: same results, faster) or true (NaN-fill new tensors, to debug)",
    ),
    Case(
        "channels_last_on_a_text_backbone",
        ["memory_format=channels_last", "backbone=minilm", "data=reviews"],
        "ConfigError",
        "memory_format=channels_last lays out convolutional image backbones",
        fast=False,
        fix="memory_format=auto (or contiguous) for text backbones; refused before weights load",
    ),
    Case(
        "more_groups_than_the_model",
        ["backbone=minilm", "data=reviews", "strategy=partial", "strategy.trainable_groups=9", *TEXT],
        "ConfigError",
        "but the backbone has only 7 layer groups (embeddings, 6 transformer blocks)",
        fast=False,
        fix="at most the model's layer groups (from its config.json); refused before weights load",
    ),
    Case(
        "more_groups_than_the_image_model",
        ["strategy=progressive", "strategy.max_groups=12"],
        "ConfigError",
        "strategy.max_groups=12 but the backbone has only 8 layer groups (0:conv_stem",
        fix="at most the model's layer groups (a timm model built on the meta device); before weights load",
    ),
    Case(
        "progressive_with_a_scheduler_it_cant_extend",
        ["strategy=progressive", "++scheduler={_target_:my_schedules.one_cycle,_partial_:true}"],
        "ConfigError",
        "OneCycleLR keeps per-group settings in the optimizer's groups",
        "fit",
        fix="a scheduler with per-group base_lrs/lr_lambdas only (linear_warmup, inv_annealing, LambdaLR, StepLR, "
        "CosineAnnealingLR, ...), or strategy=partial/full; refused before the first step",
        setup=scheduler_module,
    ),
    Case(
        "more_prompt_tokens_than_the_context",
        ["backbone=minilm", "data=reviews", "strategy=prompt_tuning", "strategy.num_virtual_tokens=500", *TEXT],
        "ConfigError",
        "exceed the 512-token context of 'minilm'",
        fast=False,
        fix="fewer num_virtual_tokens or a shorter max_length",
    ),
    # -- found by the property test over the config space (test_config_space.py) ------------------------
    Case(
        "group_given_a_bool",
        ["cache=False"],
        "exit 2",
        "cache is a config group",
        None,
        "cli",
        "name one of the group's files (cache=off)",
    ),
    Case(
        "section_given_a_scalar",
        ["plan=true"],
        "exit 2",
        "plan is a section of settings",
        None,
        "cli",
        "set one of its keys (plan.enabled=true)",
    ),
    Case(
        "scalar_where_a_config_is_built",
        ["scheduler=1000000000.0"],
        "ConfigError",
        "should be a config with a `_target_`",
        "validate",
        "run",
        "a mapping with _target_, or null",
    ),
    Case(
        "flag_not_a_bool",
        ["plan.enabled=null"],
        "ConfigError",
        "plan.enabled=None should be true or false",
        "validate",
        "run",
        "true or false",
    ),
    Case(
        "partial_flag_not_a_bool",
        ["optimizer._partial_=maybe"],
        "ConfigError",
        "optimizer._partial_='maybe' should be true or false",
        "validate",
        "run",
        "leave Hydra's _partial_ as the YAML has it",
    ),
    Case(
        "library_refuses_a_value",
        ["callbacks.checkpoint.save_top_k=1000000000"],
        "ConfigError",
        "could not be built (MisconfigurationException",
        "cache",
        "run",
        "fix the values under the key it names",
    ),
    Case(
        "zero_input_channels",
        ["backbone.in_chans=0"],
        "ConfigError",
        "could not be built (ValueError: Input and base channel counts",
        "backbone",
        "run",
        "in_chans 1 or 3",
    ),
    Case(
        "lightning_refuses_a_setting",
        ["hardware.devices=[]"],
        "ConfigError",
        "Lightning refused a setting",
        "cache",
        "run",
        "fix the trainer.*/hardware.* value it names",
    ),
    Case(
        "huge_device_count",
        ["hardware.devices=1000000000"],
        "ConfigError",
        "must be a device count in [1, 1024]",
        "validate",
        "run",
        "a real device count (it waited for a billion processes)",
    ),
    Case(
        "unknown_accelerator",
        ["hardware.accelerator=3"],
        "ConfigError",
        "must be one of auto, cpu, gpu, cuda, mps, tpu",
        "validate",
        "run",
        "hardware=cpu or gpu",
    ),
    Case(
        "negative_split_seed",
        ["data.split_seed=-1"],
        "ConfigError",
        "data.split_seed=-1 must be an integer >= 0",
        "validate",
        "run",
        "a seed >= 0",
    ),
    Case(
        "huge_image_size",
        ["data.image_size=1000000000"],
        "ConfigError",
        "must be a side length in [1, 4096]",
        "validate",
        "run",
        "a real side length (it overflowed the tensor size)",
    ),
    Case(
        "huge_padding",
        ["data.geometry.source.pad=1000000000"],
        "DataError",
        "must be a whole number of pixels in [0, 4096]",
        "data",
        "run",
        "a few pixels",
    ),
    Case(
        "huge_worker_count",
        ["data.num_workers=1000000000"],
        "ConfigError",
        "must be a worker count in [0, 256]",
        "validate",
        "run",
        "a handful of workers (it exhausted memory)",
    ),
    Case(
        "huge_bottleneck",
        ["head.bottleneck=1000000000"],
        "ConfigError",
        "must be a width in [1, 65536]",
        "validate",
        "run",
        "e.g. 256 (it exhausted memory)",
    ),
    Case(
        "fractional_batch_limit_above_one",
        ["trainer.limit_test_batches=2.5"],
        "ConfigError",
        "must be a fraction in [0, 1.0] or a whole batch count",
        "validate",
        "run",
        "<= 1.0, or an int",
    ),
    Case(
        "path_given_a_number",
        ["cache.dir=-1"],
        "ConfigError",
        "cache.dir=-1 should be a path (or null)",
        "validate",
        "run",
        "a folder path, or null",
    ),
    Case(
        "unknown_lora_bias",
        ["strategy=lora", "strategy.bias=no_such_value"],
        "ConfigError",
        "must be 'none', 'all' or 'lora_only'",
        "data",
        "run",
        "none, all or lora_only",
    ),
    Case(
        "run_that_never_ends",
        ["trainer.max_epochs=-1"],
        "ConfigError",
        "never ends (Lightning trains forever)",
        "validate",
        "run",
        "bound it: max_epochs, max_steps or +trainer.max_time",
    ),
    Case(
        "null_epochs_means_1000",
        ["trainer.max_epochs=null"],
        "ConfigError",
        "means Lightning's default of 1000 epochs",
        "validate",
        "run",
        "a number of epochs or steps",
    ),
    Case(
        "unknown_experiment",
        ["experiment=no_such_experiment"],
        "MissingConfigException",
        "Could not find 'experiment/no_such_experiment'",
        None,
        "compose",
        "pick one of the listed presets (a typo no longer runs the default job)",
    ),
    Case(
        "rerun_into_a_finished_run_dir",
        [],
        "exit 2",
        "already holds a run",
        None,
        "cli",
        "ckpt_path=last to resume, a new dir, or overwrite=true (the earlier run moves to replaced/<n>/)",
        setup=lambda tmp: _finished_run(tmp / "run"),
    ),
    Case(
        "corrupt_checkpoint_on_resume",
        ["ckpt_path=last"],
        "ConfigError",
        "can't be loaded (corrupt or truncated)",
        fix="resume from one of the intact checkpoints it names (ckpt_path=<path>)",
        setup=lambda tmp: _torn_checkpoint(tmp / "run"),
    ),
    Case(
        "resume_a_checkpoint_of_another_run",
        [],
        "ConfigError",
        "written by a different run",
        "data",
        "fault",
        "resume with the run's own backbone/strategy/data (refused before weights load)",
    ),
    Case(
        "zero_training_steps",
        ["trainer.max_steps=0"],
        "status untrained",
        "0 optimizer steps",
        None,
        "fault",
        "results.json says `untrained` with a note: the metrics are the untrained model's",
    ),
    Case(
        "sigterm_from_a_scheduler",
        [],
        "exit 143",
        "interrupted",
        "fit",
        "fault",
        "results.json failed/interrupted; resume with ckpt_path=last",
    ),
    Case(
        "ddp_without_a_reachable_rendezvous",
        ["hardware=ddp_cpu"],
        "TrainingError",
        "could not reach each other",
        "validate",
        "fault",
        "bring the loopback up (on one node checked before anything loads) / MASTER_ADDR reachable (across nodes: "
        "bounded by hardware.strategy.timeout.seconds, 120 s)",
    ),
    Case(
        "export_parity_on_large_logits",
        [],
        "-",
        "relative to the logits' scale",
        None,
        "fault",
        "`--tol` is relative to max(1, the largest absolute logit); a failure says how much and how many "
        "predictions change",
    ),
    Case(
        "gpu_without_cuda",
        ["hardware=gpu"],
        "ConfigError",
        "needs a CUDA GPU, but none is visible",
        fix="hardware=cpu",
        extra={"needs_no_cuda": True},
    ),
    Case(
        "ckpt_path_missing",
        ["ckpt_path={tmp}/nope.ckpt"],
        "ConfigError",
        "no checkpoint at",
        fix="point ckpt_path at an existing .ckpt (or `ckpt_path=last` with the run's hydra.run.dir)",
    ),
    Case(
        "adaptation_without_target",
        ["adaptation=dann"],
        "ConfigError",
        "needs a data config with a target domain",
        "data",
        fix="a domain pair (`data=mnist_to_digits`) or adaptation=none",
    ),
    Case(
        "zero_shot_label_count",
        ["backbone=minilm", "data=reviews", "strategy=zero_shot", "strategy.labels=[good,bad,meh]", *TEXT],
        "ConfigError",
        "strategy.labels has 3 names but the data has 2 classes",
        "data",
        fast=False,
        fix="one name per class, in class order",
    ),
    # -- data ------------------------------------------------------------------------------------
    Case(
        "train_per_class_too_big",
        ["data.train_per_class=1000"],
        "DataError",
        "Use data.train_per_class<=",
        "data",
        fix="a smaller K, or null for all",
    ),
    Case(
        "train_per_class_zero", ["data.train_per_class=0"], "DataError", "must be an integer >= 1", "data", fix="K >= 1"
    ),
    Case(
        "class_too_small",
        [*IMG, "data.train_per_class=5"],
        "DataError",
        "class 'b' of imgs has only",
        "data",
        setup=images(20, 3),
        fix="fewer per class, or more images of that class",
    ),
    Case(
        "image_root_not_found",
        ["data=imagefolder", "data.root={tmp}/missing"],
        "DataError",
        "does not exist or is not a folder",
        "data",
        fix="point data.root at root/<class>/*.jpg",
    ),
    Case(
        "empty_image_folder",
        IMG,
        "DataError",
        "no images found",
        "data",
        setup=empty_classes,
        fix="put images in the class folders",
    ),
    Case(
        "corrupt_image",
        IMG,
        "DataError",
        "set data.bad_files=skip to drop them",
        "data",
        setup=images(broken=1),
        fix="remove the named files, or data.bad_files=skip",
    ),
    Case(
        "corrupt_images_over_threshold",
        [*IMG, "data.bad_files=skip", "data.max_bad_fraction=0.01"],
        "DataError",
        "exceeds data.max_bad_fraction=0.01",
        "data",
        setup=images(broken=2),
        fix="clean the folder, or raise the threshold",
    ),
    Case(
        "corrupt_images_skipped",
        [*IMG, "data.bad_files=skip", "data.max_bad_fraction=0.1"],
        "warning",
        "skipping 1 undecodable images",
        None,
        "warn",
        setup=images(broken=1),
        fix="the run goes on; results.json `skipped_files` counts them",
        extra={"result": ("skipped_files", 1)},
    ),
    Case(
        "blank_images",
        IMG,
        "DataError",
        "training inputs are constant (blank images",
        "inputs",
        setup=blank_images(20, 20),
        fix="fix or remove the blank files (the message names them)",
    ),
    Case(
        "all_images_identical",
        IMG,
        "DataError",
        "every source training input is identical",
        "inputs",
        setup=same_images(20, 20),
        fix="the files decode to one picture: check the export that wrote them",
    ),
    Case(
        "class_of_one_image",
        IMG,
        "DataError",
        "examples that are all the same input",
        "inputs",
        setup=same_in_class_b(20, 20),
        fix="check that class's files (copies of one image)",
    ),
    Case(
        "some_blank_images",
        IMG,
        "warning",
        "training input(s) are constant",
        None,
        "warn",
        setup=images_with_blanks(20, 20, 2),
        fix="the run goes on; results.json `input_check.source.constant` counts them",
        extra={"result": ("input_check", None)},
    ),
    Case(
        "csv_label_gap",
        [*CSV, *TEXT, "strategy=zero_shot"],
        "warning",
        "have no examples of [2]",
        None,
        "warn",
        fast=False,
        setup=csv("text,label\n" + "".join(f"good thing {i},0\nbad thing {i},1\nodd thing {i},3\n" for i in range(12))),
        fix="integer labels with a gap: the classes are the values present; check the column",
        extra={"result": ("train_size", None)},
    ),
    Case(
        "one_class_folder",
        IMG,
        "DataError",
        "has 1 class (a): classification needs at least 2",
        "data",
        setup=images(20, 0),
        fix="one sub-folder per class, at least two",
    ),
    Case(
        "unwritable_logger_dir",
        ["logger=tensorboard", "logger.tensorboard.save_dir=/proc/transferlab"],
        "ConfigError",
        "logger.tensorboard.save_dir='/proc/transferlab' can't be written",
        fix="a writable folder (the run dir by default), or another logger",
    ),
    Case(
        "bad_files_policy",
        ["data=imagefolder", "data.root={tmp}", "data.bad_files=ignore"],
        "DataError",
        "must be 'error' or 'skip'",
        "data",
        fix="error or skip",
    ),
    Case(
        "csv_not_found",
        [*CSV, *TEXT],
        "DataError",
        "not found; set data.source.path",
        "data",
        fast=False,
        fix="an existing .csv/.tsv/.jsonl",
    ),
    Case(
        "csv_label_column_missing",
        [*CSV, *TEXT],
        "DataError",
        "has no column(s) ['label']",
        "data",
        setup=csv("text,stars\ngood,5\nbad,1\n"),
        fast=False,
        fix="data.source.label_column=<your column>",
    ),
    Case(
        "csv_no_rows",
        [*CSV, *TEXT],
        "DataError",
        "has no rows",
        "data",
        setup=csv("text,label\n"),
        fast=False,
        fix="a file with data",
    ),
    Case(
        "csv_one_class",
        [*CSV, *TEXT],
        "DataError",
        "classification needs at least 2",
        "data",
        setup=csv("text,label\n" + "fine thing,pos\n" * 10),
        fast=False,
        fix="at least two labels",
    ),
    Case(
        "adabn_without_batch_norm",
        ["backbone=minilm", "data=reviews", "strategy=lora", "strategy.norm=adabn", *TEXT],
        "warning",
        "nothing was re-estimated",
        None,
        "warn",
        fast=False,
        fix="the run goes on; results.json `norm.adabn.layers` is 0 (LayerNorm has no running statistics)",
        extra={"result": ("norm", None)},
    ),
    Case(
        "text_truncated",
        [*CSV, "backbone.max_length=16", "strategy=zero_shot", *TEXT],
        "warning",
        "are longer than backbone.max_length=16 tokens",
        None,
        "warn",
        fast=False,
        setup=csv(
            "text,label\n"
            + "".join(f"{'very ' * 30}good {i},positive\n{'quite ' * 3}bad {i},negative\n" for i in range(30))
        ),
        fix="raise backbone.max_length; results.json `truncation` counts them",
        extra={"result": ("truncation", None)},
    ),
    # -- weights and hubs ---------------------------------------------------------------------------
    Case(
        "hub_offline_image",
        ["backbone=resnet50"],
        "WeightsError",
        "give a local weights file: `backbone.weights=",
        "backbone",
        fix="`backbone.weights=/path/model.safetensors` (fails within seconds, no retries)",
    ),
    Case(
        "hub_offline_text",
        ["backbone=bert_base", "data=reviews", *TEXT],
        "WeightsError",
        "set `backbone.path=DIR`",
        "backbone",
        fast=False,
        fix="`hf download` elsewhere, then backbone.path=DIR",
    ),
    Case(
        "weights_file_missing",
        ["backbone=timm", "backbone.model_name=resnet18", "backbone.weights={tmp}/nope.safetensors"],
        "WeightsError",
        "weights file not found",
        fix="an existing .safetensors / .pth state_dict",
    ),
    Case(
        "pickled_code_in_weights",
        ["backbone=timm", "backbone.model_name=resnet18", "backbone.weights={tmp}/evil.pth"],
        "WeightsError",
        "pickled objects are refused",
        "backbone",
        setup=pickled_code,
        fix="tensors only (weights_only loading); convert to .safetensors",
    ),
    Case(
        "model_folder_missing",
        [*HF_FOLDER, *TEXT],
        "WeightsError",
        "does not exist or is not a folder",
        fast=False,
        fix="a folder saved with save_pretrained",
    ),
    Case(
        "model_folder_without_weights",
        [*HF_FOLDER, *TEXT],
        "WeightsError",
        "has no weights file: expected model.safetensors",
        setup=model_folder("tokenizer.json"),
        fast=False,
        fix="copy model.safetensors into the folder",
    ),
    Case(
        "model_folder_missing_shard",
        [*HF_FOLDER, *TEXT],
        "WeightsError",
        "model-00002-of-00002.safetensors is missing",
        setup=model_folder(
            "tokenizer.json", index=["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
        ),
        fast=False,
        fix="copy the complete folder",
    ),
    Case(
        "model_folder_without_tokenizer",
        [*HF_FOLDER, *TEXT],
        "WeightsError",
        "has no tokenizer files",
        setup=model_folder("model.safetensors"),
        fast=False,
        fix="`tokenizer.save_pretrained(DIR)`",
    ),
    Case(
        "remote_code_not_trusted",
        [*HF_FOLDER, *TEXT],
        "ConfigError",
        "backbone.trust_remote_code=true",
        setup=model_folder(
            "model.safetensors",
            "tokenizer.json",
            config={"model_type": "custom", "auto_map": {"AutoModel": "modeling_custom.Model"}},
        ),
        fast=False,
        fix="set it only if you trust the folder's code",
    ),
    # -- training faults (fault injection; own tests below) ---------------------------------------------
    Case(
        "nan_stop",
        [],
        "TrainingError",
        "training stopped at step 3",
        "fit",
        "fault",
        "lower strategy.lr / precision=32-true; resume from the named checkpoint",
    ),
    Case(
        "nan_skip",
        [],
        "warning",
        "step skipped (callbacks.nan_guard.policy=skip",
        None,
        "fault",
        "results.json `nan_guard.skipped_steps` lists them",
    ),
    Case(
        "disk_full",
        [],
        "TrainingError",
        "disk full while writing checkpoint",
        "fit",
        "fault",
        "free space; the previous last.ckpt is intact: ckpt_path=last",
    ),
    # -- secrets and safe loading -----------------------------------------------------------------------
    Case(
        "secrets_not_saved",
        [],
        "-",
        "***",
        None,
        "fault",
        "tokens are masked in results.json, logger params, .hydra/*.yaml and logs",
    ),
    Case("secret_in_log", [], "-", "***", None, "fault", "log records are masked too"),
    Case(
        "torch_load_weights_only",
        [],
        "-",
        "weights_only=True",
        None,
        "fault",
        "every torch.load in src/ refuses pickled code",
    ),
]
ROW = {c.id: c for c in CASES}


def _fill(args: list[str], tmp: Path) -> list[str]:
    return [a.replace("{tmp}", str(tmp)) for a in args]


def _result(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


@pytest.mark.parametrize("case", [c for c in CASES if c.mode in ("run", "compose", "cli", "warn")], ids=lambda c: c.id)
def test_bad_input(case: Case, tmp_path: Path, caplog) -> None:
    if case.extra.get("needs_no_cuda"):
        import torch

        if torch.cuda.is_available():
            pytest.skip("CUDA is available here")
    if case.setup:
        case.setup(tmp_path)
    args, run_dir = _fill(case.overrides, tmp_path), tmp_path / "run"
    if case.mode == "cli":
        from conftest import FAST

        flags = [a for a in args if a in ("-m", "--multirun")]  # argparse: before the overrides
        rest = [a for a in args if a not in flags]
        out = train_cli([*flags, *FAST, *rest, f"hydra.run.dir={run_dir}"], timeout=300)
        assert out.returncode == case.exit, out.stderr[-2000:]
        assert case.fragment in out.stderr and "Traceback" not in out.stderr, out.stderr[-2000:]
        return
    if case.mode == "compose":
        with pytest.raises(Exception, match=re.escape(case.fragment)) as info:
            run_config(args, run_dir, fast=case.fast)
        assert type(info.value).__name__ == case.error
        group = args[0].split("=", 1)[0]  # the options of the group it names are all listed
        assert all(re.search(rf"\b{re.escape(n)}\b", str(info.value)) for n in contracts.choices(CONF, group))
        assert not (run_dir / "results.json").exists()
        return
    if case.mode == "warn":
        with caplog.at_level(logging.WARNING):
            result = run_config(args, run_dir, fast=case.fast)
        assert result["status"] == "ok" and case.fragment in caplog.text
        key, value = case.extra["result"]
        assert result[key] == value if value is not None else result[key]
        assert _result(run_dir)[key] == result[key]
        return
    from transferlab.errors import TransferlabError

    with pytest.raises(TransferlabError) as info:
        run_config(args, run_dir, fast=case.fast)
    assert type(info.value).__name__ == case.error
    assert case.fragment in str(info.value), str(info.value)
    res = _result(run_dir)
    assert res["status"] == "failed" and case.fragment in res["error"]
    assert res["failure"]["stage"] == case.stage, res["failure"]
    if case.stage in EARLY:
        assert "backbone" not in res and "params" not in res  # stopped before any backbone/weights
    if case.id == "pickled_code_in_weights":
        assert not (tmp_path / "pwned").exists()  # the payload never ran


# -- training faults ----------------------------------------------------------------------------------
class NanInputs(L.Callback):
    """Fault injection: the inputs of the batch at optimizer step `step` become NaN (bad data / overflow)."""

    def __init__(self, step: int, rank: int | None = None) -> None:
        self.step, self.rank = step, rank  # rank: poison only that process's batch (DDP)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step and self.rank in (None, trainer.global_rank):
            batch.get("source", batch)["inputs"].fill_(float("nan"))


def _inject(step: int) -> list[str]:
    return ["+callbacks.inject._target_=test_bad_inputs.NanInputs", f"+callbacks.inject.step={step}"]


def _load_ckpt(path: Path) -> dict:
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    return ckpt


def test_nan_at_step_k_stops_there_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    k, run_dir = 3, tmp_path / "run"
    from transferlab.errors import TrainingError

    with pytest.raises(TrainingError, match=ROW["nan_stop"].fragment) as info:
        run_config(["trainer.max_epochs=3", *_inject(k)], run_dir)  # 2 steps per epoch: k = epoch 1, batch 1
    assert "Likely causes" in str(info.value) and "last.ckpt" in str(info.value)
    assert "in head; lower strategy.lr)" in str(info.value)  # the group with the largest rate, and its knob
    res = _result(run_dir)
    assert res["status"] == "failed" and res["error"].startswith("TrainingError: training stopped at step 3")
    assert res["failure"]["reason"] == "non_finite_loss" and res["failure"]["step"] == k
    assert res["failure"]["stage"] == "fit" and res["failure"]["epoch"] == 1
    last = Path(res["failure"]["last_checkpoint"])
    assert last == run_dir / "checkpoints" / "last.ckpt"
    ckpt = _load_ckpt(last)  # loads with weights_only=True, all weights finite
    assert ckpt["global_step"] == 2 < k and ckpt["epoch"] == 0
    assert sorted(p.name for p in last.parent.iterdir()) == ["epoch=0-step=2.ckpt", "last.ckpt"]


def test_nan_skip_policy_skips_the_step_and_finishes(tmp_path: Path, caplog) -> None:
    run_dir = tmp_path / "run"
    with caplog.at_level(logging.WARNING):
        result = run_config(["trainer.max_epochs=2", "callbacks.nan_guard.policy=skip", *_inject(1)], run_dir)
    assert ROW["nan_skip"].fragment in caplog.text
    assert result["status"] == "ok" and result["nan_guard"] == {
        "policy": "skip",
        "check_grads": True,
        "skipped_steps": [1],
    }
    assert result["global_step"] == 4 and all(v is None or math.isfinite(v) for v in result["metrics"].values())
    assert _load_ckpt(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 4


def test_nan_skip_policy_puts_back_the_running_statistics_the_bad_batch_moved(tmp_path: Path) -> None:
    """A head bottleneck's BN normalises with batch statistics: the NaN batch's forward folds NaN into its
    running statistics before the guard sees the loss. Skipping the step restores them, so evaluation and the
    checkpoint stay finite (before: NaN logits, and the epoch-end checkpoint refused as non-finite)."""
    args = ["trainer.max_epochs=2", "callbacks.nan_guard.policy=skip", "head.bottleneck=16", *_inject(1)]
    result = run_config(args, tmp_path / "run")
    assert result["status"] == "ok" and result["nan_guard"]["skipped_steps"] == [1]
    assert all(v is None or math.isfinite(v) for v in result["metrics"].values())
    ckpt = _load_ckpt(tmp_path / "run" / "checkpoints" / "last.ckpt")  # running_mean/var included: all finite
    assert ckpt["global_step"] == 4 and ckpt["state_dict"]["head.1.num_batches_tracked"] == 3


class NanGradients(L.Callback):
    """Fault injection: a finite loss whose gradients are not finite (one head gradient NaN) at step `step`."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_after_backward(self, trainer, pl_module) -> None:
        if trainer.global_step == self.step:
            next(p for p in pl_module.head.parameters() if p.grad is not None).grad.view(-1)[0] = float("nan")


def test_nan_gradients_with_a_finite_loss_are_skipped_or_stop_the_run_at_the_next_loss(tmp_path: Path) -> None:
    """check_grads=auto: with skip the gradient check drops the step; with stop it is off (~3 ms a step spared)
    and the update it lets through makes the next loss non-finite: the run stops there, and the checkpoint on
    disk is the last good one (a non-finite one is never written)."""
    from transferlab.errors import TrainingError

    inject = ["+callbacks.inject._target_=test_bad_inputs.NanGradients", "+callbacks.inject.step=2"]
    skipped = run_config(["trainer.max_epochs=2", "callbacks.nan_guard.policy=skip", *inject], tmp_path / "skip")
    assert skipped["status"] == "ok" and skipped["nan_guard"]["skipped_steps"] == [2]
    assert all(v is None or math.isfinite(v) for v in skipped["metrics"].values())
    with pytest.raises(TrainingError, match="training stopped at step 3"):
        run_config(["trainer.max_epochs=3", *inject], tmp_path / "stop")
    res = _result(tmp_path / "stop")
    assert res["failure"]["reason"] == "non_finite_loss" and res["failure"]["step"] == 3
    assert _load_ckpt(tmp_path / "stop" / "checkpoints" / "last.ckpt")["global_step"] == 2
    with pytest.raises(TrainingError, match="training stopped at step 2"):  # forced on: before the bad update
        run_config(["trainer.max_epochs=3", "callbacks.nan_guard.check_grads=true", *inject], tmp_path / "forced")
    assert _result(tmp_path / "forced")["failure"]["reason"] == "non_finite_gradients"


def test_disk_full_while_checkpointing_keeps_the_previous_last_ckpt(tmp_path: Path, monkeypatch) -> None:
    import torch

    from transferlab.errors import TrainingError

    real_save, calls = torch.save, []

    def save(obj, f, *a, **kw):  # the disk fills up during the second epoch's checkpoint: half a file, then ENOSPC
        if str(f).endswith(".tmp") and "checkpoints" in str(f):
            calls.append(f)
            if len(calls) > 2:
                Path(f).write_bytes(b"PK\x03\x04 half a checkpoint")
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(torch, "save", save)
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingError, match=ROW["disk_full"].fragment) as info:
        run_config(["trainer.max_epochs=2"], run_dir)
    assert "no 'epoch=1-step=4.ckpt' was written" in str(info.value) and "ckpt_path=last" in str(info.value)
    res = _result(run_dir)
    assert res["failure"]["reason"] == "disk_full" and res["failure"]["stage"] == "fit"
    ckpts = run_dir / "checkpoints"
    assert not list(ckpts.glob(".*.tmp"))  # no torn temporary file left behind
    assert _load_ckpt(ckpts / "last.ckpt")["global_step"] == 2  # the epoch-0 checkpoint, intact


# -- secrets and safe loading ---------------------------------------------------------------------------
def test_secrets_never_reach_saved_files(tmp_path: Path, monkeypatch) -> None:
    from conftest import FAST

    hf, wandb, literal = "hf_" + "Ab3" * 12, "0123456789abcdef" * 2 + "01234567", "p4ssw0rd-literal-123"
    env = {"HF_TOKEN": hf, "WANDB_API_KEY": wandb}
    secrets = ["+hf_token=${oc.env:HF_TOKEN}", f"+api_key={literal}"]
    # a whole run in-process: results.json, the CSV logger's hparams.yaml, checkpoints
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    result = run_config(secrets, tmp_path / "run")
    assert result["status"] == "ok"
    # the CLI, stopping at the data check: Hydra's .hydra/*.yaml (written before the run), train.log, the console
    out = train_cli([*FAST, *secrets, "data.train_per_class=1000", f"hydra.run.dir={tmp_path / 'cli'}"], env=env)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"overrides.yaml", "config.yaml", "hparams.yaml", "train.log", "last.ckpt"} <= names, names
    for p in files:
        text = p.read_bytes().decode("utf-8", "ignore")
        assert hf not in text and wandb not in text and literal not in text, p
    for stream in (out.stdout, out.stderr):
        assert hf not in stream and literal not in stream
    for res in (_result(tmp_path / "run"), _result(tmp_path / "cli")):
        assert res["config"]["hf_token"] == ROW["secrets_not_saved"].fragment == res["config"]["api_key"]


def test_secret_in_a_log_record_is_masked(monkeypatch) -> None:
    import io

    from transferlab.infra.redact import RedactFilter

    token = "hf_" + "Zz9" * 12
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", token)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactFilter())
    logger = logging.getLogger("transferlab.test_secret")
    logger.addHandler(handler)
    try:
        logger.warning("logging in with %s", token)
    finally:
        logger.removeHandler(handler)
    assert token not in stream.getvalue() and ROW["secret_in_log"].fragment in stream.getvalue()


def test_every_torch_load_in_src_is_weights_only() -> None:
    calls = []
    for path in sorted((ROOT / "src").rglob("*.py")):
        text = path.read_text()
        for m in re.finditer(r"\btorch\.load\(", text):
            depth, i = 1, m.end()
            while depth and i < len(text):
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 1
            calls.append((path.relative_to(ROOT), text[m.start() : i]))
    assert calls  # the check looks at real calls
    bad = [f"{p}: {c}" for p, c in calls if ROW["torch_load_weights_only"].fragment not in c]
    assert not bad, bad
    assert not re.search(r"trust_remote_code\s*=\s*True", "".join(p.read_text() for p in (ROOT / "src").rglob("*.py")))


SHIPPED = contracts.files(CONF)  # every YAML of every group, globbed


def test_every_shipped_config_is_checked() -> None:
    assert len(SHIPPED) >= 40  # the check below looks at the real tree


@pytest.mark.parametrize("group,name", SHIPPED, ids=[f"{g}={n}" for g, n in SHIPPED])
def test_every_shipped_config_passes_validation(group: str, name: str, tmp_path: Path) -> None:
    """No false alarms: each group file, with partners its classes accept where needed, validates.

    The partners (a text dataset for a text backbone, a domain pair for an adaptation, a text backbone for a
    text-only strategy, values for `???` keys) are derived from what the classes declare (`contracts.partners`).
    """
    from transferlab.config import validate
    from transferlab.errors import ConfigError

    overrides = [f"{group}={name}", *contracts.partners(CONF, [f"{group}={name}"], tmp_path)]
    cfg = compose(overrides, tmp_path)
    if group == "hardware" and contracts.needs_gpu(CONF, name):
        import torch

        if not torch.cuda.is_available():  # the one refusal that is right: no CUDA here
            with pytest.raises(ConfigError, match="needs a CUDA GPU"):
                validate(cfg)
            return
    validate(cfg)


# -- README ----------------------------------------------------------------------------------------------
def _code(text: str) -> str:
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def troubleshooting_table() -> str:
    rows = ["| case | input or fault | result | message (fragment) | what to do |", "|---|---|---|---|---|"]
    for c in CASES:
        given = " ".join(c.overrides).replace("{tmp}/", "").replace("|", "\\|") or "(fault injection)"
        result = c.error if c.mode != "cli" else f"exit {c.exit}"
        rows.append(f"| `{c.id}` | {_code(given)} | {result} | {_code(c.fragment)} | {c.fix} |")
    return "\n".join(rows)


def test_readme_troubleshooting_matches_the_table() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]
    missing = [line for line in troubleshooting_table().splitlines() if line not in section]
    assert not missing, (
        "README's Troubleshooting table is out of date (python tests/test_bad_inputs.py):\n" + "\n".join(missing)
    )
    assert len(CASES) >= 25


if __name__ == "__main__":
    print(troubleshooting_table())
