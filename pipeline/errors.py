"""Exceptions a user can act on.

Every failure caused by what the user gave us (a file, a config, a model folder) is one of these,
so the CLI and the HTTP service can turn it into one readable line or one JSON error without
showing a traceback, while genuine bugs still surface as ordinary exceptions.
"""

from __future__ import annotations


class SmokewatchError(Exception):
    """Base class: the message is written for the person who ran smokewatch."""


class SourceError(SmokewatchError):
    """The input could not be read as video or images: missing, empty, truncated, or not media.

    `reason` is a stable machine-readable word (``missing``, ``empty``, ``not_media``,
    ``truncated``, ``too_large``, ``unreadable``) so callers can map it to statuses without
    parsing messages.
    """

    def __init__(self, message: str, reason: str = "unreadable") -> None:
        super().__init__(message)
        self.reason = reason


class ConfigError(SmokewatchError):
    """A configuration file or override is invalid."""


class BundleError(SmokewatchError):
    """A model bundle is missing, incomplete, or does not match its configuration."""
