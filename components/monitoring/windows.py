"""Windows of production rows, request/response pairing and labels, kept on disk.

The monitor keeps one open window per InferenceService and endpoint. Every paired
event appends its rows to the window's journal (one JSON line per event) under the
state directory before it is counted, so a restarted pod reloads each window with the
rows it had. A closed window's journal moves to `closing/` until its report is written,
so a crash while reporting recomputes that report on restart. While a closed window
waits for its report its rows live only in that journal (`Window.spill`), so a backlog
of windows behind a slow report costs disk, not memory.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from components.monitoring.drift import PREDICTION_COLUMN
from components.monitoring.events import InferenceEvent

logger = logging.getLogger(__name__)

REQUEST_ID_COLUMN = "request_id"


@dataclass(frozen=True, order=True)
class WindowKey:
    """Which traffic a window holds."""

    inference_service: str
    endpoint: str

    @property
    def slug(self) -> str:
        return f"{self.inference_service}__{self.endpoint}"


@dataclass
class Window:
    """A window of rows; open while it fills, closed once it is reported on."""

    key: WindowKey
    namespace: str
    opened_at: float
    journal: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    window_id: str = ""
    closed_at: float | None = None
    row_count: int = 0
    """Rows the window holds, in memory or (spilled) in its journal."""
    spilled: bool = False
    _handle: TextIO | None = field(default=None, repr=False, compare=False)

    def append(self, line: str) -> None:
        """Write one journal line; flushed, so a killed process keeps it."""
        if self._handle is None:
            self._handle = self.journal.open("a", encoding="utf-8")
            if _ends_torn(self.journal):
                # End the torn line a killed writer left, or this line would join it
                # and both would be skipped when the journal is read back.
                self._handle.write("\n")
        self._handle.write(line + "\n")
        self._handle.flush()

    def close_journal(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def extend(self, rows: list[dict[str, Any]]) -> None:
        self.rows.extend(rows)
        self.row_count += len(rows)

    def spill(self) -> None:
        """Drop the rows from memory; `frame` reads them back from the journal."""
        self.close_journal()
        self.rows = []
        self.spilled = True

    def frame(self, columns: list[str]) -> pd.DataFrame:
        """The rows as a table: features, `prediction` and `request_id`."""
        rows = self.rows
        if self.spilled:
            journaled = _read_journal(self.journal)
            rows = [] if journaled is None else journaled.rows
        return pd.DataFrame(
            rows, columns=[*columns, PREDICTION_COLUMN, REQUEST_ID_COLUMN]
        )


class WindowStore:
    """Open windows and their journals under `<state_dir>/windows`."""

    def __init__(self, state_dir: Path) -> None:
        self._open_dir = state_dir / "windows" / "open"
        self._closing_dir = state_dir / "windows" / "closing"
        self._open_dir.mkdir(parents=True, exist_ok=True)
        self._closing_dir.mkdir(parents=True, exist_ok=True)
        self.open: dict[WindowKey, Window] = {}

    def add(
        self,
        key: WindowKey,
        *,
        namespace: str,
        request_id: str,
        rows: list[dict[str, Any]],
        predictions: list[float] | None,
        now: float | None = None,
    ) -> Window:
        """Append one request's rows (and predictions) to the key's open window."""
        now = time.time() if now is None else now
        window = self.open.get(key)
        if window is None:
            window = Window(
                key=key,
                namespace=namespace,
                opened_at=now,
                journal=self._open_dir / f"{key.slug}.jsonl",
            )
            self.open[key] = window
        entry = {
            "id": request_id,
            "t": now,
            "ns": namespace,
            "rows": rows,
            "p": predictions,
        }
        window.append(json.dumps(entry, separators=(",", ":")))
        window.extend(_rows_of(entry))
        return window

    def due(
        self, now: float, *, window_rows: int, window_seconds: float, min_rows: int
    ) -> list[WindowKey]:
        """Keys whose window is full, or old enough and holding `min_rows` rows."""
        return [
            key
            for key, window in self.open.items()
            if window.row_count >= window_rows
            or (
                now - window.opened_at >= window_seconds
                and window.row_count >= min_rows
            )
        ]

    def close(self, key: WindowKey, *, now: float | None = None) -> Window:
        """Take the key's window out of the open set and park its journal in closing/."""
        window = self.open.pop(key)
        window.close_journal()
        window.closed_at = time.time() if now is None else now
        stamp = datetime.fromtimestamp(window.closed_at, tz=UTC).strftime(
            "%Y%m%dT%H%M%SZ"
        )
        window.window_id = f"{stamp}-{uuid.uuid4().hex[:6]}"
        parked = self._closing_dir / f"{key.slug}__{window.window_id}.jsonl"
        os.replace(window.journal, parked)
        window.journal = parked
        return window

    def finish(self, window: Window) -> None:
        """Forget a closed window once its report is on disk."""
        window.journal.unlink(missing_ok=True)

    def restore(self) -> list[Window]:
        """Reload open windows; return closed windows whose report was never written."""
        for path in sorted(self._open_dir.glob("*.jsonl")):
            window = _read_journal(path)
            if window is not None:
                self.open[window.key] = window
        pending = []
        for path in sorted(self._closing_dir.glob("*.jsonl")):
            window = _read_journal(path)
            if window is None:
                continue
            window.window_id = path.stem.split("__", 2)[2]
            window.closed_at = window.opened_at
            window.spill()
            pending.append(window)
        restored = sum(window.row_count for window in self.open.values())
        logger.info(
            "Restored %d open windows with %d rows and %d windows awaiting a report",
            len(self.open),
            restored,
            len(pending),
        )
        return pending


