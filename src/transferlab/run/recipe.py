"""One run as a recipe of explicit stages; every run writes results.json, also when it fails.

    validate -> data -> translate -> backbone -> inputs -> build -> cache -> fit -> adabn -> test
             -> export-adapters -> report-result

Each stage is a function of what it needs (`transferlab.run.build`, `transferlab.run.stages`) that
returns its own section of the result; `Recipe` calls them in order, assembles the sections and
remembers which stage was running, so a failure says where it stopped.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from transferlab.config import rules
from transferlab.errors import TransferlabError
from transferlab.infra import redact, results

log = logging.getLogger("transferlab")


class Recipe:
    """The stages of one run from a composed config; `run()` returns the assembled result."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg, self.stage = cfg, "validate"
        self._clock = time.perf_counter()
        self.stage_s: dict[str, float] = {}  # results.json `stage_s`: wall seconds spent in each stage
        self.resume: dict | None = None  # the checkpoint being resumed: its stamp and global step
        self.trains = True  # the strategy trains (False: zero-shot)
        self.loggers: list = []  # ended after results.json is written (infra.loggers.finish)
        self.result: dict = {
            "status": "running",
            "strategy": rules.choice("strategy", "") or cfg.strategy.get("_target_", "").rsplit(".", 1)[-1],
            "adaptation": rules.choice("adaptation", None),
            "data": rules.choice("data", None),
            "seed": cfg.seed,
            "train_per_class": cfg.data.get("train_per_class"),
            "config": config_tree(cfg),
        }
        from transferlab.config.modality import note_from_env

        if note := note_from_env():  # the command named no data: the backbone's default was chosen
            self.result["data_auto"] = note

    def _enter(self, stage: str) -> None:
        now = time.perf_counter()
        self.stage_s[self.stage] = round(self.stage_s.get(self.stage, 0.0) + now - self._clock, 3)
        self.stage, self._clock = stage, now

    def _add(self, section: dict | None) -> None:
        self.result.update(section or {})

    def build(self):
        """Stages data .. build: (strategy, data, module), each section added as it completes."""
        from transferlab.run import build

        cfg = self.cfg
        self._enter("data")
        strategy, data, section = build.build_data(cfg)
        self._add(section)
        if self.resume is not None:  # a resume: the checkpoint must be this run's, before anything heavy
            from transferlab.callbacks.resume import refuse_other_run, training_settings

            expected = {"backbone": cfg.backbone.get("name"), "strategy": strategy.name, "classes": list(data.classes)}
            expected = {k: v for k, v in expected.items() if v is not None}  # e.g. a backbone without a name
            refuse_other_run(self.resume["stamp"], {**expected, "settings": training_settings(cfg)})
        if cfg.get("translate"):  # pixel-level adaptation: source images -> target style
            self._enter("translate")
            translator = build.instantiate(cfg.translate)
            self._add({"translate": translator.apply(data, cfg.paths.output_dir, hardware=cfg.hardware)})
        self._enter("backbone")
        backbone, section = build.build_backbone(cfg)
        self._add(section)
        self._enter("inputs")  # licence policy, data built for the backbone, decoded inputs' sanity
        self._add(build.check_inputs(cfg, backbone, data, section["license"]))
        self._enter("build")
        module, section = build.build_module(cfg, strategy, data, backbone)
        self._add(section)
        return strategy, data, module

    def train_and_test(self, strategy, data, module) -> None:
        """Stages cache .. export-adapters."""
        from transferlab.model.run_device import run_device
        from transferlab.run import stages
        from transferlab.strategies.peft_base import count_params

        cfg, self.trains = self.cfg, strategy.trains
        self._enter("cache")
        self._add(stages.feature_cache(cfg, strategy, module, data))
        # before training, on the inputs shift_after reads (cached features, under the run's precision, or images)
        self._add({"shift_before": stages.shift(cfg, module, data)})
        stages.say_cache_plan(self.result.get("feature_cache"))
        self._add({"params": count_params(module)})  # on the (peft-)wrapped model; 4-bit at logical size
        resume_step = self.resume["global_step"] if self.resume else None
        trainer, self.loggers, callbacks = stages.make_trainer(
            cfg, strategy, module, data, self.result["backbone"]["name"], resume_step
        )
        if self.result.get("translate"):
            from transferlab.translate.grid import log_grid

            log_grid(self.loggers, self.result["translate"]["grid"])
        self._enter("fit")
        if strategy.trains:
            trainer.fit(module, datamodule=data, ckpt_path=cfg.get("ckpt_path"))
        device = run_device(cfg.hardware)  # for the passes outside Lightning's loops (after fit: on the CPU)
        if self.result["norm"]["reestimate"]:
            self._enter("adabn")
            which = module.adaptation.bn_layers if module.adaptation is not None else "batch_stat"
            self.result["norm"]["adabn"] = stages.adabn(module, data, trainer, strategy.norm, which, device)
        elif strategy.trains:
            stages.validate_final(trainer, module, data)
        self._enter("test")
        self._add(stages.test(cfg, trainer, module, data))
        self._add({"shift_after": stages.shift(cfg, module, data)})
        self._add(stages.callback_sections(callbacks))
        self._enter("export-adapters")
        self._add(stages.adapters(strategy, module, data, trainer, cfg.paths.output_dir, device))
        self._add({"forwards": stages.forwards(module, self.result.get("feature_cache"))})

    def run(self) -> dict:
        start = time.time()
        try:
            from transferlab.config import validate

            validate(self.cfg)  # before anything heavy is imported
            import lightning as L

            from transferlab.run.preflight import check_ckpt_path, quiet_lightning

            quiet_lightning()
            self.resume = check_ckpt_path(self.cfg)
            L.seed_everything(self.cfg.seed, workers=True, verbose=False)
            self.train_and_test(*self.build())
            self._add(outcome(self.result, self.cfg, self.trains))
        except BaseException as caught:
            from transferlab.run.preflight import explain

            e = explain(caught) or caught
            reason = str(e) or ("interrupted (signal or Ctrl-C)" if not isinstance(e, Exception) else "no message")
            self._add({"status": "failed", "error": f"{type(e).__name__}: {reason}", "failure": failure(e, self.stage)})
            if isinstance(e, SystemExit) and not e.code:  # Lightning's SIGTERMException exits 0: a scheduler
                raise SystemExit(143) from e  # (job arrays, `&&` chains) must see the stop as a failure
            if e is not caught:
                raise e from caught
            raise
        finally:
            self._enter("report-result")
            self._add({
                "time_s": round(time.time() - start, 2),
                "started_unix": round(start, 3),
                "pid": os.getpid(),
                "stage_s": self.stage_s,
                "peak_mem_mb": round(results.peak_memory_mb(), 1),
            })  # fmt: skip
            report(self.result, Path(self.cfg.paths.output_dir), resume=self.cfg.get("ckpt_path") is not None)
            if self.loggers:  # trackers get the final result (infra.loggers imports lightning: only when needed)
                from transferlab.infra.loggers import finish

                finish(self.loggers, self.result, Path(self.cfg.paths.output_dir))
        return self.result


