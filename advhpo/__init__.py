"""advhpo: hyperparameter search for adversarially robust image classifiers.

The subpackages hold one concern each: :mod:`advhpo.objectives` turns one trial config into
numbers, :mod:`advhpo.search` decides what to try, :mod:`advhpo.storage` owns URLs, engines and
artifacts, :mod:`advhpo.dashboards` turns a study into pictures, :mod:`advhpo.cli` is the command
line. Importing this package stays cheap: torch is imported by the subpackages that need it.
"""

from __future__ import annotations

from advhpo._errors import AdvhpoError, ConfigError, DataError, DivergenceError, StorageError

__version__ = "0.1.0"

__all__ = [
    "AdvhpoError",
    "ConfigError",
    "DataError",
    "DivergenceError",
    "StorageError",
    "__version__",
]
