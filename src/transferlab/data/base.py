"""Base datamodule: one labelled source domain, optionally an unlabelled target domain.

Subclasses say how to read a domain (`load_domain`) and how to turn indices into a dataset
(`make_dataset`). This class owns what every task shares: seeded stratified splits fixed by
`split_seed` (the same test set for every training seed), the training-size knob, and loaders.

Batches are dicts: `{"inputs": ..., "labels": (B,)}`. With a target domain and
`with_target=True` a training batch is `{"source": batch, "target": batch}` (target labels are
carried only so they can be evaluated; training never reads them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from transferlab.data.splits import stratified_split, subsample
from transferlab.errors import DataError

DA_EPOCHS = ("source", "longest")  # `da.epoch`: what a domain-adaptation epoch is (ClassificationData)
DA_RNGS = ("isolated", "shared")  # `da.rng`: whether target batches draw on the run's random stream


class EpochShuffle(Sampler[int]):
    """A random order that is a pure function of (seed, epoch), not of the global RNG.

    The order is a stream of permutations of the `n` items (the k-th seeded by (seed, k)); epoch e yields its
    items [e * num_samples, (e + 1) * num_samples). With `num_samples = n` (the default) that is one fresh
    permutation per epoch; with more, a short domain cycles through fresh permutations within the epoch; with
    fewer, a long domain continues where the last epoch stopped (how tllib's `ForeverDataIterator` and
    bench/da_reference.py draw the target). Lightning calls `set_epoch` at every epoch start (also after a
    resume), so a resumed run draws the same batches as the uninterrupted one. Under DDP Lightning wraps it in a
    DistributedSamplerWrapper, which shards its order and forwards `set_epoch`.
    """

    def __init__(self, n: int, seed: int = 0, num_samples: int | None = None) -> None:
        self.n, self.seed, self.epoch = n, seed, 0
        self.num_samples = n if num_samples is None else num_samples

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        m = self.num_samples
        if m == 0 or self.n == 0:
            return iter(())
        start = self.epoch * m
        first, last = start // self.n, (start + m - 1) // self.n
        perms = [torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100_003 + k))
                 for k in range(first, last + 1)]  # fmt: skip
        off = start - first * self.n
        return iter(torch.cat(perms)[off : off + m].tolist())


@dataclass
class Domain:
    """One domain's labels and class names, plus its split indices once computed."""

    name: str
    labels: np.ndarray
    classes: list[str]
    train: np.ndarray | None = None
    val: np.ndarray | None = None
    test: np.ndarray | None = None


