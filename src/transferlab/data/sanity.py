"""Input sanity: statistics of the decoded training inputs, checked before training.

Inputs that decode "successfully" into garbage (blank or constant images, every file the same picture, a class
whose examples are all one input, empty texts) train to chance accuracy and used to report `ok`. After the
datasets are built (the backbone's preprocessing applied, exactly what training reads), up to `SAMPLE` training
items per domain are decoded and compared:

- every sampled input identical, or more than half of them constant -> `DataError` naming files;
- a labelled class with >= 2 examples that are all one input -> `DataError` naming the class and files;
- some constant (or empty) inputs -> a warning naming up to 5 of them.

results.json `input_check` records what was checked and found, per domain.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict

import numpy as np

from transferlab.errors import DataError

log = logging.getLogger("transferlab")

SAMPLE = 2000  # training items decoded per domain (seeded sample beyond that)
SHOWN = 5  # names listed in a message


def _name(ds, i: int) -> str:
    """A file path, a text snippet or an index: how the user finds item `i`."""
    files = getattr(ds, "files", None)
    if files is not None:
        return str(files[i])
    texts = getattr(ds, "texts", None)
    if texts is not None:
        return repr(texts[i][:40])
    return f"item {i}"


def _fingerprint(item: dict) -> tuple[str, bool] | None:
    """(hash of the input, constant?) of one dataset item; None for items without a single input."""
    x = item.get("inputs")
    if x is not None and hasattr(x, "numpy"):
        a = x.detach().float().numpy()
        return hashlib.blake2b(a.tobytes(), digest_size=12).hexdigest(), bool(a.size and np.ptp(a) < 1e-6)
    text = item.get("text")
    if isinstance(text, str):
        return hashlib.blake2b(text.encode(), digest_size=12).hexdigest(), not text.strip()
    return None


def _listed(ds, idx: list[int]) -> str:
    names = [_name(ds, i) for i in idx[:SHOWN]]
    return ", ".join(names) + (f" (+{len(idx) - SHOWN} more)" if len(idx) > SHOWN else "")


def domain_stats(ds, labeled: bool, seed: int = 0) -> dict | None:
    """Statistics of up to `SAMPLE` items of one training dataset; raises DataError for garbage."""
    n = len(ds)
    idx = np.arange(n) if n <= SAMPLE else np.sort(np.random.default_rng(seed).choice(n, SAMPLE, replace=False))
    hashes, constant, by_class = {}, [], defaultdict(list)
    for i in idx.tolist():
        item = ds[i]
        fp = _fingerprint(item)
        if fp is None:
            return None  # e.g. instruction pairs: nothing single to compare
        hashes[i] = fp[0]
        if fp[1]:
            constant.append(i)
        if labeled and "labels" in item:
            by_class[int(item["labels"])].append(i)
    distinct = len(set(hashes.values()))
    return {"checked": len(hashes), "distinct": distinct, "constant": constant, "by_class": by_class, "h": hashes}


def check(data) -> dict:
    """Check each built training split of `data`; returns the results.json `input_check` section."""
    section = {}
    for key in sorted(k for k in data.datasets if k.endswith("/train")):
        ds = data.datasets[key]
        stats = domain_stats(ds, labeled=key.startswith("source"), seed=getattr(data, "seed", 0))
        if stats is None:
            continue
        where, checked = key.split("/")[0], stats["checked"]
        if checked >= 2 and stats["distinct"] == 1:
            raise DataError(
                f"every {where} training input is identical ({checked} checked, e.g. {_listed(ds, list(stats['h']))}):"
                " the files decode to the same input. Check the files (a broken export?) and the data config."
            )
        constant = stats["constant"]
        if checked >= 2 and len(constant) > checked / 2:
            raise DataError(
                f"{len(constant)} of {checked} {where} training inputs are constant (blank images or empty texts: "
                f"{_listed(ds, constant)}). Fix or remove those files."
            )
        _check_classes(ds, data, where, stats)
        if constant:
            log.warning(
                "%d %s training input(s) are constant (blank images / empty texts): %s",
                len(constant), where, _listed(ds, constant),
            )  # fmt: skip
        section[where] = {"checked": checked, "distinct": stats["distinct"], "constant": len(constant)}
    return {"input_check": section} if section else {}


def _check_classes(ds, data, where: str, stats: dict) -> None:
    classes = data.classes
    for label, idx in sorted(stats["by_class"].items()):
        if len(idx) >= 2 and len({stats["h"][i] for i in idx}) == 1:
            name = classes[label] if label < len(classes) else label
            raise DataError(
                f"class '{name}' of the {where} training data has {len(idx)} examples that are all the same input "
                f"({_listed(ds, idx)}): it can't be learned from. Check that class's files."
            )
