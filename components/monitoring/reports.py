"""Window reports on disk and the history the `/` page and restarts read.

Each closed window leaves `<state_dir>/reports/<service>/<endpoint>/<window_id>.json`
(plumb's verdict plus Evidently's snapshot) and, when HTML is on, the Evidently HTML
report next to it. Only the newest `reports_kept` per endpoint stay. `history.json`
keeps a short summary of recent windows, for the page and for metrics after a restart.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

HISTORY_KEPT = 500
_SAFE = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_.]*$")


class ReportStore:
    """Writes, prunes and finds window reports; keeps the window history."""

    def __init__(self, state_dir: Path, *, reports_kept: int) -> None:
        self.root = state_dir / "reports"
        self.root.mkdir(parents=True, exist_ok=True)
        self.reports_kept = reports_kept
        self._history_path = state_dir / "history.json"
        self.history: list[dict[str, Any]] = []
        if self._history_path.exists():
            self.history = json.loads(self._history_path.read_text(encoding="utf-8"))

    def folder(self, inference_service: str, endpoint: str) -> Path:
        folder = self.root / inference_service / endpoint
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def write(self, summary: dict[str, Any], report: dict[str, Any]) -> None:
        """Write a window's JSON report, record its summary and prune old reports."""
        folder = self.folder(summary["inference_service"], summary["endpoint"])
        path = folder / f"{summary['window_id']}.json"
        _write_atomic(path, json.dumps(report, indent=1, default=str))
        self.history = [*self.history, summary][-HISTORY_KEPT:]
        _write_atomic(self._history_path, json.dumps(self.history, indent=1))
        self._prune(folder)

    def update(self, summary: dict[str, Any], changes: dict[str, Any]) -> None:
        """Merge late results (model quality) into a window's report and summary."""
        folder = self.root / summary["inference_service"] / summary["endpoint"]
        path = folder / f"{summary['window_id']}.json"
        if path.exists():
            report = json.loads(path.read_text(encoding="utf-8"))
            report.update(changes)
            _write_atomic(path, json.dumps(report, indent=1, default=str))
        summary.update(changes)
        _write_atomic(self._history_path, json.dumps(self.history, indent=1))

    def path(self, inference_service: str, endpoint: str, name: str) -> Path:
        """The file behind `/reports/<service>/<endpoint>/<name>`.

        Raises:
            FileNotFoundError: A part is not a plain file name, so cannot be a report.
        """
        for part in (inference_service, endpoint, name):
            if not _SAFE.match(part):
                raise FileNotFoundError(part)
        return self.root / inference_service / endpoint / name

    def _prune(self, folder: Path) -> None:
        reports = sorted(folder.glob("*.json"))
        for old in reports[: -self.reports_kept]:
            old.unlink(missing_ok=True)
            old.with_suffix(".html").unlink(missing_ok=True)
            logger.debug("Pruned report %s", old)


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
