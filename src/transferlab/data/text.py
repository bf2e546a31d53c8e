"""Text classification data: the synthetic reviews, the user's CSV/JSONL files, or HF `datasets` by name.

Batches are `{"inputs": {"input_ids": (B, T), "attention_mask": (B, T)}, "labels": (B,)}`, tokenized
and padded per batch by the backbone's `preprocessing.tokenize`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from transferlab.data.base import ClassificationData, Domain
from transferlab.errors import DataError

log = logging.getLogger(__name__)
_LENGTH_SAMPLE = 5000  # texts whose token length is checked against max_length


@dataclass
class TextSource:
    """One domain of labelled texts."""

    name: str
    texts: list[str]
    labels: np.ndarray
    classes: list[str]


def synthetic_reviews(
    domain: str = "books", n_per_class: int = 500, seed: int = 0, label_noise: float = 0.05
) -> TextSource:
    """SYNTHETIC sentiment reviews (see `transferlab.data.synthetic_text`); domain "books",
    "electronics" or "both" (the two families pooled)."""
    from transferlab.data import synthetic_text as st

    names = list(st.DOMAINS) if domain == "both" else [domain]
    if any(n not in st.DOMAINS for n in names):
        raise DataError(f"data.source.domain='{domain}' is unknown; use one of {sorted(st.DOMAINS)} or 'both'.")
    parts = [st.reviews(n, n_per_class, seed, label_noise) for n in names]
    return TextSource(
        f"synthetic_reviews_{domain}",
        sum((p[0] for p in parts), []),
        np.concatenate([p[1] for p in parts]),
        list(st.CLASSES),
    )


def _class_names(labels: list, what: str) -> tuple[list[str], dict[str, int]]:
    """The distinct labels as class names, in numeric order when every label is an integer (0, 1, 2, ..., 10, not
    0, 1, 10, 2); integer labels with gaps (0, 1, 3) are said: the classes are the values present, so a missing
    value is no class and indices shift. Returns (class names, {label as written: class index})."""
    names = {str(y) for y in labels}
    try:
        ints = sorted({int(n.strip()) for n in names})
    except ValueError:
        ordered = sorted(names)
        return ordered, {n: i for i, n in enumerate(ordered)}
    if len(ints) != len(names):  # "1" and "01": keep them apart as written
        ordered = sorted(names)
        return ordered, {n: i for i, n in enumerate(ordered)}
    missing = sorted(set(range(ints[0], ints[-1] + 1)) - set(ints)) if ints else []
    if missing:
        log.warning(
            "%s: integer labels %s..%s have no examples of %s; the classes are the %d values present "
            "(class index i is the i-th of %s), so check the label column if those should be classes",
            what, ints[0], ints[-1], missing[:10], len(ints), ints[:10],
        )  # fmt: skip
    position = {v: i for i, v in enumerate(ints)}
    return [str(i) for i in ints], {n: position[int(n.strip())] for n in names}


def _from_columns(name: str, texts: list, labels: list, what: str) -> TextSource:
    if not texts:
        raise DataError(f"{what} has no rows.")
    if any(not isinstance(t, str) or not t.strip() for t in texts):
        raise DataError(f"{what} has empty or non-text values in the text column; clean or drop those rows.")
    classes, index = _class_names(labels, what)
    if len(classes) < 2:
        raise DataError(f"{what} has {len(classes)} distinct label(s) ({classes}); classification needs at least 2.")
    return TextSource(name, list(texts), np.asarray([index[str(y)] for y in labels], dtype=np.int64), classes)


def text_file(path: str, text_column: str = "text", label_column: str = "label") -> TextSource:
    """A CSV, TSV or JSONL file with a text column and a label column (labels may be names or ints)."""
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file '{path}' not found; set data.source.path to a .csv, .tsv or .jsonl file.")
    readers = {
        ".csv": lambda: pd.read_csv(p),
        ".tsv": lambda: pd.read_csv(p, sep="\t"),
        ".jsonl": lambda: pd.read_json(p, lines=True),
        ".json": lambda: pd.read_json(p, lines=True),
    }
    if p.suffix not in readers:
        raise DataError(f"data file '{path}': unsupported suffix '{p.suffix}'; use .csv, .tsv or .jsonl.")
    try:
        df = readers[p.suffix]()
    except ValueError as e:
        raise DataError(f"could not parse '{path}' as {p.suffix}: {e}") from e
    missing = [c for c in (text_column, label_column) if c not in df.columns]
    if missing:
        raise DataError(
            f"'{path}' has no column(s) {missing} (columns: {list(df.columns)}); "
            "set data.source.text_column / data.source.label_column."
        )
    return _from_columns(p.stem, df[text_column].tolist(), df[label_column].tolist(), f"'{path}'")


def hf_dataset(
    name: str,
    split: str = "train",
    config: str | None = None,
    text_column: str = "text",
    label_column: str = "label",
    limit: int | None = None,
) -> TextSource:
    """A Hugging Face `datasets` dataset by name (needs the Hub, or the datasets cache)."""
    from transferlab.infra import hub

    hub.require_hub(f"dataset '{name}'", name, fix="Offline, export it to a CSV/JSONL file and use data=text_files.")
    import datasets

    ds = datasets.load_dataset(name, config, split=split)
    if limit:
        ds = ds.shuffle(seed=0).select(range(min(limit, len(ds))))
    feat = ds.features.get(label_column)
    labels = ds[label_column]
    if hasattr(feat, "names"):  # ClassLabel: keep the dataset's names
        labels = [feat.names[i] for i in labels]
    return _from_columns(name, ds[text_column], labels, f"dataset '{name}'")


class Texts(Dataset):
    """Items `{"text": str, "labels": int64 tensor}`; tokenization happens per batch in the collate fn."""

    def __init__(self, texts: list[str], labels: np.ndarray) -> None:
        self.texts, self.labels = texts, torch.from_numpy(labels)

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> dict:
        return {"text": self.texts[i], "labels": self.labels[i]}


class TextCollate:
    """Tokenize and pad a list of items with the backbone's `tokenize`."""

    def __init__(self, tokenize: Callable[[list[str]], dict]) -> None:
        self.tokenize = tokenize

    def __call__(self, items: list[dict]) -> dict:
        return {
            "inputs": self.tokenize([it["text"] for it in items]),
            "labels": torch.stack([it["labels"] for it in items]),
        }


