"""The process's umask, for files made private by ``tempfile`` but meant to be shared."""

from __future__ import annotations

import os


def umask() -> int:
    """The process's umask; reading it means setting it, so it is put straight back."""
    mask = os.umask(0o077)
    os.umask(mask)
    return mask
