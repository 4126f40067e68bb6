"""`python -m batcher` runs the command line."""

from __future__ import annotations

from batcher.cli import main

main()
