"""The one error hierarchy of advhpo: every deliberate failure is an :class:`AdvhpoError`."""

from __future__ import annotations


class AdvhpoError(Exception):
    """Base class of every error advhpo raises on purpose.

    The CLI prints such an error as one line and exits non-zero; anything else is a bug.
    """


class ConfigError(AdvhpoError, ValueError):
    """A configuration value is out of range or unknown (e.g. eps outside [0, 1])."""


class DataError(AdvhpoError):
    """A dataset file is missing, truncated or corrupt, or may not be downloaded."""


class DivergenceError(AdvhpoError):
    """Training produced a non-finite loss; the run stopped instead of producing garbage."""


class StorageError(AdvhpoError):
    """The study storage could not be reached or used."""
