"""The 2026-12-07 study tabulators under docs/results: each chooses on validation, never on test, and pairs by seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import load_script


def _write(job: Path, result: dict, overrides: list[str] | None = None) -> None:
    job.mkdir(parents=True)
    (job / "results.json").write_text(json.dumps({"status": "ok", "global_step": 80, **result}))
    if overrides is not None:
        (job / ".hydra").mkdir()
        (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))


def _full(seed: int, lr: float, val: float, test: float, pretrained: bool = True) -> dict:
    return {
        "strategy": "full",
        "train_per_class": 4,
        "seed": seed,
        "norm": {"policy": "frozen"},
        "stage_s": {"fit": 1.0},
        "config": {"backbone": {"name": "efficientnet_lite0", "pretrained": pretrained}, "strategy": {"lr": lr}},
        "metrics": {"val/acc": val, "test/acc": test},
    }


def test_pretrained_vs_scratch_chooses_on_val_and_pairs_by_seed(tmp_path: Path):
    tab = load_script("pvs_tabulate", "docs/results/pretrained_vs_scratch/tabulate.py")
    for seed in (0, 1):
        # lr 3e-3 has the better val and the worse test: the val choice must take it anyway
        _write(tmp_path / "pretrained" / f"a{seed}", _full(seed, 1e-3, val=0.80, test=0.95))
        _write(tmp_path / "pretrained" / f"b{seed}", _full(seed, 3e-3, val=0.90, test=0.85))
        _write(tmp_path / "scratch" / f"c{seed}", _full(seed, 1e-3, val=0.70, test=0.75 + 0.1 * seed, pretrained=False))
    out = tab.tables(tmp_path)
    assert "| pretrained | 4 | lr 0.003, norm frozen | 2 | 80 | 0.900 ± 0.000 | 0.850 ± 0.000 | 1 | **yes** |" in out
    assert "| pretrained | 4 | lr 0.001, norm frozen | 2 | 80 | 0.800 ± 0.000 | 0.950 ± 0.000 | 1 |  |" in out
    # paired: 0.85 - 0.75 and 0.85 - 0.85, pretrained ahead on one seed of two
    assert "| 4 | 0.850 ± 0.000 | scratch: lr 0.001, norm frozen | 0.050 ± 0.635 | 1 of 2 |" in out
    chosen = tab.chosen_overrides(tmp_path).splitlines()
    assert "pretrained_4 strategy=full strategy.lr=0.003 strategy.norm=frozen data.train_per_class=4" in chosen
    assert any(c.startswith("scratch_4 strategy=full backbone.pretrained=false") for c in chosen)


def test_augment_tta_chooses_tta_on_label_free_val_and_names_augmentations(tmp_path: Path):
    tab = load_script("aug_tabulate", "docs/results/augment_tta/tabulate.py")
    for seed in (0, 1):
        for aug, gain in (("none", 0.0), ("mnist_to_digits", 0.05)):  # same DomainBridge class: told apart by name
            v = 0.8 - gain  # val picks none; TTA raises the source val, lowers the (oracle) target val
            m = {
                "val/source_acc": v,
                "val/source_acc_tta": v + 0.05,
                "val/target_acc": v - 0.3,
                "val/target_acc_tta": v - 0.4,
            }
            m |= {"test/target_acc": 0.5 + gain, "test/target_acc_tta": 0.45 + gain}
            result = {"train_per_class": 100, "seed": seed, "config": {}, "metrics": m}
            _write(tmp_path / "shift" / f"{aug}{seed}", result, [f"augment={aug}", f"seed={seed}"])
    out = tab.table(tab.load(tmp_path))
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): line for line in out.splitlines() if line.startswith("| ")}
    assert rows[("none", "on")].rstrip().endswith("| val/source_acc |")  # TTA's val is higher: label-free pick
    assert rows[("none", "off")].rstrip().endswith("| val/target_acc |")  # the oracle sees TTA hurt the target
    assert "0.050 ± 0.000 (ahead on 2 of 2)" in rows[("mnist_to_digits", "off")]


def test_backbone_lr_chooses_on_val_and_pairs_with_the_default(tmp_path: Path):
    tab = load_script("blr_tabulate", "docs/results/backbone_lr/tabulate.py")
    for seed in (0, 1):
        for mult, val, test in ((0.1, 0.8, 0.9), (1.0, 0.85, 0.7)):
            r = _full(seed, 1e-3, val, test)
            r["config"]["strategy"]["backbone_lr_mult"] = mult
            _write(tmp_path / f"m{mult}s{seed}", r)
    out = tab.table(tmp_path)
    assert "| full | 4 | 1 | 2 | 0.850 ± 0.000 | 0.700 ± 0.000 | -0.200 ± 0.000 (0 of 2 ahead) | **yes** |" in out
    assert "| full | 4 | 0.1 | 2 | 0.800 ± 0.000 | 0.900 ± 0.000 | - |  |" in out


def _partial(seed: int, groups: int | None, metrics: dict, size: int = 4) -> dict:
    strategy = {"trainable_groups": groups} if groups else {}
    return {
        "strategy": "partial" if groups else "full",
        "train_per_class": size,
        "seed": seed,
        "config": {"strategy": strategy},
        "params": {"trainable": 1_000_000 * (groups or 3)},
        "metrics": metrics,
    }


def test_unfrozen_depth_chooses_on_val_pairs_with_the_default_and_prices_the_label_free_rule(tmp_path: Path):
    tab = load_script("ud_tabulate", "docs/results/unfrozen_depth/tabulate.py")
    for seed in (0, 1):
        # in domain: 4 groups has the better val and the worse test; val chooses it anyway
        _write(tmp_path / "digits_partial" / f"a{seed}", _partial(seed, 2, {"val/acc": 0.8, "test/acc": 0.9}))
        _write(tmp_path / "digits_partial" / f"b{seed}", _partial(seed, 4, {"val/acc": 0.85, "test/acc": 0.7}))
        # shift: source val picks full, the oracle (target val) picks 2 groups; full's test is 0.1 lower
        for groups, src, tgt, test in ((2, 0.8, 0.6, 0.6), (None, 0.9, 0.5, 0.5)):
            m = {"val/source_acc": src, "val/target_acc": tgt, "test/target_acc": test, "test/source_acc": src}
            _write(tmp_path / "shift_all" / f"{groups}{seed}", _partial(seed, groups, m, size=100))
    digits = tab.table(tmp_path, "digits", "val/acc", "test/acc").splitlines()
    assert (
        "| 4 | partial 4 | 4.00 M | 2 | 0.850 ± 0.000 | 0.700 ± 0.000 | -0.200 ± 0.000 (0 of 2 ahead) | **yes** |"
        in digits
    )
    assert "| 4 | partial 2 | 2.00 M | 2 | 0.800 ± 0.000 | 0.900 ± 0.000 | - |  |" in digits
    cost = tab.selection_cost(tmp_path, "shift", ("val/source_acc",), "val/target_acc", "test/target_acc")
    assert "| 100 | `val/source_acc` | full (all) | 0.500 | 10.0 |" in cost
    assert "| 100 | `val/target_acc` | partial 2 | 0.600 | 0.0 |" in cost
    with pytest.raises(SystemExit, match="run_study.sh first"):
        tab.load(tmp_path, "nothing")


def test_lr_forgetting_chooses_on_source_val_and_pairs_with_the_frozen_control(tmp_path: Path):
    tab = load_script("lrf_tabulate", "docs/results/lr_forgetting/tabulate.py")

    def run(seed: int, strategy: str, lr: float, mult: float | None, src: float, tgt: float) -> dict:
        cfg = {"lr": lr} | ({"backbone_lr_mult": mult} if mult is not None else {})
        m = {"val/source_acc": src, "test/source_acc": src, "val/target_acc": tgt, "test/target_acc": tgt}
        return {"strategy": strategy, "train_per_class": 10, "seed": seed, "config": {"strategy": cfg}, "metrics": m}

    for seed in (0, 1):
        # the high LR fits the source best and forgets the target: the label-free rule picks it, the oracle does not
        _write(tmp_path / "full" / f"hi{seed}", run(seed, "full", 1e-2, 1.0, src=0.95, tgt=0.30))
        _write(tmp_path / "full" / f"lo{seed}", run(seed, "full", 1e-3, 0.1, src=0.90, tgt=0.60 + 0.1 * seed))
        _write(tmp_path / "control" / f"fe{seed}", run(seed, "feature_extraction", 1e-2, None, src=0.70, tgt=0.40))
    out = tab.table(tab.load(tmp_path))
    rows = {line.split("|")[2].strip(): line for line in out.splitlines()[2:]}
    assert rows["backbone 0.01 (head 0.01, x1)"].rstrip().endswith("| -0.100 ± 0.000 (0 of 2 ahead) | val/source_acc |")
    assert rows["backbone 0.0001 (head 0.001, x0.1)"].rstrip().endswith("| val/target_acc |")
    assert "0.250 ± 0.635 (2 of 2 ahead)" in rows["backbone 0.0001 (head 0.001, x0.1)"]
    assert rows[tab.CONTROL].split("|")[8].strip() == "-"  # the control is not paired with itself


def test_text_peft_methods_chooses_each_rate_on_val_and_pairs_with_lora(tmp_path: Path):
    tab = load_script("tpm_tabulate", "docs/results/text_peft_methods/tabulate.py")

    def run(seed: int, strategy: str, lr: float, val: float, test: float) -> dict:
        return {"strategy": strategy, "seed": seed, "config": {"strategy": {"peft_lr": lr}}, "time_s": 10.0,
                "params": {"trainable": 10, "total": 1000}, "metrics": {"val/acc": val, "test/acc": test}}  # fmt: skip

    for seed in (0, 1):
        _write(tmp_path / f"l{seed}", run(seed, "lora", 1e-3, 0.9, 0.80))
        _write(tmp_path / f"p{seed}", run(seed, "prompt_tuning", 3e-2, 0.7, 0.75))  # worse val, better test
        _write(tmp_path / f"q{seed}", run(seed, "prompt_tuning", 1e-1, 0.8, 0.60 + 0.1 * seed))
    runs = tab.load(tmp_path)
    assert tab.chosen(runs) == {"lora": (1e-3, ""), "prompt_tuning": (1e-1, "")}
    out = tab.tables(runs)
    assert "| prompt_tuning | 0.1 | 2 | 10 (1.00 %) | 0.800 ± 0.000 | 0.650 ± 0.635 | 10 | **yes** |" in out
    assert "| prompt_tuning | 0.650 ± 0.635 | -0.150 ± 0.635 | 0 of 2 |" in out
    # a sweep still running: adapter's two rates share no seed yet; nothing is chosen for it, nothing raises
    _write(tmp_path / "a0", run(0, "adapter", 1e-3, 0.9, 0.9))
    _write(tmp_path / "a1", run(1, "adapter", 3e-3, 0.9, 0.9))
    runs = tab.load(tmp_path)
    assert tab.chosen(runs)["adapter"] == (None, "") and "| adapter | 0.001 |" in tab.tables(runs)


def test_a_missing_seed_cannot_win_a_choice(tmp_path: Path):
    """A rate whose bad seed failed must not beat one that ran every seed: the choice compares the common seeds."""
    tab = load_script("tpm_tabulate_seeds", "docs/results/text_peft_methods/tabulate.py")

    def run(seed: int, strategy: str, lr: float | None, val: float) -> dict:
        m = {"val/acc": val, "test/acc": val}
        return {"strategy": strategy, "seed": seed, "config": {"strategy": {"peft_lr": lr, "lr": 2e-3}},
                "time_s": 10.0, "params": {"trainable": 10, "total": 1000}, "metrics": m}  # fmt: skip

    vals = {1e-3: (0.90, 0.50, 0.90), None: (0.80, 0.80, 0.80)}  # null peft_lr: trained at strategy.lr (2e-3)
    for lr, by_seed in vals.items():
        for seed, val in enumerate(by_seed):
            if lr is None and seed == 1:
                continue  # this seed failed: over the seeds each ran, 2e-3 (0.80) would beat 1e-3 (0.767)
            _write(tmp_path / f"{lr}_{seed}", run(seed, "lora", lr, val))
    runs = tab.load(tmp_path)
    assert set(runs) == {("lora", 1e-3), ("lora", 2e-3)}
    assert tab.chosen(runs) == {"lora": (1e-3, " (on seeds 0, 2)")}
    assert (
        "| lora | 0.001 | 3 | 10 (1.00 %) | 0.767 ± 0.574 | 0.767 ± 0.574 | 10 | **yes** (on seeds 0, 2) |"
        in tab.tables(runs)
    )


def test_choose_compares_means_over_the_common_seeds():
    from transferlab.report.stats import choose, on_seeds

    scores = {"a": {0: 0.9, 1: 0.5, 2: 0.9}, "b": {0: 0.8, 2: 0.8}}
    assert choose(scores) == ("a", [0, 2])
    assert on_seeds(scores, [0, 2]) == " (on seeds 0, 2)"
    assert choose({"x": {0: 1.0}, "y": {0: 1.0}}) == ("x", [0])  # a tie keeps the first
    assert choose({"x": {0: 0.3}, "y": {0: 0.1}}, higher=False) == ("y", [0])
    assert on_seeds({"x": {0: 1.0}, "y": {0: 1.0}}, [0]) == ""
    with pytest.raises(ValueError, match="no seed is common"):
        choose({"x": {0: 1.0}, "y": {1: 1.0}})


def test_dann_invariance_pairs_the_shift_with_source_only_and_the_control(tmp_path: Path):
    tab = load_script("dinv_tabulate", "docs/results/dann_invariance/tabulate.py")

    def run(seed: int, adaptation: dict | None, acc: float, pad: float) -> dict:
        after = {"proxy_a_distance": 2.0, "mmd": 1.0, "bottleneck": {"proxy_a_distance": pad, "mmd": pad / 2}}
        return {"seed": seed, "adaptation": "dann" if adaptation else "none", "config": {"adaptation": adaptation},
                "metrics": {"test/target_acc": acc, "test/source_acc": 0.97, "train/domain_acc": 0.5},
                "shift_after": after}  # fmt: skip

    dann = {"_target_": "transferlab.adaptation.dann.DANN", "weight": 1.0}
    rows = []
    for seed in (0, 1):
        _write(tmp_path / "framework" / f"so{seed}", run(seed, None, 0.75, 1.9))
        _write(tmp_path / "framework" / f"d{seed}", run(seed, dann, 0.85 + 0.01 * seed, 1.7 - 0.1 * seed))
        _write(tmp_path / "framework_control" / f"c{seed}", run(seed, dann | {"weight": 0}, 0.65, 1.95))
        rows += [{"method": "source_only", "weight": 1.0, "seed": seed, "target_acc": 0.77, "source_acc": 0.97,
                  "pad_conv": 2.0, "pad_bottleneck": 1.97},
                 {"method": "dann", "weight": 1.0, "seed": seed, "target_acc": 0.87, "source_acc": 0.97,
                  "pad_conv": 1.9, "pad_bottleneck": 1.90}]  # fmt: skip
    (tmp_path / "reference.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    runs = tab.load(tmp_path)
    out = tab.table(runs).splitlines()
    dann_row = next(line for line in out if line.startswith("| framework | DANN |"))
    assert "| 85.5 ± 6.4 |" in dann_row and "| 1.65 ± 0.64 |" in dann_row and "| 50.0 ± 0.0 |" in dann_row
    assert dann_row.endswith("| -0.25 ± 0.64 (2 of 2 lower) | -0.30 ± 0.64 (2 of 2 lower) |")
    ref = next(line for line in out if line.startswith("| reference | DANN |"))
    assert ref.endswith("| -0.07 ± 0.00 (2 of 2 lower) | - |")  # no reference control in this sweep
    assert "framework: Spearman ρ(PAD bottleneck, target acc) = -" in tab.correlation(runs)


def test_bert_recipe_chooses_on_val_and_pairs_schedule_and_epochs(tmp_path: Path):
    tab = load_script("bert_tabulate", "docs/results/bert_recipe/tabulate.py")

    def run(seed: int, lr: float, scheduler: bool, epochs: int, val: float, test: float) -> dict:
        cfg = {
            "strategy": {"lr": lr},
            "trainer": {"max_epochs": epochs},
            "scheduler": {"_target_": "transferlab.model.schedules.linear_warmup"} if scheduler else None,
        }
        return {"seed": seed, "config": cfg, "time_s": 70.0, "metrics": {"val/acc": val, "test/acc": test}}  # fmt: skip

    for seed in (0, 1):
        _write(tmp_path / "recipe" / f"a{seed}", run(seed, 2e-5, True, 3, 0.80, 0.79))
        _write(tmp_path / "recipe" / f"b{seed}", run(seed, 1e-4, True, 3, 0.93, 0.90 + 0.02 * seed))
        _write(tmp_path / "constant" / f"b{seed}", run(seed, 1e-4, False, 3, 0.92, 0.91))
        _write(tmp_path / "epochs10" / f"a{seed}", run(seed, 2e-5, True, 10, 0.93, 0.95))  # ties 1e-4 on val
    out = tab.tables(tab.load(tmp_path))
    assert "| warm-up 10 % + linear decay | 10 | 2e-05 | 2 | 0.930 ± 0.000 | 0.950 ± 0.000 | 70 | **yes** |" in out
    assert "| warm-up 10 % + linear decay | 3 | 0.0001 | 2 | 0.930 ± 0.000 | 0.910 ± 0.127 | 70 |  |" in out
    assert "| lr 0.0001 | 0.000 ± 0.127 | 1 of 2 |" in out  # recipe minus constant
    assert "| lr 2e-05 | 0.160 ± 0.000 | 2 of 2 |" in out  # 10 epochs minus 3


def _lora(seed: int, strategy: str, val: float, test: float, peft_lr=None, r: int = 8, size: int = 4) -> dict:
    cfg = {"lr": 1e-3} | ({"peft_lr": peft_lr, "r": r, "alpha": 2 * r} if strategy == "lora" else {})
    return {
        "strategy": strategy,
        "train_per_class": size,
        "seed": seed,
        "stage_s": {"fit": 2.0},
        "params": {"trainable": 1000 * r if strategy == "lora" else 10},
        "config": {"strategy": cfg},
        "metrics": {"val/acc": val, "test/acc": test},
    }


def test_lora_rate_rank_chooses_rate_then_rank_on_val_and_pairs_the_reference(tmp_path: Path):
    tab = load_script("lrr_tabulate", "docs/results/lora_rate_rank/tabulate.py")
    for seed in (0, 1):
        # rate: 3e-3 has the better val and the worse test at both sizes: it is chosen all the same
        for size in (4, 16):
            _write(tmp_path / "rate" / f"a{size}{seed}", _lora(seed, "lora", 0.80, 0.90, 1e-3, size=size))
            _write(tmp_path / "rate" / f"b{size}{seed}", _lora(seed, "lora", 0.85, 0.80, 3e-3, size=size))
        # rank at the chosen rate: r=16 better on val at size 4 only; over both sizes r=8 (0.85) beats r=16 (0.84)
        _write(tmp_path / "rank" / f"c4{seed}", _lora(seed, "lora", 0.88, 0.70 + 0.1 * seed, 3e-3, r=16))
        _write(tmp_path / "rank" / f"c16{seed}", _lora(seed, "lora", 0.80, 0.80, 3e-3, r=16, size=16))
        _write(tmp_path / "full" / f"d{seed}", _lora(seed, "full", 0.90, 0.95))
        _write(tmp_path / "control" / f"e{seed}", _lora(seed, "feature_extraction", 0.60, 0.60))
    _write(tmp_path / "rate" / "f42", _lora(42, "lora", 0.99, 0.99, 1e-3))  # a seed only one arm has: not compared
    out = tab.tables(tmp_path)
    rate, rank, ref = out.split("\n\n**")
    assert (
        "| 4 | LoRA r=8, peft_lr 0.003 | 8,000 | 2 | 0.850 ± 0.000 | 0.800 ± 0.000 | -0.100 ± 0.000 (0 of 2 ahead) "
        "| 2.0 | **yes** (on seeds 0, 1) |" in rate
    )
    assert "Default: **LoRA r=8, peft_lr 0.003**" in rate
    assert "| 4 | LoRA r=16, peft_lr 0.003 | 16,000 | 2 | 0.880 ± 0.000 |" in rank and rank.count("**yes**") == 2
    assert "Default: **LoRA r=8, peft_lr 0.003**" in rank  # size 4's winner is not the default
    # the reference table: paired against the chosen LoRA on seeds 0 and 1; full is best on val at size 4
    assert (
        "| 4 | full fine-tuning (reference) | 10 | 2 | 0.900 ± 0.000 | 0.950 ± 0.000 | 0.150 ± 0.000 (2 of 2 ahead)"
        in ref
    )
    assert (
        "| 4 | head alone, lr 1e-3 (control) | 10 | 2 | 0.600 ± 0.000 | 0.600 ± 0.000 | -0.200 ± 0.000 (0 of 2 ahead)"
        in ref
    )
    assert "Best on val: **full fine-tuning (reference)**" in ref


def test_lora_rate_rank_tabulates_a_sweep_still_running(tmp_path: Path):
    tab = load_script("lrr_tabulate_partial", "docs/results/lora_rate_rank/tabulate.py")
    _write(tmp_path / "rate" / "a", _lora(0, "lora", 0.8, 0.8, 1e-3, size=4))
    _write(tmp_path / "rate" / "b", _lora(0, "lora", 0.8, 0.8, 3e-3, size=16))
    out = tab.tables(tmp_path)
    assert out.endswith("No (size, seed) cell is common to every arm yet: nothing chosen.") and "**yes**" in out


def test_head_rate_chooses_per_size_and_overall_on_val_with_the_reference(tmp_path: Path):
    tab = load_script("hr_tabulate", "docs/results/head_rate/tabulate.py")

    def fe(seed: int, size: int, lr, val: float, test: float, strategy: str = "feature_extraction") -> dict:
        choices = {"lr": {"setting": "auto", "used": lr}} if lr == 3e-3 else {}  # `auto` resolved: read as 3e-3
        cfg = {"lr": "auto" if choices else lr}
        return {"strategy": strategy, "train_per_class": size, "seed": seed, "strategy_choices": choices,
                "config": {"strategy": cfg}, "metrics": {"val/acc": val, "test/acc": test}}  # fmt: skip

    for seed in (0, 1):
        for size, (v3, v10) in {4: (0.70, 0.60), 16: (0.80, 0.85)}.items():
            _write(tmp_path / "size" / f"a{size}{seed}", fe(seed, size, 3e-3, v3, 0.5))  # worse test, better val
            _write(tmp_path / "size" / f"b{size}{seed}", fe(seed, size, 1e-2, v10, 0.6 + 0.1 * seed))
        _write(tmp_path / "full" / f"f{seed}", fe(seed, 4, None, 0.9, 0.9, strategy="full"))
        _write(tmp_path / "text" / f"t{seed}", {**fe(seed, 0, 3e-2, 0.8, 0.8), "train_per_class": None})
    out = tab.tables(tmp_path / ".", tmp_path / "full")
    assert "| 4 | 0.003 | 2 | 0.700 ± 0.000 | 0.500 ± 0.000 | -0.150 ± 0.635 (0 of 2 ahead) | **yes** |" in out
    assert "| 16 | 0.01 | 2 | 0.850 ± 0.000 | 0.650 ± 0.635 | - | **yes** |" in out
    assert "| 4 | full fine-tuning (reference) | 2 | 0.900 ± 0.000 | 0.900 ± 0.000 | | |" in out
    # over both sizes: 3e-3 0.75 > 1e-2 0.725; the text section's size is "all"
    assert "mean val/acc: 0.003 0.7500, 0.01 0.7250. Default: **0.003**." in out and "| all | 0.03 | 2 |" in out
