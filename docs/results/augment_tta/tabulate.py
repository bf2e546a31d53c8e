"""Augmentation x test-time augmentation: each option's val and test accuracy, paired differences, the val choice.

    python docs/results/augment_tta/tabulate.py multirun/augment_tta

Every run evaluates without and with TTA (`*_acc` and `*_acc_tta`), so an option is (augment, TTA off/on). Per
setting, the option with the best mean selection metric is chosen: `val/acc` in domain; on the shifted pair
`val/source_acc` (labels a user has in unsupervised DA), with `val/target_acc` (an oracle: it needs target labels)
shown beside it. Test accuracy is never used to choose.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

from transferlab.report.stats import mean_ci, pick


def augment_choice(job_dir: Path) -> str:
    """The job's `augment=` choice, from the overrides Hydra saved (results.json keeps the config, not the name)."""
    overrides = (job_dir / ".hydra" / "overrides.yaml").read_text().splitlines()
    return next(
        (o.split("=", 1)[1] for o in (line.lstrip("- ").strip() for line in overrides) if o.startswith("augment=")),
        "none",
    )


def load(root: Path) -> dict:
    """{(sweep, per class): {augment: {seed: metrics}}}."""
    runs: dict = defaultdict(lambda: defaultdict(dict))
    for path in sorted(root.glob("*/*/results.json")):
        r = json.loads(path.read_text())
        if r["status"] == "ok":
            aug = augment_choice(path.parent)
            runs[(path.parent.parent.name, r["train_per_class"])][aug][r["seed"]] = r["metrics"]
    return runs


def table(runs: dict) -> str:
    out = []
    for (sweep, size), by_aug in sorted(runs.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
        shifted = any("test/target_acc" in m for ms in by_aug.values() for m in ms.values())
        test = "test/target_acc" if shifted else "test/acc"
        sels = ["val/source_acc", "val/target_acc"] if shifted else ["val/acc"]
        options = {(a, t): ms for a, ms in by_aug.items() for t in ("", "_tta")}
        # each selection metric picks over the seeds every option ran
        chosen = {s: pick({o: {k: m[s + o[1]] for k, m in ms.items()} for o, ms in options.items()}) for s in sels}
        seeds = sorted({k for ms in by_aug.values() for k in ms})
        out += [f"#### {sweep}, {size} per class (seeds {', '.join(map(str, seeds))})", ""]
        head = " | ".join(f"{s}{' (oracle)' if s == 'val/target_acc' else ''}" for s in sels)
        out += [f"| augment | TTA | {head} | {test} | {test} minus none without TTA, same seed | chosen on |"]
        out += ["|---" * (5 + len(sels)) + "|"]
        base = by_aug.get("none")
        for (aug, tta), ms in sorted(options.items()):
            cells = " | ".join(mean_ci([m[s + tta] for m in ms.values()]) for s in sels)
            d = [ms[k][test + tta] - base[k][test] for k in sorted(set(ms) & set(base or {}))] if base else []
            diff = (
                f"{mean_ci(d)} (ahead on {sum(x > 0 for x in d)} of {len(d)})"
                if d and (aug, tta) != ("none", "")
                else "-"
            )
            picked = ", ".join(s + chosen[s][1] for s in sels if chosen[s][0] == (aug, tta))
            acc = mean_ci([m[test + tta] for m in ms.values()])
            out.append(f"| {aug} | {'on' if tta else 'off'} | {cells} | {acc} | {diff} | {picked} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    for d in sys.argv[1:]:
        print(table(load(Path(d))))