def _rows_of(entry: dict[str, Any]) -> list[dict[str, Any]]:
    predictions = entry.get("p") or [None] * len(entry["rows"])
    return [
        {**row, PREDICTION_COLUMN: prediction, REQUEST_ID_COLUMN: entry["id"]}
        for row, prediction in zip(entry["rows"], predictions, strict=False)
    ]


def _ends_torn(path: Path) -> bool:
    """Whether the file's last line lacks its newline (a write cut off mid-line)."""
    size = path.stat().st_size
    if size == 0:
        return False
    with path.open("rb") as journal:
        journal.seek(size - 1)
        return journal.read(1) != b"\n"


def _read_journal(path: Path) -> Window | None:
    inference_service, endpoint = path.stem.split("__")[:2]
    window: Window | None = None
    with path.open(encoding="utf-8") as journal:
        for number, line in enumerate(journal, start=1):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                # A pod killed mid-write leaves a torn last line; the rows before it count.
                logger.warning("Skipped torn line %d of %s", number, path)
                continue
            if window is None:
                window = Window(
                    key=WindowKey(inference_service, endpoint),
                    namespace=str(entry.get("ns", "")),
                    opened_at=float(entry["t"]),
                    journal=path,
                )
            window.extend(_rows_of(entry))
    return window


@dataclass
class Pending:
    """An event waiting for its partner."""

    event: InferenceEvent
    decoded: list[Any]
    received_at: float


class Pairer:
    """Pairs a request with its response by `ce-id`, waiting a bounded time."""

    def __init__(self, *, timeout_seconds: float, max_pending: int) -> None:
        self.timeout_seconds = timeout_seconds
        self.max_pending = max_pending
        self._pending: OrderedDict[tuple[str, str], Pending] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def offer(
        self, event: InferenceEvent, decoded: list[Any], *, now: float
    ) -> tuple[Pending, Pending] | None:
        """Hold an event; return (request, response) once both halves are here."""
        scope = event.inference_service
        partner_kind = "response" if event.kind == "request" else "request"
        partner = self._pending.pop((scope, f"{partner_kind}:{event.event_id}"), None)
        mine = Pending(event=event, decoded=decoded, received_at=now)
        if partner is None:
            self._pending[(scope, f"{event.kind}:{event.event_id}")] = mine
            return None
        return (mine, partner) if event.kind == "request" else (partner, mine)

    def expire(self, now: float, *, everything: bool = False) -> list[Pending]:
        """Remove and return events that waited too long (or all, at shutdown)."""
        expired = []
        while self._pending:
            key, oldest = next(iter(self._pending.items()))
            overdue = now - oldest.received_at >= self.timeout_seconds
            if not (everything or overdue or len(self._pending) > self.max_pending):
                break
            del self._pending[key]
            expired.append(oldest)
        return expired


class LabelStore:
    """Labels sent to `/feedback`, keyed by request id, journaled to the state dir."""

    def __init__(self, state_dir: Path, *, max_labels: int) -> None:
        self._path = state_dir / "labels.jsonl"
        self._max = max_labels
        self._labels: OrderedDict[str, list[Any]] = OrderedDict()
        self._lines = 0
        if self._path.exists():
            with self._path.open(encoding="utf-8") as journal:
                for line in journal:
                    try:
                        entry = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    self._remember(str(entry["id"]), list(entry["labels"]))
        # Rewrite the journal with what survived the bound, so it does not grow forever.
        self._rewrite()

    def __len__(self) -> int:
        return len(self._labels)

    def add(self, labels: dict[str, list[Any]]) -> None:
        with self._path.open("a", encoding="utf-8") as journal:
            for request_id, values in labels.items():
                journal.write(json.dumps({"id": request_id, "labels": values}) + "\n")
                self._remember(request_id, values)
                self._lines += 1
        if self._lines > 2 * len(self._labels):
            self._rewrite()

    def get(self, request_id: str) -> list[Any] | None:
        return self._labels.get(request_id)

    def _remember(self, request_id: str, values: list[Any]) -> None:
        self._labels[request_id] = values
        self._labels.move_to_end(request_id)
        while len(self._labels) > self._max:
            self._labels.popitem(last=False)

    def _rewrite(self) -> None:
        temporary = self._path.with_suffix(".tmp")
        with temporary.open("w", encoding="utf-8") as journal:
            for request_id, values in self._labels.items():
                journal.write(json.dumps({"id": request_id, "labels": values}) + "\n")
        os.replace(temporary, self._path)
        self._lines = len(self._labels)