def outcome(result: dict, cfg: DictConfig, trains: bool) -> dict:
    """`status`: "ok", or "untrained" for a training strategy that took no optimizer step (a zero budget)."""
    if not trains or result.get("global_step", 0) > 0:
        return {"status": "ok"}
    limits = {k: cfg.trainer.get(k) for k in ("max_epochs", "max_steps", "limit_train_batches")}
    budget = ", ".join(f"trainer.{k}={v}" for k, v in limits.items())
    return {
        "status": "untrained",
        "note": f"0 optimizer steps ({budget}): the metrics are those of the untrained model",
    }


def report(result: dict, out_dir: Path, resume: bool = False) -> None:
    """Write results.json (rank 0) and print its summary.

    A failed resume leaves the run's earlier results.json as it was: its failure goes next to it.
    """
    if results.is_rank_zero():
        keep = resume and result["status"] != "ok" and (out_dir / "results.json").is_file()
        path = results.write(result, out_dir, "results.resume-failed.json" if keep else "results.json")
        print(f"\ntransferlab result ({path}):\n{redact.scrub_text(results.summary(result))}", file=sys.stderr)


def config_tree(cfg: DictConfig) -> dict:
    """The resolved config as plain containers (unresolved where it can't resolve: validate() says why)."""
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    except Exception:  # e.g. a missing ${oc.env:...}; reported by validate()
        return OmegaConf.to_container(cfg, resolve=False)


def failure(e: BaseException, stage: str | None) -> dict:
    """results.json `failure`: where it stopped and why (config / data / weights / training / interrupted)."""
    details = dict((e.details if isinstance(e, TransferlabError) else None) or {})
    if not isinstance(e, Exception):
        reason = "interrupted"
    elif isinstance(e, TransferlabError):
        reason = type(e).__name__.removesuffix("Error").lower()
    else:
        reason = "unexpected"
    return {"stage": stage, "reason": details.pop("reason", reason), **details}


def run(cfg: DictConfig) -> dict:
    """Run one experiment from a composed config and return its result (also written to disk).

    The config is validated first (`transferlab.config.validate`): nothing is loaded for a config that
    can't run. Secret-named config values are masked in results, logger params and logs.
    """
    from transferlab.run.rundir import guard

    redact.register(config_tree(cfg))
    redact.install_log_filter()
    guard(cfg.paths.output_dir, resume=cfg.get("ckpt_path") is not None, overwrite=bool(cfg.get("overwrite")))
    return Recipe(cfg).run()
