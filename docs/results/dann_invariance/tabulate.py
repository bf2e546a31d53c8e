"""Does DANN make the features domain-invariant? Target accuracy and the shift left after training, per arm.

    python docs/results/dann_invariance/tabulate.py multirun/dann_invariance

Framework runs (`framework*/**/results.json`, `shift_after`: transferlab's diagnostics, a logistic-regression PAD;
`train/domain_acc`: the discriminator's own accuracy on the last training batch)
and the independent reference (`reference.jsonl`, its own linear-SVM PAD), both on each domain's val split. PAD is
2 (1 - 2 e), e the held-out error of a linear domain classifier: 0 indistinguishable, 2 separable. Paired columns
subtract source-only and the weight-0 control on the same seed. Nothing here is chosen: every arm runs at its
recipe's defaults.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

from scipy import stats

from transferlab.report.stats import mean_ci

ARMS = ("source-only", "DANN weight 0 (control)", "DANN", "CDAN+E")
METRICS = ("target_acc", "source_acc", "pad_conv", "pad_bottleneck", "mmd_bottleneck", "disc_acc")


def framework_arm(r: dict) -> str:
    a = r["config"].get("adaptation") or {}
    if not a or r.get("adaptation") in (None, "none"):
        return "source-only"
    name = "CDAN+E" if a.get("entropy") else "CDAN" if "cdan" in a.get("_target_", "") else "DANN"
    return f"{name} weight 0 (control)" if a.get("weight") == 0 else name


def reference_arm(row: dict) -> str:
    if row["method"] == "source_only":
        return "source-only"
    name = {"dann": "DANN", "cdan": "CDAN", "cdan_e": "CDAN+E"}[row["method"]]
    return f"{name} weight 0 (control)" if row["weight"] == 0 else name


def load(root: Path) -> dict:
    """{("framework" | "reference", arm): {seed: {metric: value}}}."""
    runs: dict = defaultdict(dict)
    for path in sorted(root.glob("framework*/**/results.json")):
        r = json.loads(path.read_text())
        if r["status"] != "ok" or not r.get("shift_after"):
            continue
        m, after = r["metrics"], r["shift_after"]
        runs[("framework", framework_arm(r))][r["seed"]] = {
            "target_acc": m["test/target_acc"],
            "source_acc": m["test/source_acc"],
            "pad_conv": after["proxy_a_distance"],
            "pad_bottleneck": (after.get("bottleneck") or {}).get("proxy_a_distance"),
            "mmd_bottleneck": (after.get("bottleneck") or {}).get("mmd"),
            "disc_acc": m.get("train/domain_acc"),  # the adversary's own accuracy on the last training batch
        }
    ref = root / "reference.jsonl"
    for line in ref.read_text().splitlines() if ref.is_file() else []:
        row = json.loads(line)
        if "pad_conv" in row:
            runs[("reference", reference_arm(row))][row["seed"]] = {k: row.get(k) for k in METRICS}
    if not runs:
        raise SystemExit(f"no runs under {root}: run docs/results/dann_invariance/run_study.sh first")
    return runs


def _cell(by_seed: dict, key: str, scale: float = 1.0) -> str:
    xs = [v[key] * scale for v in by_seed.values() if v.get(key) is not None]
    return mean_ci(xs, digits=1 if scale == 100 else 2) if xs else "n/a"


def _paired(by_seed: dict, base: dict, key: str) -> str:
    d = [by_seed[s][key] - base[s][key] for s in sorted(set(by_seed) & set(base)) if by_seed[s].get(key) is not None]
    return mean_ci(d, digits=2) + f" ({sum(x < 0 for x in d)} of {len(d)} lower)" if d else "-"


def table(runs: dict) -> str:
    head = ["implementation", "arm", "seeds", "target acc, %", "source acc, %", "PAD conv features",
            "**PAD bottleneck**", "MMD² bottleneck", "discriminator acc, last batch, %",
            "PAD bottleneck minus source-only, same seed", "minus the weight-0 control"]  # fmt: skip
    out = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for impl in ("framework", "reference"):
        arms = [a for a in ARMS if (impl, a) in runs] + sorted(a for i, a in runs if i == impl and a not in ARMS)
        base, control = runs.get((impl, "source-only"), {}), runs.get((impl, "DANN weight 0 (control)"), {})
        for a in arms:
            ms = runs[(impl, a)]
            vs_base = "-" if a == "source-only" else _paired(ms, base, "pad_bottleneck")
            vs_control = "-" if "control" in a or a == "source-only" else _paired(ms, control, "pad_bottleneck")
            cells = [_cell(ms, "target_acc", 100), _cell(ms, "source_acc", 100), _cell(ms, "pad_conv"),
                     _cell(ms, "pad_bottleneck"), _cell(ms, "mmd_bottleneck"), _cell(ms, "disc_acc", 100)]  # fmt: skip
            out.append("| " + " | ".join([impl, a, str(len(ms)), *cells, vs_base, vs_control]) + " |")
    return "\n".join(out)


def correlation(runs: dict) -> str:
    """Spearman's rank correlation of bottleneck PAD with target accuracy over every run of an implementation."""
    lines = []
    for impl in ("framework", "reference"):
        pairs = [(v["pad_bottleneck"], v["target_acc"]) for (i, _), ms in runs.items() if i == impl
                 for v in ms.values() if v.get("pad_bottleneck") is not None]  # fmt: skip
        if len(pairs) > 2:
            rho, p = stats.spearmanr(*zip(*pairs, strict=True))
            lines.append(f"- {impl}: Spearman ρ(PAD bottleneck, target acc) = {rho:+.2f} over {len(pairs)} runs "
                         f"(p = {p:.2g})")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    r = load(Path(sys.argv[1] if len(sys.argv) > 1 else "multirun/dann_invariance"))
    print(table(r) + "\n\n" + correlation(r))
