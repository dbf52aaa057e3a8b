"""Measure a model directory the same way whatever produced it, and pick the winner.

Every candidate (float, pruned, quantized, distilled; ONNX or TFLite) is loaded through
`components.common.model_runtime.load_model`, so it is timed and scored in the runtime
that will serve it. `select_candidate` applies the accuracy budget.
"""

from __future__ import annotations

import gzip
import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components.common.artifacts import METADATA_FILE, ONNX_MODEL_FILE, read_json
from components.common.model_runtime import load_model
from components.evaluate.metrics import compute_metrics

logger = logging.getLogger(__name__)

DEFAULT_MODEL_FILES = {"onnx": ONNX_MODEL_FILE, "tflite": "model.tflite"}
SINGLE_ROW_CALLS_PER_REPEAT = 20
WARMUP_CALLS = 3
# Selection compares metrics computed in float64; a drop this small is rounding noise.
METRIC_TOLERANCE = 1e-9


@dataclass
class Candidate:
    """One model variant and how it measured."""

    name: str
    model_dir: str
    format: str
    size_bytes: int
    """Bytes of the served model file (what the model server loads)."""
    gzip_size_bytes: int
    """Bytes of that file gzip-compressed: shows what zeros from pruning save."""
    single_row_latency_ms: float
    """Median time of one single-row prediction, one CPU thread."""
    batch_latency_ms: float
    """Median time of one `batch_rows`-row prediction, one CPU thread."""
    batch_rows: int
    metric_name: str
    metric: float
    details: dict[str, Any]
    metric_drop: float = 0.0
    size_ratio: float = 1.0
    """Float model size / this size (above 1: smaller)."""
    latency_ratio: float = 1.0
    """Float single-row latency / this latency (above 1: faster)."""
    eligible: bool = True
    selected: bool = False


def selection_metric(task: str) -> str:
    """The validation metric the budget applies to: ROC AUC or R2."""
    return "roc_auc" if task == "binary" else "r2"


def model_file(model_dir: Path) -> Path:
    """The file the model server loads from a model directory."""
    metadata = read_json(model_dir / METADATA_FILE)
    name = metadata.get("model_file") or DEFAULT_MODEL_FILES.get(
        metadata.get("format", "onnx"), ONNX_MODEL_FILE
    )
    return model_dir / name


def measure_candidate(
    name: str,
    model_dir: str | Path,
    *,
    validation: pd.DataFrame,
    batch_rows: int,
    repeats: int,
) -> Candidate:
    """Measure size, gzip size, latency and validation metric of one model directory."""
    directory = Path(model_dir)
    model = load_model(directory, threads=1)
    served = model_file(directory)
    payload = served.read_bytes()

    task = model.schema.task
    metric_name = selection_metric(task)
    scores = compute_metrics(
        model.schema.labels(validation), model.predict(validation), task=task
    )
    matrix = model.transform.apply(validation)
    single_ms, batch_ms = _latency_ms(
        model, matrix=matrix, batch_rows=batch_rows, repeats=repeats
    )
    metadata = model.metadata
    candidate = Candidate(
        name=name,
        model_dir=str(directory),
        format=str(metadata.get("format", "onnx")),
        size_bytes=len(payload),
        gzip_size_bytes=len(gzip.compress(payload, compresslevel=9, mtime=0)),
        single_row_latency_ms=single_ms,
        batch_latency_ms=batch_ms,
        batch_rows=batch_rows,
        metric_name=metric_name,
        metric=float(scores[metric_name]),
        details=dict(metadata.get("compression_details") or {}),
    )
    logger.info(
        "Measured %s: %d bytes (gzip %d), %.3f ms/row, %.2f ms per %d rows, %s %.4f",
        name,
        candidate.size_bytes,
        candidate.gzip_size_bytes,
        single_ms,
        batch_ms,
        batch_rows,
        metric_name,
        candidate.metric,
    )
    return candidate


def _latency_ms(
    model: Any, *, matrix: np.ndarray, batch_rows: int, repeats: int
) -> tuple[float, float]:
    """Median single-row and batch latency of `predict_matrix`, in milliseconds."""
    if len(matrix) == 0:
        raise ValueError("latency needs at least one validation row")
    reps = int(np.ceil(batch_rows / len(matrix)))
    batch = np.tile(matrix, (reps, 1))[:batch_rows].astype(np.float32)
    row = batch[:1]
    for _ in range(WARMUP_CALLS):
        model.predict_matrix(row)
        model.predict_matrix(batch)

    single = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(SINGLE_ROW_CALLS_PER_REPEAT):
            model.predict_matrix(row)
        single.append(
            (time.perf_counter() - started) * 1000 / SINGLE_ROW_CALLS_PER_REPEAT
        )
    batched = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.predict_matrix(batch)
        batched.append((time.perf_counter() - started) * 1000)
    return statistics.median(single), statistics.median(batched)


def select_candidate(
    candidates: list[Candidate], *, max_metric_drop: float, objective: str = "size"
) -> Candidate:
    """Pick the smallest (or fastest) candidate within budget of the first (float) one.

    Fills each candidate's `metric_drop`, ratios and `eligible`. The float model is
    within its own budget, so something is always selected; ties go to the smaller
    metric drop, then to the earlier candidate.
    """
    baseline = candidates[0]
    for candidate in candidates:
        candidate.metric_drop = baseline.metric - candidate.metric
        candidate.size_ratio = baseline.size_bytes / max(candidate.size_bytes, 1)
        candidate.latency_ratio = baseline.single_row_latency_ms / max(
            candidate.single_row_latency_ms, 1e-9
        )
        candidate.eligible = candidate.metric_drop <= max_metric_drop + METRIC_TOLERANCE
        candidate.selected = False

    def cost(candidate: Candidate) -> float:
        if objective == "latency":
            return candidate.single_row_latency_ms
        return float(candidate.size_bytes)

    eligible = [c for c in candidates if c.eligible]
    best = min(
        eligible,
        key=lambda c: (cost(c), c.metric_drop, candidates.index(c)),
    )
    best.selected = True
    return best
