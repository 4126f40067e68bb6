"""An append-only JSON-lines journal so an in-process emulator outlives its process.

Invariants: one event per line, flushed and fsynced before the API answers, so a request
whose id a client may have seen is on disk; a torn last line (the process was killed
mid-write) is ignored on load; tokens are never written, only a short hash of them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class Journal:
    """Events of one emulator, in the order they happened."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def load(self) -> list[dict[str, Any]]:
        """Every complete event recorded so far (none when the file does not exist)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        events: list[dict[str, Any]] = []
        for line in text.splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn write from a killed process
            if isinstance(event, dict):
                events.append(event)
        return events

    def append(self, event: dict[str, Any]) -> None:
        """Write one event durably."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(event, sort_keys=True, separators=(",", ":")) + "\n"
        with self.path.open("a", encoding="utf-8") as fh:
            if fh.tell() > 0 and not self._ends_with_newline():
                fh.write("\n")  # close a torn line so this event stays parseable
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"
