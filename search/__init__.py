"""advhpo.search: filled by its own issue (see the README's layout table)."""

from __future__ import annotations

__all__: list[str] = []