class TextClassificationData(ClassificationData):
    """Text classification: one domain (`target: null`) or a labelled source -> unlabelled target pair.

    Args:
        source: callable returning the labelled `TextSource`.
        target: optional callable returning the target `TextSource` (labels only for evaluation).
        **kwargs: see `ClassificationData`.
    """

    modality = "text"

    def __init__(
        self, source: Callable[[], TextSource], target: Callable[[], TextSource] | None = None, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self._loaders = {"source": source, "target": target}
        self.has_target_domain = target is not None
        self._sources: dict[str, TextSource] = {}

    def load_domain(self, which: str) -> Domain:
        src = self._loaders[which]()
        self._sources[which] = src
        return Domain(src.name, src.labels, src.classes)

    def build(self, preprocessing) -> None:
        if getattr(preprocessing, "kind", None) != "text" or getattr(preprocessing, "tokenize", None) is None:
            raise DataError(
                "text data needs a text backbone with a tokenizer (e.g. backbone=minilm or backbone=smollm2), "
                f"not a backbone with {getattr(preprocessing, 'kind', '?')} preprocessing."
            )
        super().build(preprocessing)
        self.collate_fn = TextCollate(preprocessing.tokenize)
        self.truncation = self._check_lengths(preprocessing)

    def _check_lengths(self, preprocessing) -> dict | None:
        """Count texts longer than the backbone's `max_length` (they are truncated); warn when any are."""
        tokenizer, limit = getattr(preprocessing, "tokenizer", None), getattr(preprocessing, "max_length", None)
        if tokenizer is None or not limit:
            return None
        texts = [t for src in self._sources.values() for t in src.texts][:_LENGTH_SAMPLE]
        lengths = [len(ids) for ids in tokenizer(texts, truncation=False)["input_ids"]]
        over = sum(n > limit for n in lengths)
        if not over:
            return None
        log.warning(
            "%d of %d texts are longer than backbone.max_length=%d tokens (longest %d) and are truncated; "
            "raise backbone.max_length to keep them whole.",
            over,
            len(texts),
            limit,
            max(lengths),
        )
        return {"max_length": limit, "truncated": over, "checked": len(texts), "longest": max(lengths)}

    def make_dataset(self, which: str, indices: np.ndarray, train: bool) -> Dataset:
        src = self._sources[which]
        return Texts([src.texts[i] for i in indices], src.labels[indices])
