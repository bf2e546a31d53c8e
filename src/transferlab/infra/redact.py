"""Keep secrets (W&B / Hugging Face / MLflow tokens) out of saved configs, results and logs.

A secret is the value of a config key named like one (`hf_token`, `api_key`, `password` ...), the
value of a secret environment variable (`WANDB_API_KEY`, `HF_TOKEN` ...), or a Hugging Face token
(`hf_...`). Each is written as `***`: results.json, the loggers' hyper-parameters, Hydra's saved
`.hydra/*.yaml` and every log record.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

MASK = "***"
# not `pad_token`, `eos_token` (tokenizer settings): only tokens of services, and the generic names
SECRET_KEY = re.compile(
    r"(^|_)(api_key|apikey|secret|secret_key|password|passwd|access_key|access_token|auth_token)$"
    r"|^(token|(hf|hub|huggingface|wandb|mlflow|comet|neptune|github|gh)_token)$",
    re.IGNORECASE,
)
SECRET_ENV = re.compile(r"(TOKEN|API_KEY|APIKEY|SECRET|SECRET_KEY|PASSWORD|ACCESS_KEY)$")
HF_TOKEN = re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")
_KEY_LINE = re.compile(
    r"^(\s*-?\s*[+~]*(?:[\w]+\.)*([\w]+)\s*[:=]\s*)(\S.*)$", re.MULTILINE
)  # yaml `key: v`, override `a.key=v`
_registered: set[str] = set()


def secret_values() -> set[str]:
    """Values of secret environment variables, plus those registered from the config."""
    env = {v for k, v in os.environ.items() if SECRET_ENV.search(k.upper()) and len(v) >= 8}
    return env | _registered


def register(tree: Any) -> None:
    """Remember the values of secret-named keys in a (container) config, so texts can be scrubbed too."""
    if isinstance(tree, dict):
        for k, v in tree.items():
            if SECRET_KEY.search(str(k)) and isinstance(v, str) and len(v) >= 4:
                _registered.add(v)
            else:
                register(v)
    elif isinstance(tree, list):
        for v in tree:
            register(v)


def scrub_text(text: str) -> str:
    for value in sorted(secret_values(), key=len, reverse=True):
        text = text.replace(value, MASK)
    return HF_TOKEN.sub(MASK, text)


def scrub(obj: Any) -> Any:
    """A copy of `obj` (dicts, lists, strings) with secret-named keys masked and secret values replaced."""
    if isinstance(obj, dict):
        return {k: MASK if SECRET_KEY.search(str(k)) and v not in (None, "") else scrub(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub(v) for v in obj]
    if isinstance(obj, str):
        return scrub_text(obj)
    return obj


class RedactFilter(logging.Filter):
    """Rewrites each record's message with secrets masked (attach to handlers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = scrub_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def install_log_filter() -> None:
    """Attach one `RedactFilter` to every handler of the root logger (Hydra's console and train.log)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactFilter) for f in handler.filters):
            handler.addFilter(RedactFilter())


def scrub_files(folder: Path) -> list[Path]:
    """Rewrite text files in `folder` (Hydra's `.hydra/*.yaml`) with secrets masked; returns those changed."""
    changed = []
    for path in sorted(Path(folder).glob("*.yaml")) if Path(folder).is_dir() else []:
        text = path.read_text()
        clean = scrub_text(text)
        clean = _KEY_LINE.sub(
            lambda m: (
                m.group(1)
                + (
                    m.group(3)
                    if not SECRET_KEY.search(m.group(2)) or m.group(3) in ("null", "''", '""', MASK)
                    else MASK
                )
            ),
            clean,
        )
        if clean != text:
            path.write_text(clean)
            changed.append(path)
    return changed
