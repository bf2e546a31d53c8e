"""Licence of a backbone's weights: resolved from every place that states it, and a policy check.

Where a licence can come from, in the order that wins:

1. the backbone YAML (`license:`), an explicit statement by whoever added the backbone;
2. the model's own metadata: timm's `pretrained_cfg["license"]`, the Hugging Face model card
   (`cardData.license`, when online or cached), an ONNX file's `metadata_props["license"]`, a
   `LICENSE` file next to a torch.hub repo or a SavedModel;
3. the licence file / metadata of the package that ships the weights (`package:<dist>==<ver>`).

`license_policy=commercial` stops a run before training when the resolved licence is
non-commercial (CC-BY-NC, "research only", the original LLaMA licence ...) or unknown.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from transferlab.errors import ConfigError

POLICIES = ("any", "commercial")
# Identifiers (lower case, SPDX-like) that allow commercial use without conditions beyond attribution.
PERMISSIVE = {
    "apache-2.0",
    "mit",
    "bsd-2-clause",
    "bsd-3-clause",
    "bsd",
    "isc",
    "cc0-1.0",
    "cc-by-4.0",
    "cc-by-3.0",
    "cc-by-sa-4.0",
    "unlicense",
    "zlib",
    "mpl-2.0",
    "openrail",
    "creativeml-openrail-m",
    "bigscience-openrail-m",
}
_NON_COMMERCIAL = re.compile(
    r"(?:\bnc\b|-nc-|-nc$|non[- ]?commercial|research[- ]only|not for commercial|"
    r"llama non-commercial|academic)",
    re.IGNORECASE,
)
# Licences that allow commercial use under conditions (user caps, acceptable-use policies).
_CONDITIONAL = re.compile(r"llama ?[23]|llama[23]|gemma|community licen[cs]e|openrail|acceptable use", re.IGNORECASE)
# First lines of common licence files -> identifier.
_FILE_HEADERS = [
    (re.compile(r"apache license,? version 2\.0|apache software license 2|apache-2\.0", re.IGNORECASE), "Apache-2.0"),
    (re.compile(r"^\s*mit license|permission is hereby granted, free of charge", re.IGNORECASE | re.MULTILINE), "MIT"),
    (re.compile(r"bsd 3-clause|redistribution and use in source and binary forms", re.IGNORECASE), "BSD-3-Clause"),
    (re.compile(r"attribution-noncommercial", re.IGNORECASE), "CC-BY-NC-4.0"),
    (re.compile(r"creative commons attribution 4\.0", re.IGNORECASE), "CC-BY-4.0"),
]


def category(license: str | None) -> str:
    """ "permissive", "conditional" (commercial use allowed with conditions), "non-commercial" or "unknown"."""
    if not license or license.strip().lower() in {"unknown", "other", "none", "null"}:
        return "unknown"
    text = license.strip()
    if _NON_COMMERCIAL.search(text):
        return "non-commercial"
    if text.lower() in PERMISSIVE:
        return "permissive"
    if _CONDITIONAL.search(text):
        return "conditional"
    return "unknown"


def from_license_file(path: Path) -> str | None:
    """An identifier for a LICENSE file's text, from its opening lines (None when not recognised)."""
    try:
        head = Path(path).read_text(errors="replace")[:2000]
    except OSError:
        return None
    for pattern, ident in _FILE_HEADERS:
        if pattern.search(head):
            return ident
    return None


def from_folder(folder: Path) -> str | None:
    """The licence stated by a LICENSE / LICENSE.txt / LICENSE.md file in `folder`."""
    for name in ("LICENSE", "LICENSE.txt", "LICENSE.md", "LICENCE", "COPYING"):
        if (Path(folder) / name).is_file():
            return from_license_file(Path(folder) / name)
    return None


def from_package(dist: str) -> str | None:
    """A package's licence: its metadata (License-Expression / License / classifier) or its licence file."""
    try:
        meta = metadata.metadata(dist)
        files = metadata.files(dist) or []
    except metadata.PackageNotFoundError:
        return None
    for value in (meta.get("License-Expression"), meta.get("License")):
        if value and value.strip().upper() not in {"UNKNOWN", ""} and len(value) < 60:
            return value.strip()
    for f in files:
        if "LICEN" in f.name.upper():
            found = from_license_file(Path(f.locate()))
            if found:
                return found
    return None


def from_hf_card(model_id: str) -> str | None:
    """`license` of a Hugging Face model card: from the local cache, or the Hub when it is reachable."""
    from transferlab.infra import hub

    try:
        if hub.offline_forced() or not hub.reachable():
            return None
        from huggingface_hub import model_info

        card = model_info(model_id, timeout=5).card_data
        return getattr(card, "license", None) if card else None
    except Exception:  # gated, renamed, rate-limited: the licence is then simply unknown from this source
        return None


def resolve(yaml_license: str | None, info, model_id: str | None = None) -> dict:
    """Resolve the licence of a built backbone.

    Args:
        yaml_license: `backbone.license` from the config (None when not set).
        info: the backbone's `BackboneInfo` (`license` = what the backbone found in its own metadata).
        model_id: a Hugging Face Hub id, looked up online when nothing else states a licence.

    Returns:
        `{"license", "source", "category", "candidates": {source: licence}}`.
    """
    candidates: dict[str, str] = {}
    if yaml_license:
        candidates["backbone YAML (backbone.license)"] = str(yaml_license)
    if info.license and str(info.license) != str(yaml_license):
        candidates[info.extra.get("license_source") or "model metadata (e.g. timm pretrained_cfg)"] = str(info.license)
    if info.source.startswith("package:"):
        dist = info.source.split(":", 1)[1].split("==")[0]
        pkg = from_package(dist)
        if pkg:
            candidates[f"metadata / licence file of the package {dist}"] = pkg
    if not candidates and model_id:
        card = from_hf_card(model_id)
        if card:
            candidates[f"Hugging Face model card of {model_id}"] = card
    source, lic = next(iter(candidates.items()), ("nowhere (no YAML key, model metadata or licence file)", None))
    return {"license": lic, "source": source, "category": category(lic), "candidates": candidates}


def enforce(policy: str | None, resolved: dict, backbone: str) -> None:
    """Raise `ConfigError` when `policy` forbids the resolved licence (before any training)."""
    policy = policy or "any"
    if policy not in POLICIES:
        raise ConfigError(f"license_policy={policy} is not one of {', '.join(POLICIES)}.")
    if policy == "commercial" and resolved["category"] in ("non-commercial", "unknown"):
        what = "a non-commercial" if resolved["category"] == "non-commercial" else "an unknown"
        raise ConfigError(
            f"license_policy=commercial: backbone '{backbone}' has {what} licence "
            f"'{resolved['license']}' (from {resolved['source']}). Pick a backbone whose weights allow commercial "
            "use, set the licence you have verified with `backbone.license=...`, or run with license_policy=any."
        )
