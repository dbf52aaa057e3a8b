"""Run the training pipeline on this machine through kfp's local runner.

Each run gets its own folder, `runs/<timestamp>/`, with the artifacts under
`artifacts/` and a `summary.json`; a failed run never touches earlier ones. `runs/latest`
points at the newest successful run. Stages whose inputs did not change since a stored
run are skipped: `pipelines.cache` keys them and keeps their outputs in `runs/.cache/`;
a skipped stage's outputs are linked under `artifacts/cached/<stage>/`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import yaml

from components.common.artifacts import dir_size_bytes, read_json, write_json
from components.common.config import PlumbConfig

if TYPE_CHECKING:
    from pipelines.cache import StageCache, StoredStage

logger = logging.getLogger(__name__)

CACHE_DIR = ".cache"
"""Folder of the stage cache inside the runs folder."""
CACHED_DIR = "cached"
"""Folder of a run's pipeline root holding the outputs of stages it took from cache."""
KFP_CACHE_DIR = ".kfp-cache"


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
    cached_stages: list[str] = field(default_factory=list)
    """Stages skipped because a verified stage-cache entry matched their key."""
    stored_stages: list[str] = field(default_factory=list)
    """Stages that ran in this run and were stored in the stage cache."""

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


def run_pipeline(
    config: PlumbConfig,
    *,
    runs_dir: str | Path = "runs",
    use_cache: bool = True,
    preflight: Callable[[PlumbConfig], object] | None = None,
) -> RunSummary:
    """Run the whole pipeline with `SubprocessRunner(use_venv=False)`.

    Stages whose key (see `pipelines.cache`) matches a verified entry under
    `<runs_dir>/.cache/` are skipped and their stored outputs reused; every stage
    that succeeds is stored, also when a later one fails.

    Args:
        config: The run's validated config.
        runs_dir: Where run folders and the stage cache live.
        use_cache: False runs every stage (their outputs still refresh the cache).
        preflight: Called with `config` before the run folder is created, unless
            the preprocess stage is cached (its data passed then); bad input raises.

    Raises:
        PipelineFailedError: A task failed; its log was printed above.
    """
    import warnings

    from kfp import local

    from pipelines.cache import StageCache
    from pipelines.training import build_training_pipeline

    cache = StageCache(Path(runs_dir) / CACHE_DIR)
    keys = _cacheable_keys(config)
    # --no-cache skips the look-up only: what runs still refreshes the cache.
    hits = _lookup_hits(cache, keys) if use_cache else {}
    if preflight is not None and "preprocess" not in hits:
        preflight(config)

    run_dir = new_run_dir(runs_dir).resolve()
    pipeline_root = run_dir / "artifacts"
    write_json(run_dir / "config.json", config.model_dump())
    pipeline = build_training_pipeline(
        config, cached_keys={name: stored.key for name, stored in hits.items()}
    )
    # kfp's own cache lives in the run folder and only ever holds the entries plumb
    # verified above: nothing kfp cached in another run is trusted.
    kfp_cache_root = run_dir / KFP_CACHE_DIR
    # plumb's image is not named "python", which makes kfp warn once per task; the
    # subprocess runner uses this environment, which has every dependency installed.
    warnings.filterwarnings("ignore", message="You may be attemping to run a task")
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(pipeline_root),
        raise_on_error=True,
        enable_caching=bool(hits),
        cache_root=str(kfp_cache_root),
    )
    _hand_hits_to_kfp(pipeline, cache, hits, pipeline_root=pipeline_root)
    _log_plan(keys, hits, use_cache=use_cache)

    started = time.perf_counter()
    logger.info("Running pipeline on %s into %s", config.data.dataset, run_dir)
    log_path = run_dir / "pipeline.log"
    try:
        with log_path.open("w", encoding="utf-8") as log_file:
            stream = _ProgressStream(log_file, sys.__stdout__ or sys.stdout)
            with contextlib.redirect_stdout(stream):
                pipeline(config_json=config.to_json())
    except RuntimeError as err:
        stored = _store_finished(pipeline, cache, keys, hits, pipeline_root)
        sys.stderr.write(_failure_excerpt(log_path) + "\n")
        summary = RunSummary(
            run_dir=str(run_dir),
            status="failed",
            seconds=time.perf_counter() - started,
            dataset=config.data.dataset,
            cached_stages=sorted(hits),
            stored_stages=stored,
        )
        write_json(run_dir / "summary.json", summary.to_dict())
        raise PipelineFailedError(
            f"the pipeline failed after {summary.seconds:.0f} s: {err}; the end of "
            f"the log is printed above, all of it is in {log_path}"
        ) from err
    finally:
        shutil.rmtree(kfp_cache_root, ignore_errors=True)

    stored = _store_finished(pipeline, cache, keys, hits, pipeline_root)
    summary = collect_summary(
        run_dir, seconds=time.perf_counter() - started, config=config
    )
    summary.cached_stages = sorted(hits)
    summary.stored_stages = stored
    write_json(run_dir / "summary.json", summary.to_dict())
    _point_latest(Path(runs_dir), run_dir)
    return summary


