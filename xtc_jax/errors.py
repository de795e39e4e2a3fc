"""User-facing error types: one clear message naming the file or field and the fix."""

from __future__ import annotations


class XtcError(Exception):
    """Base class of every error a user can cause (bad path, corrupt file, config typo)."""


class DataError(XtcError):
    """A data file or tree is missing, unreadable or in the wrong format.

    The message names the offending file and says how to fix it.
    """


class ConfigError(XtcError):
    """A config field has an invalid value; the message names the field and the fix."""
