"""`hydra.utils.instantiate` that lets transferlab's user errors through unwrapped.

Hydra wraps every exception raised while building an object in `InstantiationException`, with
the config key and a repr: a clear `ConfigError` would reach the user as a wrapped traceback.
"""

from __future__ import annotations

from typing import Any

from transferlab.errors import TransferlabError


def build(node: Any, *args: Any, **kwargs: Any) -> Any:
    """Instantiate `node`; re-raise a `TransferlabError` cause as itself."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node, *args, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        while isinstance(cause, InstantiationException):
            cause = cause.__cause__
        if isinstance(cause, TransferlabError):
            raise cause from None
        raise
