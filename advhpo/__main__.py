from __future__ import annotations

from advhpo.cli import main

main()
