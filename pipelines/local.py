"""Run the training pipeline on this machine through kfp's local runner.

Each run gets its own folder, `runs/<timestamp>/`, with the artifacts under
`artifacts/` and a `summary.json`; a failed run never touches earlier ones. `runs/latest`
points at the newest successful run.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import yaml

from components.common.artifacts import dir_size_bytes, read_json, write_json
from components.common.config import PlumbConfig

logger = logging.getLogger(__name__)


class PipelineFailedError(RuntimeError):
    """A pipeline task failed while running locally."""


# Lines of the runner's output worth showing live: task boundaries and plumb's own
# milestones. Everything, executor payloads included, goes to the run's pipeline.log.
_PROGRESS = re.compile(
    r"Executing task|finished with status|Skipping conditional"
    r"|\d\d:\d\d:\d\d (INFO|WARNING|ERROR) (components|pipelines)\."
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
FAILURE_TAIL_LINES = 40


class _ProgressStream(io.TextIOBase):
    """A stdout stand-in: full log to a file, progress lines to the terminal."""

    def __init__(self, log_file: TextIO, terminal: TextIO) -> None:
        self._log = log_file
        self._terminal = terminal
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            plain = _ANSI.sub("", line)
            self._log.write(plain + "\n")
            if _PROGRESS.search(plain):
                self._terminal.write(plain.strip() + "\n")
        return len(text)

    def flush(self) -> None:
        self._log.flush()
        self._terminal.flush()


@dataclass
class RunSummary:
    """What a local run produced, for people (the CLI) and machines (summary.json)."""

    run_dir: str
    status: str
    seconds: float
    dataset: str
    metrics: dict[str, float] = field(default_factory=dict)
    gate_passed: bool | None = None
    gate_reasons: list[str] = field(default_factory=list)
    selected_model: str | None = None
    model_size_bytes: int | None = None
    float_model_size_bytes: int | None = None
    model_path: str | None = None
    inference_service_path: str | None = None
    evaluation_report_path: str | None = None
    drift_report_path: str | None = None
    drift_share: float | None = None
    dataset_drifted: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def new_run_dir(runs_dir: str | Path) -> Path:
    """Create a fresh, uniquely named run folder."""
    root = Path(runs_dir)
    root.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    for suffix in ["", *(f"-{n}" for n in range(1, 100))]:
        candidate = root / f"{stamp}{suffix}"
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise RuntimeError(f"cannot create a run folder under {root}")


def run_pipeline(config: PlumbConfig, *, runs_dir: str | Path = "runs") -> RunSummary:
    """Run the whole pipeline with `SubprocessRunner(use_venv=False)`.

    Raises:
        PipelineFailedError: A task failed; its log was printed above.
    """
    import warnings

    from kfp import local

    from pipelines.training import training_pipeline

    run_dir = new_run_dir(runs_dir).resolve()
    pipeline_root = run_dir / "artifacts"
    write_json(run_dir / "config.json", config.model_dump())
    # plumb's image is not named "python", which makes kfp warn once per task; the
    # subprocess runner uses this environment, which has every dependency installed.
    warnings.filterwarnings("ignore", message="You may be attemping to run a task")
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(pipeline_root),
        raise_on_error=True,
    )
    started = time.perf_counter()
    logger.info("Running pipeline on %s into %s", config.data.dataset, run_dir)
    log_path = run_dir / "pipeline.log"
    try:
        with log_path.open("w", encoding="utf-8") as log_file:
            stream = _ProgressStream(log_file, sys.__stdout__ or sys.stdout)
            with contextlib.redirect_stdout(stream):
                training_pipeline(config_json=config.to_json())
    except RuntimeError as err:
        sys.stderr.write(_failure_excerpt(log_path) + "\n")
        summary = RunSummary(
            run_dir=str(run_dir),
            status="failed",
            seconds=time.perf_counter() - started,
            dataset=config.data.dataset,
        )
        write_json(run_dir / "summary.json", summary.to_dict())
        raise PipelineFailedError(
            f"the pipeline failed after {summary.seconds:.0f} s: {err}; the end of "
            f"the log is printed above, all of it is in {log_path}"
        ) from err

    summary = collect_summary(
        run_dir, seconds=time.perf_counter() - started, config=config
    )
    write_json(run_dir / "summary.json", summary.to_dict())
    _point_latest(Path(runs_dir), run_dir)
    return summary


def _failure_excerpt(log_path: Path) -> str:
    """The failing task's traceback if the log has one, else the log's last lines."""
    lines = [
        line
        for line in log_path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    starts = [
        i for i, line in enumerate(lines) if "Traceback (most recent call last)" in line
    ]
    if starts:
        return "\n".join(lines[starts[-1] : starts[-1] + FAILURE_TAIL_LINES])
    return "\n".join(lines[-FAILURE_TAIL_LINES:])


def _find(root: Path, name: str) -> Path | None:
    matches = sorted(root.rglob(name))
    return matches[0] if matches else None


def collect_summary(
    run_dir: Path, *, seconds: float, config: PlumbConfig
) -> RunSummary:
    """Read the run's artifacts back into a summary."""
    root = run_dir / "artifacts"
    summary = RunSummary(
        run_dir=str(run_dir),
        status="succeeded",
        seconds=seconds,
        dataset=config.data.dataset,
    )
    verdict_path = _find(root, "verdict")
    if verdict_path is not None:
        verdict = read_json(verdict_path)
        summary.metrics = verdict["metrics"]
        summary.gate_passed = verdict["passed"]
        summary.gate_reasons = verdict["reasons"]
        report = verdict_path.with_name("report")
        summary.evaluation_report_path = str(report) if report.exists() else None
    compression_path = _find(root, "compression_report")
    if compression_path is not None:
        compression = read_json(compression_path)
        summary.selected_model = compression["selected"]
        by_name = {c["name"]: c for c in compression["candidates"]}
        summary.float_model_size_bytes = by_name["float32"]["size_bytes"]
        summary.model_size_bytes = by_name[compression["selected"]]["size_bytes"]
    model_dir = _find(root, "compressed_model")
    if model_dir is not None:
        summary.model_path = str(model_dir)
        if summary.model_size_bytes is None:
            summary.model_size_bytes = dir_size_bytes(model_dir)
    service = _find(root, "inference_service")
    if service is not None and yaml.safe_load(service.read_text(encoding="utf-8")):
        summary.inference_service_path = str(service)
    drift_path = _find(root, "drift_summary")
    if drift_path is not None:
        drift = read_json(drift_path)
        summary.drift_share = drift["drift_share"]
        summary.dataset_drifted = drift["drifted"]
        html = drift_path.with_name("drift_report")
        summary.drift_report_path = str(html) if html.exists() else None
    return summary


def _point_latest(runs_dir: Path, run_dir: Path) -> None:
    latest = runs_dir / "latest"
    temporary = runs_dir / f".latest-{os.getpid()}"
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(run_dir.name)
    temporary.replace(latest)
