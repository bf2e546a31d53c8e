"""translate=cyclegan: turn the labelled source images into target-style images before training.

`apply(data, out_dir)` runs between `data.prepare()` and `data.build()`:

1. both domains' images come from the datamodule (`domain_images`), brought to one size and channel
   count, or a clear error says which setting is missing (different sizes, gray vs RGB);
2. a CycleGAN is trained on unlabelled images (the source training pool, all of it, and the target
   training split) as its own small Lightning run, checkpointed under
   `<cache>/translators/<key>/` where the key hashes the image content and the translator settings:
   an interrupted training resumes from its `last.ckpt`, a finished one (`generators.safetensors`,
   SHA-256 checked) is reused by every later run with the same data and settings (all seeds of the
   classifier share it);
3. every source image is replaced by G(source) and a PNG grid (source / translated / target) is
   written to the run dir.

Everything downstream (any backbone, strategy, adaptation=dann/cdan/...) trains on the translation.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch

from transferlab.errors import ConfigError, DataError
from transferlab.infra.paths import atomic_write, cache_dir
from transferlab.model.run_device import run_device
from transferlab.translate.cyclegan import CycleGAN
from transferlab.translate.domains import check_domains, pool_indices, to_channels
from transferlab.translate.store import content_key, load_generators, save_generators, translate

log = logging.getLogger("transferlab")


class _Progress(L.Callback):
    def __init__(self, every: int, total: int) -> None:
        self.every, self.total, self.start = every, total, time.time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step // 2  # two optimizer steps (G, D) per batch
        if step % self.every == 0 or step == self.total:
            m = {
                k.split("/")[-1]: f"{float(v):.3f}"
                for k, v in trainer.callback_metrics.items()
                if k.startswith("translate/")
            }
            log.info("translator batch %d/%d (%.0f s): %s", step, self.total, time.time() - self.start, m)


class CycleGANTranslate:
    """Pixel-level domain adaptation with a CycleGAN (Zhu et al. 2017); see the module docstring.

    Args:
        image_size: side length both domains are resized to for translation (null = their common size).
        channels: 1 or 3 to convert the domains to; null = the domains must agree.
        steps: training batches of the translator (each: one generator and one discriminator step).
        batch_size: images per domain per batch.
        lr: Adam learning rate of generators and discriminators.
        ngf, ndf, n_blocks: generator width, discriminator width, residual blocks.
        cycle_weight, identity_weight: λ_cyc and λ_id of the CycleGAN loss.
        seed: the translator's own seed (not the classifier's: one translator serves every seed).
        ckpt_every: checkpoint (last.ckpt) every this many batches.
        accelerator: Lightning accelerator of the translator run.
        cache_dir: where translators live (null = `$TRANSFERLAB_CACHE/translators`).
        grid_examples: source/target examples in the grid image.
    """

    def __init__(
        self,
        image_size: int | None = 32,
        channels: int | None = None,
        steps: int = 300,
        batch_size: int = 32,
        lr: float = 2e-4,
        ngf: int = 16,
        ndf: int = 16,
        n_blocks: int = 3,
        cycle_weight: float = 10.0,
        identity_weight: float = 5.0,
        seed: int = 0,
        ckpt_every: int = 50,
        accelerator: str = "auto",
        cache_dir: str | None = None,
        grid_examples: int = 10,
    ) -> None:
        ints = {
            "steps": steps,
            "batch_size": batch_size,
            "ngf": ngf,
            "ndf": ndf,
            "ckpt_every": ckpt_every,
            "grid_examples": grid_examples,
        }
        for name, v in ints.items():
            if int(v) != v or v < 1:
                raise ConfigError(f"translate.{name}={v} must be an integer >= 1.")
        if lr <= 0 or cycle_weight < 0 or identity_weight < 0 or n_blocks < 0:
            raise ConfigError(
                f"translate: lr={lr} must be > 0 and cycle_weight={cycle_weight}, identity_weight="
                f"{identity_weight}, n_blocks={n_blocks} >= 0."
            )
        if image_size is not None and (image_size < 8 or image_size % 4):
            raise ConfigError(f"translate.image_size={image_size} must be >= 8 and divisible by 4 (or null).")
        self.image_size, self.channels, self.steps, self.batch_size = image_size, channels, steps, batch_size
        self.net = {
            "ngf": ngf,
            "ndf": ndf,
            "n_blocks": n_blocks,
            "lr": lr,
            "cycle_weight": cycle_weight,
            "identity_weight": identity_weight,
        }
        self.seed, self.ckpt_every, self.accelerator = seed, ckpt_every, accelerator
        self.cache_dir, self.grid_examples = cache_dir, grid_examples

    def settings(self, channels: int) -> dict:
        """Everything that determines the translator's weights (part of its cache key)."""
        return {
            "image_size": self.image_size,
            "channels": channels,
            "steps": self.steps,
            "batch_size": self.batch_size,
            "seed": self.seed,
            **self.net,
        }

    # -- the stage ----------------------------------------------------------------------------------
    def apply(self, data, out_dir: str | Path, hardware=None) -> dict:
        """Translate `data`'s source domain into target style (in place); returns what happened. `hardware`: the
        run's (`cfg.hardware`): its launcher decides whether the parent may touch CUDA (`ddp_fork` may not)."""
        if not data.has_target_domain:
            raise ConfigError(
                "translate=cyclegan needs a data config with a target domain (e.g. data=mnist_to_digits "
                "or data=imagefolder with data.target_root=...); use translate=none for single-domain data."
            )
        from transferlab.data.images import ImageData

        if not isinstance(data, ImageData):
            raise DataError(
                f"{type(data).__name__} can't hand its images to a translator (translate=...): pixel-level "
                "adaptation needs image data (data=mnist_to_digits, digits_to_mnist, imagefolder)."
            )
        src_all, tgt_all = (data.domain_images(w, self.image_size) for w in ("source", "target"))
        channels = check_domains(tuple(src_all.shape), tuple(tgt_all.shape), self.channels, self.image_size)
        src_all, tgt_all = to_channels(src_all, channels), to_channels(tgt_all, channels)
        src_pool = src_all[torch.from_numpy(pool_indices(data.domains["source"]))]
        tgt_pool = tgt_all[torch.from_numpy(np.asarray(data.domains["target"].train, dtype=np.int64))]
        settings = self.settings(channels)
        key = content_key(src_pool, tgt_pool, settings)
        root = Path(self.cache_dir).expanduser() if self.cache_dir else cache_dir("translators")
        model, info = self.fit_or_load(src_pool, tgt_pool, root / key, settings)
        hardware = {**(hardware or {}), "accelerator": self.accelerator, "devices": "auto"}  # the translator's own
        device = run_device(hardware)
        translated = translate(model.g_st, src_all, device=device)  # (N, C, S, S) in [0, 1]
        data.set_translated("source", translated)
        grid = self.write_grid(Path(out_dir) / "translation_grid.png", data, src_all, translated, tgt_all)
        return {
            "method": "cyclegan",
            "key": key,
            "dir": str(root / key),
            "grid": str(grid),
            "source_images": len(src_pool),
            "target_images": len(tgt_pool),
            "device": str(device),  # where the source images were translated
            **info,
        }

    def fit_or_load(
        self, src: torch.Tensor, tgt: torch.Tensor, directory: Path, settings: dict, callbacks: list | None = None
    ) -> tuple[CycleGAN, dict]:
        """The trained translator in `directory`: reused when finished, resumed from last.ckpt, or trained."""
        final = directory / "generators.safetensors"
        with torch.random.fork_rng(devices=[]):  # the classifier's random stream is the same, cached or not
            torch.manual_seed(self.seed)
            model = CycleGAN(settings["channels"], **self.net)
            if load_generators(model, final):
                log.info("translator reused: %s", final)
                return model, {**json.loads((directory / "translator.json").read_text()), "reused": True}
            return self._fit(model, src, tgt, directory, settings, callbacks or [])

    def _loaders(self, src: torch.Tensor, tgt: torch.Tensor) -> dict:
        """One shuffled loader per domain, images scaled to [-1, 1]."""
        from torch.utils.data import DataLoader, TensorDataset

        from transferlab.data.base import EpochShuffle

        return {
            name: DataLoader(
                TensorDataset(x * 2 - 1),
                batch_size=min(self.batch_size, len(x)),
                drop_last=True,
                sampler=EpochShuffle(len(x), seed=self.seed + i),
            )
            for i, (name, x) in enumerate((("source", src), ("target", tgt)))
        }

    def _trainer(self, directory: Path, callbacks: list) -> L.Trainer:
        from lightning.pytorch.callbacks import ModelCheckpoint

        from transferlab.callbacks.resume import AtomicCheckpointIO, ResumeState

        ckpt = ModelCheckpoint(
            dirpath=directory,
            filename="translator-{step}",
            every_n_train_steps=2 * self.ckpt_every,
            save_last=True,
            save_top_k=1,
        )
        return L.Trainer(
            max_steps=2 * self.steps,
            max_epochs=-1,
            accelerator=self.accelerator,
            devices=1,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            default_root_dir=directory,
            plugins=[AtomicCheckpointIO()],
            callbacks=[
                ckpt,
                ResumeState({"translator": directory.name}),
                _Progress(max(1, self.steps // 10), self.steps),
                *callbacks,
            ],
        )

    def _fit(self, model, src, tgt, directory: Path, settings: dict, callbacks: list) -> tuple[CycleGAN, dict]:
        from lightning.pytorch.utilities import CombinedLoader

        last = directory / "last.ckpt"
        resumed_from = (
            torch.load(last, map_location="cpu", weights_only=True)["global_step"] // 2 if last.is_file() else None
        )
        what = "training" if resumed_from is None else f"resuming at batch {resumed_from}"
        log.info("translator %s (%d batches of %d per domain) in %s", what, self.steps, self.batch_size, directory)
        trainer = self._trainer(directory, callbacks)
        start = time.time()
        loaders = CombinedLoader(self._loaders(src, tgt), mode="max_size_cycle")
        trainer.fit(model, loaders, ckpt_path=str(last) if last.is_file() else None)
        model = model.cpu().eval()
        info = {
            "reused": False,
            "resumed_from_batch": resumed_from,
            "batches": trainer.global_step // 2,
            "train_time_s": round(time.time() - start, 1),
            "settings": settings,
            "final_losses": {
                k.split("/")[-1]: round(float(v), 4)
                for k, v in trainer.callback_metrics.items()
                if k.startswith("translate/")
            },
        }
        save_generators(model, directory / "generators.safetensors")
        atomic_write(directory / "translator.json", lambda tmp: tmp.write_text(json.dumps(info, indent=2)))
        return model, info

    def write_grid(self, path: Path, data, src_all, translated, tgt_all) -> Path:
        """Rows: source test images, their translations, target training images (one per class, cycling).

        Labels pick the displayed examples only (a readable picture: digits 0, 1, 2, ...).
        """
        from transferlab.translate.grid import write_grid

        def pick(which: str, split: str) -> torch.Tensor:
            dom = data.domains[which]
            idx = np.asarray(getattr(dom, split))
            by_class = [idx[dom.labels[idx] == c] for c in np.unique(dom.labels[idx])]
            rounds = max(len(b) for b in by_class)
            chosen = [b[r] for r in range(rounds) for b in by_class if r < len(b)][: self.grid_examples]
            return torch.as_tensor(np.asarray(chosen, dtype=np.int64))

        s, t = pick("source", "test"), pick("target", "train")
        n = min(len(s), len(t))
        return write_grid(path, [src_all[s[:n]], translated[s[:n]], tgt_all[t[:n]]])
