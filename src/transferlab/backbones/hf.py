"""Hugging Face transformers backbones: text encoders (BERT family) and causal LMs (Llama, GPT-2 ...).

Weights come from a local folder (`path`, e.g. a packaged model) or from the Hub by `model_id` when
online; offline with only a hub id the run stops at once with a message on setting `backbone.path`.
Both backbones tokenize for the datamodule (`preprocessing.tokenize`) so that a strategy can change
the input template (zero-shot prompts) after the data is built.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from transferlab.backbones.base import Backbone, BackboneInfo, LayerGroup, Preprocessing
from transferlab.backbones.weights import WeightsFile
from transferlab.errors import ConfigError, WeightsError
from transferlab.infra import hub

_BLOCK = re.compile(r"\.(?:layer|layers|h|block|blocks)\.(\d+)\.")
_EMBED = re.compile(r"embed|\.wte\.|\.wpe\.|prompt_encoder|prefix_encoder")


@dataclass(frozen=True)
class TextPreprocessing(Preprocessing):
    """Text inputs: `tokenize(texts) -> {"input_ids", "attention_mask"}` (padded, truncated)."""

    kind: str = "text"
    tokenize: Callable[[list[str]], dict] | None = None
    tokenizer: Any = None
    max_length: int = 128


def _locate(path, model_id: str | None, name: str) -> tuple[str, str, str | None]:
    """(where to load from, source string, licence of a packaged model)."""
    if isinstance(path, WeightsFile):
        return str(path.path), path.source, path.license
    if path is not None:
        if not (Path(path) / "config.json").is_file():
            raise WeightsError(
                f"backbone.path='{path}' is not a transformers model folder (no config.json). Point it at a "
                "folder saved with `save_pretrained` (config.json + model.safetensors + tokenizer files)."
            )
        return str(path), f"file:{path}", None
    if not model_id:
        raise ConfigError(
            f"backbone '{name}' needs `backbone.model_id` (a Hub id) or `backbone.path` (a local folder)."
        )
    hub.require_hub(
        f"backbone '{name}'",
        model_id,
        cached_files=("config.json",),
        fix=f"Offline, download it elsewhere (`hf download {model_id} --local-dir DIR`; `huggingface-cli download` "
        "before huggingface_hub 1.0) and set `backbone.path=DIR` to the local folder.",
    )
    return model_id, f"hub:{model_id}", None


class HFBackbone(Backbone):
    """Shared loading, tokenization and layer groups; see `HFEncoder` and `HFCausalLM`.

    Args:
        model_id: Hugging Face Hub id (used when `path` is null).
        path: local model folder, or a `WeightsFile` from a packaged model.
        name: display name recorded in results.
        license: licence of the weights (recorded in results).
        max_length: tokenizer truncation length.
        dtype: weight dtype to load ("float32", "bfloat16", "float16").
        quantization: 4-bit loading options (set by `strategy=qlora`): `{quant_type, double_quant,
            compute_dtype}`; null = full precision.
        template: input template with a `{text}` field (zero-shot sets a prompt here).
        trust_remote_code: let transformers run model code shipped with the weights (off unless set;
            a model that needs it stops with a message saying so).
    """

    kind = "text"
    auto_class = "AutoModel"
    peft_task_type = "FEATURE_EXTRACTION"

    def __init__(
        self,
        model_id: str | None = None,
        path: str | WeightsFile | None = None,
        name: str | None = None,
        license: str | None = None,
        max_length: int = 128,
        dtype: str = "float32",
        quantization: dict | None = None,
        template: str = "{text}",
        trust_remote_code: bool = False,
    ) -> None:
        super().__init__()
        name = name or model_id or str(path)
        where, source, pkg_license = _locate(path, model_id, name)  # before the slow imports: fail fast offline
        import transformers

        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
        quantization = dict(quantization) if quantization else None
        self.location, self.dtype, self.trust_remote_code = where, dtype, bool(trust_remote_code)
        try:
            with _needs_remote_code(name):
                self.tokenizer = transformers.AutoTokenizer.from_pretrained(
                    where, trust_remote_code=self.trust_remote_code
                )
        except OSError as e:
            raise WeightsError(f"could not load the tokenizer of backbone '{name}' from '{where}': {e}") from e
        self.load(quantization)
        if self.tokenizer.pad_token is None:  # GPT-2 / Llama tokenizers have none
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "right"
        self.template, self.max_length = template, max_length
        self.num_features = self.model.config.hidden_size
        extra = {"model_type": self.model.config.model_type, "dtype": dtype, "quantization": quantization}
        self.info = BackboneInfo(name=name, source=source, license=license or pkg_license, kind=self.kind, extra=extra)
        self.preprocessing = TextPreprocessing(tokenize=self.tokenize, tokenizer=self.tokenizer, max_length=max_length)

    def load(self, quantization: dict | None = None) -> None:
        """(Re)load the weights from `self.location`, in 4 bit when `quantization` is given (QLoRA)."""
        import transformers

        kwargs: dict = {"dtype": getattr(torch, self.dtype), "trust_remote_code": self.trust_remote_code}
        if quantization:
            kwargs["quantization_config"] = _bnb_config(**quantization)
        try:
            with _needs_remote_code(self.location):
                self.model = getattr(transformers, self.auto_class).from_pretrained(self.location, **kwargs)
        except OSError as e:
            raise WeightsError(f"could not load backbone weights from '{self.location}': {e}") from e
        if hasattr(self, "info"):
            self.info.extra["quantization"] = quantization

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Format `texts` with the current template and tokenize them as one padded batch."""
        enc = self.tokenizer(
            [self.template.format(text=t) for t in texts],
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def layer_groups(self) -> list[LayerGroup]:
        """embeddings (+ soft prompts), one group per transformer block, then the rest (final norm, LM head).

        An encoder has no such rest: its pooler, which `HFEncoder.forward` never uses, is dropped.
        """
        embed, blocks, rest = [], {}, []
        for n, p in self.named_parameters():
            m = _BLOCK.search(n)
            if m:
                blocks.setdefault(int(m.group(1)), []).append((n, p))
            elif _EMBED.search(n):
                embed.append((n, p))
            else:
                rest.append((n, p))
        groups = [LayerGroup("0:embeddings", embed)] if embed else []
        groups += [LayerGroup(f"{len(groups) + i}:block{b}", blocks[b]) for i, b in enumerate(sorted(blocks))]
        return groups + ([LayerGroup(f"{len(groups)}:final", rest)] if rest else [])

    def is_quantized(self) -> bool:
        import bitsandbytes as bnb

        return any(isinstance(m, bnb.nn.Linear4bit) for m in self.model.modules())


@contextlib.contextmanager
def _needs_remote_code(name: str):
    """transformers' "requires you to execute the configuration file ..." as a clear ConfigError."""
    try:
        yield
    except ValueError as e:
        if "trust_remote_code" not in str(e):
            raise
        raise ConfigError(
            f"backbone '{name}' needs custom model code from its repository/folder, which transferlab does "
            "not run unless you set backbone.trust_remote_code=true; do that only if you trust that code."
        ) from e


def _bnb_config(quant_type: str = "nf4", double_quant: bool = True, compute_dtype: str = "float32"):
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant_type,
        bnb_4bit_use_double_quant=double_quant,
        bnb_4bit_compute_dtype=getattr(torch, compute_dtype),
    )


