"""Domain errors. Each message is a plain sentence a user can act on: what was expected, what was found, what to do."""

from __future__ import annotations


class CsbotError(Exception):
    """Base class: ``str(err)`` is safe to show to a user (no stack trace, no internals)."""


class InputError(CsbotError):
    """A message, vote or file the user sent cannot be used as it is."""


class IngestError(InputError):
    """A ticket file cannot be read or lacks the columns it was said to have."""


class UnknownTurn(InputError):
    """A vote names a turn that does not exist (or belongs to another session)."""


class ModelNotFound(CsbotError):
    """No usable model version exists where one was expected."""


class StorageUnavailable(CsbotError):
    """The database is locked by another writer for too long, or the disk (or its quota) is full."""
