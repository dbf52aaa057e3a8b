"""Logging set-up, done once at each entry point (CLI, component, server)."""

from __future__ import annotations

import logging
import os

LOG_LEVEL_ENV = "PLUMB_LOG_LEVEL"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str | None = None) -> None:
    """Configure plumb's loggers; the level comes from `PLUMB_LOG_LEVEL` (default INFO)."""
    chosen = (level or os.environ.get(LOG_LEVEL_ENV) or "INFO").upper()
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT, datefmt="%H:%M:%S"))
    for name in ("components", "pipelines", "plumb"):
        package_logger = logging.getLogger(name)
        package_logger.handlers[:] = [handler]
        package_logger.setLevel(chosen)
        package_logger.propagate = False