class HFEncoder(HFBackbone):
    """A transformers encoder (BERT, RoBERTa, MiniLM); features are mean-pooled or [CLS] token states.

    Args:
        pooling: "mean" (over real tokens; what sentence-transformers uses) or "cls".
        **kwargs: see `HFBackbone`.

    Shape:
        input `{"input_ids": (B, T), "attention_mask": (B, T)}` -> output `(B, hidden_size)`.
    """

    saves_pretrained = True  # `save_pretrained` folder + tokenizer + head (transferlab.export --format hf)

    def __init__(self, pooling: str = "mean", **kwargs) -> None:
        if pooling not in ("mean", "cls"):
            raise ConfigError(f"backbone.pooling='{pooling}' must be 'mean' or 'cls'.")
        super().__init__(**kwargs)
        self.pooling = pooling

    def __setattr__(self, name: str, value) -> None:
        """The encoder's transformers model never keeps its pooler (BERT's dense + tanh over [CLS]).

        `forward` pools `last_hidden_state` itself and never reads `pooler_output`, so the pooler would be
        parameters that train without a gradient, count as trainable, take the top layer group (partial,
        progressive and layer-wise LR decay one group off) and leave DDP with unused parameters. Dropped
        (`pooler = None`, transformers' own `add_pooling_layer=False`) wherever the model is set: the
        load, QLoRA's 4-bit reload and the planner's meta build (`planning.arch`), so all agree.
        """
        if name == "model" and isinstance(getattr(value, "pooler", None), torch.nn.Module):
            value.pooler = None
        super().__setattr__(name, value)

    def forward(self, inputs: dict) -> torch.Tensor:
        mask = inputs["attention_mask"]  # (B, T)
        h = self.model(input_ids=inputs["input_ids"], attention_mask=mask).last_hidden_state
        h = h[:, -mask.shape[1] :]  # (B, T, H): drop soft-prompt positions (prompt tuning prepends them)
        return pool(h, mask, self.pooling)


