"""`hydra.utils.instantiate` that lets transferlab's user errors through unwrapped.

Hydra wraps every exception raised while building an object in `InstantiationException`, with
the config key and a repr: a clear `ConfigError` would reach the user as a wrapped traceback.
"""

from __future__ import annotations

from typing import Any

from transferlab.errors import TransferlabError


def _config_error(e: Exception, cause: BaseException | None):
    """A library's refusal of the values it was built with, as one ConfigError naming the config key."""
    from transferlab.errors import ConfigError

    text = str(e)
    key = text.split("full_key:", 1)[1].split()[0] if "full_key:" in text else None
    why = f"{type(cause).__name__}: {cause}" if cause is not None else text.splitlines()[0]
    where = f"the config at `{key}`" if key else "a config node"
    return ConfigError(f"{where} could not be built ({why}). Fix the values under {key or 'that node'}.")


def build(node: Any, *args: Any, **kwargs: Any) -> Any:
    """Instantiate `node` (without its declared keys); re-raise a `TransferlabError` cause as itself."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from transferlab.config.modality import strip

    node = strip(node)  # `modality` / `default_data` describe the node; the constructor does not take them
    try:
        return instantiate(node, *args, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        while isinstance(cause, InstantiationException):
            cause = cause.__cause__
        if isinstance(cause, TransferlabError):
            raise cause from None
        raise _config_error(e, cause) from e
