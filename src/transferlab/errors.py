"""User-facing errors: each says what was wrong, what was expected and how to fix it."""


class TransferlabError(Exception):
    """An error caused by the user's configuration, data or environment (not a bug).

    `train.py` prints these as one clear message, without a traceback, and exits non-zero.
    `details` (if any) go into results.json `failure`.
    """

    details: dict | None = None


class ConfigError(TransferlabError):
    """The composed configuration is invalid or an incompatible combination."""


class DataError(TransferlabError):
    """The data is missing, empty, corrupt or does not fit the requested split."""


class WeightsError(TransferlabError):
    """Pretrained weights can't be obtained (offline hub id, missing local file, bad file)."""


class TrainingError(TransferlabError):
    """Training stopped by a fault (non-finite loss or gradients, disk full while checkpointing).

    The last good checkpoint is kept; `details` (reason, step, last checkpoint) go into results.json.
    """

    def __init__(self, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.details = details or {}
