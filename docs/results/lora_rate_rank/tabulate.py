"""The image-LoRA study: the adapters' rate and rank chosen on val/acc, then the chosen LoRA against its control
(the head alone) and its reference (full fine-tuning).

    python docs/results/lora_rate_rank/tabulate.py multirun/lora_rate_rank

`<root>/rate`: LoRA r=8 at several `strategy.peft_lr`; `<root>/rank`: other ranks (alpha = 2r) at the chosen rate;
`<root>/control`: feature extraction at LoRA's head rate; `<root>/full`: full fine-tuning at its defaults. Every
choice is the best mean val/acc over the seeds all candidates have (`report.stats.choose`), never test: per size,
and for the default (one value for every size) over the (size, seed) cells all candidates share. Paired columns
are differences on the same seed (the same split, subset and batches).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

from transferlab.report.stats import choose, mean_ci, pick, strategy_setting

DEFAULT = (1e-3, 8)  # (peft_lr, r): LoRA's defaults before this study (peft_lr is now auto: 3e-3 on images)


def load(root: Path) -> dict:
    """`{arm: {(size, seed): results.json}}`; an arm is `("lora", peft_lr, r)`, `("full",)` or `("control",)`."""
    runs: dict = defaultdict(dict)
    for path in sorted(root.glob("*/*/results.json")):
        r = json.loads(path.read_text())
        if r.get("status") != "ok":
            continue
        s = r["config"]["strategy"]
        if r["strategy"] == "lora":
            arm = ("lora", float(strategy_setting(r, "peft_lr") or s["lr"]), int(s["r"]))
        else:
            arm = ("full",) if r["strategy"] == "full" else ("control",)
        runs[arm][(r["train_per_class"], r["seed"])] = r
    return runs


def name(arm: tuple) -> str:
    if arm[0] != "lora":
        return {"full": "full fine-tuning (reference)", "control": "head alone, lr 1e-3 (control)"}[arm[0]]
    return f"LoRA r={arm[2]}, peft_lr {arm[1]:g}"


def _val(runs: dict, arms: list, size: int | None = None) -> dict:
    """`{arm: {seed: val/acc}}` at one size, or `{arm: {(size, seed): val/acc}}` over every size (size=None)."""
    if size is None:
        return {a: {k: r["metrics"]["val/acc"] for k, r in runs[a].items()} for a in arms}
    return {a: {k[1]: r["metrics"]["val/acc"] for k, r in runs[a].items() if k[0] == size} for a in arms}


def _paired(runs: dict, arm: tuple, base: tuple, size: int) -> str:
    cells = sorted(k for k in runs[arm] if k[0] == size and k in runs.get(base, {}))
    d = [runs[arm][k]["metrics"]["test/acc"] - runs[base][k]["metrics"]["test/acc"] for k in cells]
    return f"{mean_ci(d)} ({sum(x > 0 for x in d)} of {len(d)} ahead)" if d and arm != base else "-"


def choice_table(runs: dict, arms: list, base: tuple, title: str, what: str = "Default") -> tuple[str, tuple | None]:
    """Per size, each arm's val (chooses) and test, paired against `base`; `what` is chosen over all sizes."""
    sizes = sorted({k[0] for a in arms for k in runs[a]})
    out = [
        f"**{title}**",
        "",
        "| per class | arm | trainable params | seeds | **val/acc** (chooses) | test/acc | test minus "
        f"{name(base)}, same seed | fit s/job | chosen |",
        "|---" * 9 + "|",
    ]
    for size in sizes:
        here = [a for a in arms if any(k[0] == size for k in runs[a])]
        val = _val(runs, here, size)
        best, note = pick(val)
        for a in here:
            rs = [r for k, r in runs[a].items() if k[0] == size]
            fit = sum(r["stage_s"]["fit"] for r in rs) / len(rs)
            val_ci, test_ci = (mean_ci([r["metrics"][m] for r in rs]) for m in ("val/acc", "test/acc"))
            mark = "**yes**" + note if a == best else ""
            out.append(
                f"| {size} | {name(a)} | {rs[0]['params']['trainable']:,} | {len(rs)} | {val_ci} | {test_ci} | "
                f"{_paired(runs, a, base, size)} | {fit:.1f} | {mark} |"
            )
    overall = _val(runs, arms)
    try:
        best, cells = choose(overall)
    except ValueError:  # a sweep still running: no (size, seed) cell common to every arm yet
        return "\n".join([*out, "", "No (size, seed) cell is common to every arm yet: nothing chosen."]), None
    means = {a: sum(overall[a][c] for c in cells) / len(cells) for a in arms}
    ranked = ", ".join(f"{name(a)} {means[a]:.4f}" for a in sorted(arms, key=lambda a: -means[a]))
    out += [
        "",
        f"Over all sizes ({len(cells)} common (size, seed) cells), mean val/acc: {ranked}. {what}: **{name(best)}**.",
    ]
    return "\n".join(out), best


def tables(root: Path) -> str:
    runs = load(root)
    lora = sorted(a for a in runs if a[0] == "lora")
    rate_arms = [a for a in lora if a[2] == DEFAULT[1]]
    if not rate_arms:
        raise SystemExit(f"no finished r={DEFAULT[1]} LoRA runs under {root}/rate: run run_study.sh first")
    text, rate = choice_table(runs, rate_arms, ("lora", *DEFAULT), f"Rate, at r={DEFAULT[1]}")
    parts = [text]
    if rate is None:
        return text
    rank_arms = [a for a in lora if a[1] == rate[1]]
    if len(rank_arms) > 1:
        text, chosen = choice_table(runs, rank_arms, rate, f"Rank, at peft_lr {rate[1]:g} (alpha = 2r)")
        parts.append(text)
        chosen = chosen or rate
    else:
        chosen = rate
    others = [a for a in (("full",), ("control",)) if a in runs]
    if others:
        arms = [a for a in dict.fromkeys([chosen, ("lora", *DEFAULT), *others]) if runs.get(a)]
        text, _ = choice_table(runs, arms, chosen, "Chosen LoRA, control, reference", "Best on val")
        parts.append(text)
    return "\n\n".join(parts)


if __name__ == "__main__":
    for d in sys.argv[1:]:
        print(f"### {d}\n\n{tables(Path(d))}\n")
