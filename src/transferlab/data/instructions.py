"""Instruction tuning data for causal LMs: prompt/response pairs, loss on response tokens only.

Pairs come from the SYNTHETIC instruction set (`synthetic_text.instructions`) or a user JSONL file.
Each example is rendered with the tokenizer's chat template when it has one (else `prompt\\n`), the
response follows, then the end-of-sequence token. Labels are -100 on prompt and padding tokens.
Splits are stratified by task family (the "label" used only for splitting).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from transferlab.data.base import ClassificationData, Domain
from transferlab.errors import DataError


@dataclass
class PairSource:
    name: str
    prompts: list[str]
    responses: list[str]
    tasks: np.ndarray  # task family per pair (stratifies the splits)
    task_names: list[str]


def synthetic_instructions(n_per_task: int = 60, seed: int = 0) -> PairSource:
    """The SYNTHETIC five-task instruction set (sentiment, addition, French colours, opposites, capitals)."""
    from transferlab.data import synthetic_text as st

    prompts, responses, tasks = st.instructions(n_per_task, seed)
    return PairSource("synthetic_instructions", prompts, responses, tasks, list(st.TASKS))


def jsonl_pairs(
    path: str, prompt_key: str = "prompt", response_key: str = "response", task_key: str | None = None
) -> PairSource:
    """A JSONL file with one `{"prompt": ..., "response": ...}` object per line."""
    import pandas as pd

    if not Path(path).is_file():
        raise DataError(f"instruction file '{path}' not found; set data.source.path to a .jsonl file.")
    df = pd.read_json(path, lines=True)
    missing = [k for k in (prompt_key, response_key) if k not in df.columns]
    if missing:
        raise DataError(
            f"'{path}' has no key(s) {missing} (keys: {list(df.columns)}); set data.source.prompt_key/response_key."
        )
    names = sorted(map(str, df[task_key].unique())) if task_key else ["all"]
    tasks = np.asarray([names.index(str(t)) for t in df[task_key]] if task_key else [0] * len(df), dtype=np.int64)
    return PairSource(
        Path(path).stem, df[prompt_key].astype(str).tolist(), df[response_key].astype(str).tolist(), tasks, names
    )


class Pairs(Dataset):
    def __init__(self, prompts: list[str], responses: list[str]) -> None:
        self.prompts, self.responses = prompts, responses

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, i: int) -> dict:
        return {"prompt": self.prompts[i], "response": self.responses[i]}


class InstructionCollate:
    """Render, tokenize and right-pad prompt/response pairs; labels mask everything but the response.

    Shape:
        output `{"input_ids": (B, T), "attention_mask": (B, T), "labels": (B, T)}`.
    """

    def __init__(self, tokenizer, max_length: int = 256, chat_template: bool = True) -> None:
        self.tok, self.max_length = tokenizer, max_length
        self.chat = chat_template and bool(getattr(tokenizer, "chat_template", None))

    def render_prompt(self, prompt: str) -> str:
        if self.chat:
            return self.tok.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
        return prompt + "\n"

    def __call__(self, items: list[dict]) -> dict:
        rows = []
        for it in items:
            p = self.tok(self.render_prompt(it["prompt"]), add_special_tokens=False).input_ids
            r = self.tok(it["response"] + self.tok.eos_token, add_special_tokens=False).input_ids
            p = p[-max(1, self.max_length - len(r)) :]  # keep the end of a long prompt and the whole response
            rows.append((p + r, [-100] * len(p) + r))
        T = max(len(ids) for ids, _ in rows)
        pad = self.tok.pad_token_id
        ids = torch.tensor([x + [pad] * (T - len(x)) for x, _ in rows])
        labels = torch.tensor([y + [-100] * (T - len(y)) for _, y in rows])
        mask = torch.tensor([[1] * len(x) + [0] * (T - len(x)) for x, _ in rows])
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


class InstructionData(ClassificationData):
    """Instruction tuning pairs for a causal LM (routes `run()` to `lm_module.InstructionModule`).

    Args:
        source: callable returning a `PairSource`.
        max_length: token budget per example (prompt truncated from the left).
        chat_template: render prompts with the tokenizer's chat template when it has one.
        **kwargs: see `ClassificationData` (`train_per_class` = pairs per task family).
    """

    lm_task = True  # instruction tuning: a language-modelling loss, no classification head
    modality = "text"

    def __init__(self, source, max_length: int = 256, chat_template: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self._load, self.max_length, self.chat_template = source, max_length, chat_template
        self.pairs: PairSource | None = None

    def load_domain(self, which: str) -> Domain:
        self.pairs = self._load()
        return Domain(self.pairs.name, self.pairs.tasks, self.pairs.task_names)

    def build(self, preprocessing) -> None:
        tok = getattr(preprocessing, "tokenizer", None)
        if tok is None:
            raise DataError("data=instructions needs a causal-LM backbone with a tokenizer (e.g. backbone=smollm2).")
        super().build(preprocessing)
        self.collate_fn = InstructionCollate(tok, self.max_length, self.chat_template)

    def make_dataset(self, which: str, indices: np.ndarray, train: bool) -> Dataset:
        return Pairs([self.pairs.prompts[i] for i in indices], [self.pairs.responses[i] for i in indices])
