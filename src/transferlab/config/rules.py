"""The compatibility layer: every "can these be combined" rule, in one place.

The rules read what the classes declare (`Backbone.kind`, `Strategy.kinds` / `trains` / `labels`,
`ClassificationData.modality` / `lm_task` / `has_target_domain`, `AdaptationLoss.needs_*`), never
names of config files. They are called at three points of a run, each as early as its inputs exist:

- `check_config(tree)`: from the classes the `_target_`s name, before anything is built (validator, planner);
- `check_parts(...)`: once the strategy and data objects exist, before data is read; `check_classes(...)` after the
  cheap `data.prepare()`, `check_model(...)` once the model is assembled; `check_export(...)` before an export.
"""

from __future__ import annotations

from typing import Any

from transferlab.errors import ConfigError, DataError


def choice(group: str, default: str = "(set)") -> str:
    """The config-group choice (e.g. `strategy=lora` -> "lora") from Hydra's runtime, for messages."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return str(HydraConfig.get().runtime.choices.get(group) or default)
    except ValueError:  # composed without a Hydra run (tests / notebooks)
        return default


def _an(word: str) -> str:
    return f"a{'n' * (word[0] in 'aeiou')} {word}"


# -- pairs ----------------------------------------------------------------------------------------
def check_strategy_kind(strategy_kinds: tuple[str, ...], kind: str, backbone: str, strategy: str) -> None:
    """A strategy adapts only the backbone kinds it declares."""
    if kind not in strategy_kinds:
        raise ConfigError(
            f"strategy={strategy} can't adapt {_an(kind)} backbone ('{backbone}'); it works with "
            f"{', '.join(strategy_kinds)} backbones. Pick another strategy (e.g. strategy=partial) or backbone."
        )


def check_modality(kind: str, modality: str, backbone: str, data: str | None) -> None:
    """The backbone's inputs and the data's modality must match (a causal LM takes text)."""
    takes = {"causal_lm": "text"}.get(kind, kind)
    if takes != modality:
        raise ConfigError(
            f"backbone '{backbone}' takes {takes} inputs but {f'data={data}' if data else 'the data'} is "
            f"{modality} data: pick a "
            "matching pair (e.g. backbone=minilm data=reviews)."
        )


def check_declared_modality(tree: dict) -> None:
    """`backbone.modality` and `data.modality` as the YAMLs declare them (config.modality): no import needed."""
    backbone, data = tree.get("backbone") or {}, tree.get("data") or {}
    if backbone.get("modality") and data.get("modality"):
        check_modality(backbone["modality"], data["modality"], backbone.get("name") or "?", choice("data", None))


def check_lm_task(adaptation: bool, strategy_trains: bool, strategy: str, lm_head: bool, backbone: str) -> None:
    """Instruction tuning (a language-modelling loss) needs a causal LM, takes no adaptation, and trains."""
    if not lm_head:
        raise ConfigError(
            f"data={choice('data')} is instruction tuning (a language-modelling loss), which needs a causal "
            f"language model; backbone '{backbone}' has no LM head. Use e.g. backbone=smollm2 or gpt2."
        )
    if adaptation:
        raise ConfigError("data=instructions (instruction tuning) takes no adaptation; use adaptation=none.")
    if not strategy_trains:
        raise ConfigError(
            f"strategy={strategy} classifies; it has nothing to do on instruction data: "
            "evaluate the untrained model with trainer.max_epochs=0 instead."
        )


def check_da_forward(forward: str, modality: str, stats: str = "both") -> None:
    if forward == "joint" and modality != "image":
        msg = f"concatenates source and target inputs, which {modality} batches of different lengths can't do"
        raise ConfigError(f"da.forward=joint {msg}; use da.forward=separate.")
    if forward == "joint" and stats != "both":  # one pass: one set of batch statistics for both domains
        raise ConfigError(f"da.running_stats={stats} needs separate passes: da.forward=separate (or =both)")


# -- 1. from the config's classes -------------------------------------------------------------------
def _declared(cls: type | None, base: type) -> type | None:
    """`cls` if it is a subclass of `base` (so it declares `base`'s capabilities), else None."""
    return cls if isinstance(cls, type) and issubclass(cls, base) else None


def check_config(tree: dict) -> None:
    """Rules that need only the classes the config names (no object is built).

    A `_target_` that is not a transferlab class (a builder function, a user's own class) declares
    nothing: the rules about it wait for the built object.
    """
    from transferlab.backbones.base import Backbone
    from transferlab.config.schema import target_class
    from transferlab.data.base import ClassificationData
    from transferlab.strategies.base import Strategy

    backbone = _declared(target_class(tree.get("backbone")), Backbone)
    strategy = _declared(target_class(tree.get("strategy")), Strategy)
    data = _declared(target_class(tree.get("data")), ClassificationData)
    name = (tree.get("backbone") or {}).get("name") or choice("backbone")
    if backbone and strategy:
        check_strategy_kind(strategy.kinds, backbone.kind, name, choice("strategy"))
    if backbone and tree.get("memory_format") == "channels_last" and backbone.kind != "image":
        raise ConfigError(
            f"memory_format=channels_last lays out convolutional image backbones, and '{name}' is "
            f"{_an(backbone.kind)} backbone; use memory_format=auto (or contiguous)."
        )
    if data is None:
        return
    if backbone:
        check_modality(backbone.kind, data.modality, name, choice("data"))
    if data.lm_task:
        lm_head = backbone.has_lm_head if backbone else True  # a builder function: let the build say
        trains = strategy.trains if strategy else True
        check_lm_task(bool(tree.get("adaptation")), trains, choice("strategy"), lm_head, name)
    if tree.get("adaptation"):
        da = tree.get("da") or {}
        check_da_forward(str(da.get("forward", "separate")), data.modality, str(da.get("running_stats", "both")))


def _arch(node: dict) -> dict | None:
    """The transformers architecture (config.json) the planner knows for an HF backbone node, else None."""
    from omegaconf import OmegaConf

    from transferlab.planning.arch import arch_source, load_arch

    try:
        return load_arch(arch_source(OmegaConf.create(node), None))
    except ConfigError:  # not shipped and no local folder (a hub id): the strategy checks after loading
        return None


def check_sizes(tree: dict) -> None:
    """Strategy hyper-parameters the model can't take, from the architecture alone (no weights read):
    a LoRA rank as wide as the adapted layers, more soft-prompt tokens than the context holds."""
    from transferlab.backbones.hf import HFBackbone
    from transferlab.config.schema import target_class

    node, strat = tree.get("backbone") or {}, tree.get("strategy") or {}
    if not _declared(target_class(node), HFBackbone) or ("r" not in strat and "num_virtual_tokens" not in strat):
        return
    arch = _arch(node)
    if arch is None or "hidden_size" not in arch:
        return
    name, hidden = node.get("name") or choice("backbone"), int(arch["hidden_size"])
    heads = int(arch.get("num_attention_heads") or 1)
    kv = int(arch.get("num_key_value_heads") or heads) * (hidden // heads)  # k/v projections (grouped-query)
    width = min(hidden, kv)
    if isinstance(strat.get("r"), int) and strat["r"] >= width:
        raise ConfigError(
            f"strategy.r={strat['r']} is not a low rank for '{name}': its adapted layers are {width} wide "
            f"(hidden_size {hidden}{f', k/v projections {kv}' if kv != hidden else ''}). Use strategy.r < {width} "
            "(LoRA typically 4-64)."
        )
    context = arch.get("max_position_embeddings") or arch.get("n_positions")
    n = strat.get("num_virtual_tokens")
    length = (tree.get("data") or {}).get("max_length") or node.get("max_length")
    prompt = "PromptTuning" in str(strat.get("_target_", ""))
    if prompt and isinstance(n, int) and context and length and n + int(length) > int(context):
        raise ConfigError(
            f"strategy.num_virtual_tokens={n} plus the texts' max_length={length} exceed the {context}-token "
            f"context of '{name}': the soft prompt is prepended to every input. Use num_virtual_tokens <= "
            f"{int(context) - int(length)} or a shorter max_length."
        )


def check_accelerator(tree: dict) -> None:
    """A GPU hardware config on a machine without CUDA."""
    accelerator = str((tree.get("hardware") or {}).get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                f"hardware={choice('hardware')} needs a CUDA GPU, but none is visible here "
                "(torch.cuda.is_available() is False). Use hardware=cpu (or hardware=ddp_cpu)."
            )


# -- 2. strategy and data objects, before data is read ------------------------------------------------
def check_parts(objective: str, strategy, data, adaptation_cls: type | None) -> None:
    """Objective, adaptation and strategy against the data object (its target domain is per instance)."""
    if objective.startswith("val/target_") and not data.has_target_domain:
        raise ConfigError(
            f"objective={objective} scores predictions on a target domain, but data={choice('data')} has "
            "none: use a domain pair (e.g. data=mnist_to_digits) or objective=val/acc."
        )
    if objective.startswith("val/target_") and data.lm_task:
        raise ConfigError(
            f"objective={objective} needs class logits, which instruction tuning (an LM loss) does not "
            "produce; use a classification task or objective=val/loss."
        )
    if adaptation_cls is None:
        return
    name = choice("adaptation")
    if not data.has_target_domain:
        raise ConfigError(
            f"adaptation={name} needs a data config with a target domain (e.g. data=mnist_to_digits, "
            "data=reviews_shift, or data=imagefolder with data.target_root=...); use adaptation=none "
            "for single-domain data."
        )
    if not strategy.trains:
        needs = "needs class predictions from a trained head and " if adaptation_cls.needs_logits else ""
        raise ConfigError(
            f"adaptation={name} {needs}trains a domain-alignment loss, but strategy {strategy.name} does "
            "not train (zero-shot). Use a training strategy (e.g. strategy=partial or lora) or adaptation=none."
        )


# -- 3. after prepare / once the model exists ---------------------------------------------------------
def check_classes(strategy, data) -> None:
    """Checks that need the data's classes (after the cheap `data.prepare()`, before any weights)."""
    labels = strategy.labels
    if labels and not data.lm_task and len(labels) != data.num_classes:
        raise ConfigError(
            f"strategy.labels has {len(labels)} names but the data has {data.num_classes} classes "
            f"({data.classes}); give one name per class, in class order, or null for the data's names."
        )


def check_model(backbone, head, adaptation: Any, data) -> None:
    """An alignment loss needs something trainable under it and a target split of at least one batch."""
    if adaptation is None or not adaptation.needs_target:
        return
    if not head.has_bottleneck and not any(p.requires_grad for p in backbone.parameters()):
        raise ConfigError(
            f"adaptation={choice('adaptation', type(adaptation).__name__)} aligns backbone features, but "
            f"strategy={choice('strategy', 'this strategy')} freezes the whole backbone: the loss could move "
            "nothing and would only train its discriminator. Add a trainable bottleneck for it to act on "
            "(head.bottleneck=256), or train part of the backbone (e.g. strategy=partial)."
        )
    n_target = len(data.domains["target"].train) if "target" in data.domains else None
    if n_target is not None and n_target < data.batch_size:
        raise DataError(
            f"the target domain's training split has {n_target} images, fewer than one batch "
            f"(data.batch_size={data.batch_size}): every step would reuse the same few target images. "
            "Add unlabelled target data, or lower data.batch_size."
        )


def check_export(fmt: str, strategy, backbone) -> None:
    """What an export format needs from the run's strategy and backbone."""
    if strategy.saves_adapter and not strategy.mergeable:
        raise ConfigError(
            f"strategy {strategy.name} can't be merged into the base weights; export its adapter "
            f"(<run dir>/adapter, peft format) instead."
        )
    if fmt == "hf" and not backbone.saves_pretrained:
        raise ConfigError(
            f"--format hf needs a transformers backbone (an encoder, e.g. minilm); this run used "
            f"'{backbone.info.name}'. Use --format onnx or safetensors."
        )
