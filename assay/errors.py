"""Error classes. The CLI prints their message (no traceback) and exits non-zero.

- ``AssayError``: base; fatal unless a subclass says otherwise.
- ``ConfigError``: bad config key or value (names the key and the file).
- ``InputError``: bad input data (names the file and line/row).
- ``ShardError``: one shard failed; the run fails or skips it per ``on_error``.
- ``RetryableError``: transient; the Ray executor retries the task.
"""

from __future__ import annotations


class AssayError(Exception):
    """Base class of every error assay raises on purpose."""

    exit_code = 1


class ConfigError(AssayError):
    exit_code = 2


class InputError(AssayError):
    exit_code = 3


class ShardError(AssayError):
    exit_code = 4


class RetryableError(AssayError):
    exit_code = 5


class RunStateError(AssayError):
    """The run directory is inconsistent with what was asked (other config, missing stage)."""

    exit_code = 6
