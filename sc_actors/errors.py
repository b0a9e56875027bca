"""Errors the control plane raises; the API maps each to one HTTP status."""
from __future__ import annotations


class ScError(Exception):
    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotFound(ScError, KeyError):
    status = 404

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class Conflict(ScError):
    status = 409


class Invalid(ScError, ValueError):
    status = 400


class Unavailable(ScError):
    status = 503


class StorageFailed(Unavailable):
    """The StateDB could not make a change durable (EIO, a read-only disk, …); nothing changed."""

    status = 503


class StorageFull(StorageFailed):
    """The disk of the StateDB's state dir is full (ENOSPC): 507 Insufficient Storage."""

    status = 507