class ClassificationData(L.LightningDataModule):
    """Shared splitting and loading; see the module docstring.

    Args:
        batch_size: training batch size (per domain when a target is used).
        eval_batch_size: val/test batch size (default: 2 x batch_size).
        num_workers: DataLoader workers.
        train_per_class: K labelled source examples per class (stratified, seeded); null = all.
        train_fraction: alternatively a stratified fraction of the training pool.
        val_fraction, test_fraction: held-out shares per class, fixed by `split_seed`.
        split_seed: seed of the train/val/test split (kept fixed across training seeds).
        seed: seed of the training subsample (set from the run's `seed`).
        with_target: feed unlabelled target batches during training (domain adaptation).
        da_epoch: with target batches, what an epoch is (`da.epoch`): "source", one pass over the labelled
            source data with the target drawn alongside (cycled or continued across epochs), so a DA run and
            its source-only baseline take the same steps at the same `max_epochs`; "longest", the longer of the
            two loaders, the shorter restarted within the epoch (Lightning's `max_size_cycle`).
        da_rng: `da.rng`: "isolated", the target training loader draws its iterators' seeds from its own
            generator (a DA run's global random stream is then source-only's); "shared", from the global one.
    """

    # Declared capabilities (subclasses override; the run, planner and rules ask these names):
    modality: ClassVar[str] = "image"  # the inputs it yields: "image" | "text" (checked against the backbone)
    lm_task: ClassVar[bool] = False  # True: a language-modelling objective (instruction tuning), no class logits
    has_target_domain = False  # set per instance by domain-pair datamodules
    bad_count = 0  # undecodable files dropped (`data.bad_files=skip`)
    truncation: dict | None = None  # text longer than the backbone's max_length (set at build)

    def __init__(
        self,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        train_per_class: int | None = None,
        train_fraction: float | None = None,
        val_fraction: float = 0.15,
        test_fraction: float = 0.3,
        split_seed: int = 0,
        seed: int = 0,
        with_target: bool = False,
        da_epoch: str = "source",
        da_rng: str = "isolated",
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise DataError(f"data.batch_size={batch_size} must be >= 1.")
        if not (0 <= val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
            raise DataError(
                f"data.val_fraction={val_fraction} and data.test_fraction={test_fraction} must be in [0, 1) "
                "and leave a training pool (their sum < 1)."
            )
        self.batch_size, self.num_workers = batch_size, num_workers
        self.eval_batch_size = eval_batch_size or 2 * batch_size
        self.train_per_class, self.train_fraction = train_per_class, train_fraction
        self.fractions = (val_fraction, test_fraction)
        self.split_seed, self.seed, self.with_target = split_seed, seed, with_target
        if da_epoch not in DA_EPOCHS:
            raise DataError(f"da.epoch={da_epoch!r} must be one of {', '.join(DA_EPOCHS)}.")
        if da_rng not in DA_RNGS:
            raise DataError(f"da.rng={da_rng!r} must be one of {', '.join(DA_RNGS)}.")
        self.da_epoch, self.da_rng = da_epoch, da_rng
        self.domains: dict[str, Domain] = {}
        self.datasets: dict[str, Dataset] = {}
        self.preprocessing = None
        self.collate_fn = None

    # -- to implement -------------------------------------------------------------------------
    def load_domain(self, which: str) -> Domain:
        """Read labels and class names of domain `which` ("source" or "target")."""
        raise NotImplementedError

    def make_dataset(self, which: str, indices: np.ndarray, train: bool) -> Dataset:
        """A dataset over `indices` of domain `which` yielding `{"inputs", "labels"}` items."""
        raise NotImplementedError

    # -- splits -----------------------------------------------------------------------------------
    def prepare(self) -> ClassificationData:
        """Read labels, split and subsample; cheap, and raises `DataError` before any model loads."""
        names = ["source", "target"] if self.has_target_domain else ["source"]
        for which in names:
            dom = self.load_domain(which)
            if len(dom.labels) == 0:
                raise DataError(f"the {which} domain '{dom.name}' has no examples.")
            if not self.lm_task and dom.classes is not None and len(dom.classes) < 2:
                names = ", ".join(map(str, dom.classes))
                raise DataError(
                    f"the {which} domain '{dom.name}' has {len(dom.classes)} class ({names}): classification needs "
                    "at least 2. Add a folder / label per class."
                )
            if dom.train is None:  # the subclass may bring its own predefined splits
                dom.train, dom.val, dom.test = stratified_split(dom.labels, self.fractions, self.split_seed)
            self.domains[which] = dom
        src = self.domains["source"]
        src.train = subsample(
            src.train, src.labels, src.classes, self.seed, self.train_per_class, self.train_fraction, src.name
        )
        if "target" in self.domains and self.domains["target"].classes != src.classes:
            raise DataError(
                f"source '{src.name}' and target '{self.domains['target'].name}' have different classes "
                f"({src.classes} vs {self.domains['target'].classes}); a domain pair needs the same class set."
            )
        for which, dom in self.domains.items():
            for split in ("train", "val", "test"):
                if len(getattr(dom, split)) == 0 and not (split == "val" and self.fractions[0] == 0):
                    raise DataError(f"the {split} split of {which} '{dom.name}' is empty: the dataset is too small.")
        return self

    @property
    def classes(self) -> list[str]:
        return self.domains["source"].classes

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def train_size(self) -> int:
        return len(self.domains["source"].train)

    @property
    def eval_names(self) -> list[str]:
        """Names of the val/test sets in dataloader order; "" means the single in-domain set."""
        return ["target", "source"] if "target" in self.domains else [""]

    def build(self, preprocessing: Any) -> None:
        """Create the datasets once the backbone's preprocessing is known."""
        if not self.domains:
            self.prepare()
        self.preprocessing = preprocessing
        for which, dom in self.domains.items():
            self.datasets[f"{which}/train"] = self.make_dataset(which, dom.train, train=True)
            for split in ("val", "test"):
                self.datasets[f"{which}/{split}"] = self.make_dataset(which, getattr(dom, split), train=False)

    def use_datasets(self, datasets: dict[str, Dataset]) -> None:
        """Replace built datasets by key (e.g. the feature cache's precomputed features); same splits."""
        unknown = set(datasets) - set(self.datasets)
        if unknown:
            raise KeyError(f"no built datasets {sorted(unknown)} to replace (have {sorted(self.datasets)})")
        self.datasets.update(datasets)

    def setup(self, stage: str | None = None) -> None:
        if not self.datasets:
            raise RuntimeError("call build(backbone.preprocessing) before training")

    # -- loaders ----------------------------------------------------------------------------------
    def _loader(self, key: str, train: bool, batches: int | None = None) -> DataLoader:
        """A training loader (shuffled per epoch; `batches`: exactly that many per epoch) or an eval loader."""
        ds = self.datasets[key]
        bs = min(self.batch_size, len(ds)) if train else self.eval_batch_size
        seed = self.seed + (1000 if key.startswith("target") else 0)
        own = train and key.startswith("target") and self.da_rng == "isolated"  # its iterators' seeds: not the run's
        return DataLoader(
            ds,
            generator=torch.Generator().manual_seed(seed) if own else None,
            batch_size=bs,
            sampler=EpochShuffle(len(ds), seed, None if batches is None else batches * bs) if train else None,
            drop_last=train and len(ds) > bs,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=self.collate_fn,
        )

    def _uses_target(self) -> bool:
        return self.with_target and "target" in self.domains

    def epoch_batches(self) -> int:
        """Training batches in an epoch (one process): the source's, or under `da_epoch="longest"` with target
        batches the longer domain's. From the split sizes: valid after `prepare()`."""

        def batches(n: int) -> int:
            return max(1, n // min(self.batch_size, n))  # drop_last once a domain exceeds a batch

        n = batches(len(self.domains["source"].train))
        if self._uses_target() and self.da_epoch == "longest":
            n = max(n, batches(len(self.domains["target"].train)))
        return n

    def train_dataloader(self):
        source = self._loader("source/train", train=True)
        if not self._uses_target():
            return source
        from lightning.pytorch.utilities import CombinedLoader

        batches = len(source) if self.da_epoch == "source" else None  # the target drawn alongside the source
        target = self._loader("target/train", train=True, batches=batches)
        return CombinedLoader({"source": source, "target": target}, mode="max_size_cycle")

    def _eval_loaders(self, split: str) -> list[DataLoader]:
        order = ["target", "source"] if "target" in self.domains else ["source"]
        return [self._loader(f"{w}/{split}", train=False) for w in order]

    def val_dataloader(self):
        return self._eval_loaders("val") if self.fractions[0] > 0 else []

    def test_dataloader(self):
        return self._eval_loaders("test")
