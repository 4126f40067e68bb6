"""batcher: a resumable, concurrent batch runner for RunComfy's Model API."""

from __future__ import annotations

__version__ = "0.1.0"