def pool(h: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Token states `(B, T, H)` -> one vector per text `(B, H)`: [CLS] state or mean over real tokens.

    The one pooling rule of encoders, shared by the backbone, the exported model and the planner.
    """
    if pooling == "cls":
        return h[:, 0]
    w = mask.unsqueeze(-1).to(h.dtype)  # (B, T, 1)
    return (h * w).sum(1) / w.sum(1).clamp(min=1.0)


class HFCausalLM(HFBackbone):
    """A transformers causal LM. As a classifier its features are the final (normed) hidden state of
    the last real token; `lm(...)` exposes the language-model interface for instruction tuning.

    Shape:
        input `{"input_ids": (B, T), "attention_mask": (B, T)}` -> output `(B, hidden_size)`.
    """

    kind = "causal_lm"
    has_lm_head = True
    auto_class = "AutoModelForCausalLM"
    peft_task_type = "CAUSAL_LM"

    def forward(self, inputs: dict) -> torch.Tensor:
        mask = inputs["attention_mask"]  # (B, T), right-padded
        out = self.model(
            input_ids=inputs["input_ids"], attention_mask=mask, output_hidden_states=True, logits_to_keep=1
        )
        h = out.hidden_states[-1][:, -mask.shape[1] :]  # (B, T, H) after the final norm
        last = mask.sum(1).long() - 1  # (B,)
        return h[torch.arange(len(h), device=h.device), last]  # (B, H)

    def lm(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor | None = None):
        """The causal-LM forward (`.loss` when labels are given, `.logits` (B, T', V))."""
        return self.model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)

    def label_token_weights(self, labels: list[str]) -> torch.Tensor:
        """Output-embedding rows of each label's first token after a space: `(K, H)`.

        `h @ W.T` then equals the LM's logits for those tokens, so a head with these weights scores
        each label as the next token after the prompt.
        """
        ids = [self.tokenizer(" " + str(w), add_special_tokens=False).input_ids[0] for w in labels]
        if len(set(ids)) < len(ids):
            raise ConfigError(
                f"labels {labels} share their first token; give them distinct names for zero-shot scoring."
            )
        return self.model.get_output_embeddings().weight[ids].detach().float().clone()
