"""Fail-fast access to model hubs.

Hub ids (timm `pretrained=True`, `from_pretrained("org/name")`) are the real path for users with a
network. Offline, huggingface_hub and timm may retry for minutes; transferlab instead checks
reachability once, with a short timeout, and raises one `WeightsError` that says how to supply
local weights. Files already in the local Hugging Face cache are used without any network.
"""

from __future__ import annotations

import functools
import os
import socket

from transferlab.errors import WeightsError

HF_HOST = "huggingface.co"
_TIMEOUT_S = 3.0


def offline_forced() -> bool:
    """True when the user asked for offline mode (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)."""
    return any(
        os.environ.get(k, "").lower() in {"1", "true", "yes"} for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


@functools.lru_cache(maxsize=8)
def reachable(host: str = HF_HOST, port: int = 443, timeout: float = _TIMEOUT_S) -> bool:
    """One TCP connect with a short timeout: no retries, no hang."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def hf_cached(repo_id: str, filenames: tuple[str, ...]) -> bool:
    """True when one of `filenames` of `repo_id` is already in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    for name in filenames:
        hit = try_to_load_from_cache(repo_id, name)
        if isinstance(hit, str) and os.path.exists(hit):
            return True
    return False


def require_hub(what: str, repo_id: str, fix: str, cached_files: tuple[str, ...] = ()) -> None:
    """Raise `WeightsError` at once when `repo_id` can't be fetched from the Hugging Face Hub.

    Args:
        what: the thing being loaded, for the message (e.g. "backbone 'resnet50'").
        repo_id: the hub repository id.
        fix: how to supply local weights instead (one sentence, shown to the user).
        cached_files: file names that, when already cached locally, make the network unnecessary.
    """
    if cached_files and hf_cached(repo_id, cached_files):
        return
    if offline_forced():
        reason = "HF_HUB_OFFLINE is set"
    elif not reachable():
        reason = f"{HF_HOST} is unreachable (no network?)"
    else:
        return
    raise WeightsError(f"{what} needs pretrained weights from the Hugging Face Hub ('{repo_id}') but {reason}. {fix}")