def _cacheable_keys(config: PlumbConfig) -> dict[str, str]:
    from pipelines.cache import stage_keys

    keys = stage_keys(config)
    for name, key in keys.items():
        if key is None:
            logger.info("%s: not cached (it reads a remote input)", name)
    return {name: key for name, key in keys.items() if key is not None}


def _lookup_hits(cache: StageCache, keys: dict[str, str]) -> dict[str, StoredStage]:
    hits = {}
    for name, key in keys.items():
        stored = cache.lookup(name, key)
        if stored is not None:
            hits[name] = stored
    return hits


def _hand_hits_to_kfp(
    pipeline: Any,
    cache: StageCache,
    hits: dict[str, StoredStage],
    *,
    pipeline_root: Path,
) -> None:
    """Link each hit into the run folder and put it in kfp's cache under its key."""
    from kfp.local.cache import get_local_cache

    kfp_cache = get_local_cache()
    for name, stored in hits.items():
        outputs = cache.materialize(stored, pipeline_root / CACHED_DIR / name)
        assert kfp_cache is not None, "kfp caching is on whenever there is a hit"
        kfp_key = kfp_cache.compute_key(
            component_name=_component_name(pipeline, name),
            image="",
            full_command=[],
            arguments={},
            custom_cache_key=stored.key,
        )
        kfp_cache.put(kfp_key, outputs)


def _log_plan(
    keys: dict[str, str], hits: dict[str, StoredStage], *, use_cache: bool
) -> None:
    if not use_cache:
        logger.info("Stage cache not read (--no-cache): every stage runs and is stored")
        return
    for name, key in keys.items():
        state = "cached" if name in hits else "to run"
        logger.info("%s: %s (key %s)", name, state, key[:12])


def _store_finished(
    pipeline: Any,
    cache: StageCache,
    keys: dict[str, str],
    hits: dict[str, StoredStage],
    pipeline_root: Path,
) -> list[str]:
    """Store every cacheable stage that ran and finished in this run."""
    stored = []
    for name, key in keys.items():
        if name in hits:
            continue
        task_dirs = [
            path
            for path in pipeline_root.glob(f"*/{name}")
            if path.parent.name != CACHED_DIR
        ]
        if len(task_dirs) != 1:
            continue
        if cache.store(
            name,
            key,
            task_dir=task_dirs[0],
            artifact_types=_artifact_types(pipeline, name),
        ):
            logger.info("%s: stored in the stage cache (key %s)", name, key[:12])
            stored.append(name)
    return sorted(stored)


def _component_name(pipeline: Any, task: str) -> str:
    return str(pipeline.pipeline_spec.root.dag.tasks[task].component_ref.name)


def _artifact_types(pipeline: Any, task: str) -> dict[str, str]:
    component = pipeline.pipeline_spec.components[_component_name(pipeline, task)]
    return {
        name: spec.artifact_type.schema_title
        for name, spec in component.output_definitions.artifacts.items()
    }


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
    # The deploy step's copy carries the evaluated decision threshold; without it (the
    # gate failed) the evaluated model is the one to inspect.
    model_dir = _find(root, "served_model") or _find(root, "compressed_model")
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
