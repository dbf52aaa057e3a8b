"""The compress step: int8 quantization of the exported model, kept only if it holds up.

Each candidate is measured the same way (size on disk, validation metric); the smallest
candidate within `compression.max_metric_drop` of the float model is selected, and the
float model is kept when none qualifies.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
from onnxruntime.quantization import QuantType, quantize_dynamic

from components.common.artifacts import (
    METADATA_FILE,
    ONNX_MODEL_FILE,
    read_json,
    write_json,
)
from components.common.config import CompressionConfig
from components.common.model_runtime import load_model
from components.evaluate.metrics import compute_metrics

logger = logging.getLogger(__name__)


@dataclass
class Candidate:
    """One model variant and how it measured."""

    name: str
    model_dir: str
    size_bytes: int
    metric_name: str
    metric: float
    metric_drop: float = 0.0
    selected: bool = False


def _selection_metric(task: str) -> str:
    return "roc_auc" if task == "binary" else "r2"


def _measure(name: str, model_dir: Path, validation: pd.DataFrame) -> Candidate:
    model = load_model(model_dir)
    metric_name = _selection_metric(model.schema.task)
    scores = compute_metrics(
        model.schema.labels(validation),
        model.predict(validation),
        task=model.schema.task,
    )
    return Candidate(
        name=name,
        model_dir=str(model_dir),
        size_bytes=(model_dir / ONNX_MODEL_FILE).stat().st_size,
        metric_name=metric_name,
        metric=scores[metric_name],
    )


def quantize_dynamic_int8(source_dir: Path, target_dir: Path) -> None:
    """Copy a model directory with its ONNX model quantized to int8 weights."""
    shutil.copytree(source_dir, target_dir)
    quantize_dynamic(
        model_input=source_dir / ONNX_MODEL_FILE,
        model_output=target_dir / ONNX_MODEL_FILE,
        weight_type=QuantType.QInt8,
    )
    metadata = read_json(target_dir / METADATA_FILE)
    metadata["compression"] = "int8-dynamic"
    write_json(target_dir / METADATA_FILE, metadata)


def select_candidate(
    candidates: list[Candidate], *, max_metric_drop: float
) -> Candidate:
    """Pick the smallest candidate whose metric is within budget of the first (float).

    The float model itself always qualifies, so something is always selected.
    """
    baseline = candidates[0]
    for candidate in candidates:
        candidate.metric_drop = baseline.metric - candidate.metric
    eligible = [c for c in candidates if c.metric_drop <= max_metric_drop + 1e-12]
    best = min(eligible, key=lambda c: (c.size_bytes, c.metric_drop))
    best.selected = True
    if best is baseline and len(candidates) > 1:
        logger.warning(
            "No compressed candidate is within a %s drop of %.4f; keeping the float model",
            baseline.metric_name,
            max_metric_drop,
        )
    return best


def compress_model(
    config: CompressionConfig,
    *,
    model_dir: str | Path,
    validation: pd.DataFrame,
    work_dir: str | Path,
    output_dir: str | Path,
) -> dict:
    """Make candidates, measure them, and copy the selected one to `output_dir`.

    Returns:
        The report: every candidate's measurements and the selection.
    """
    source = Path(model_dir)
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    candidates = [_measure("float32", source, validation)]
    if config.enabled and config.quantization == "dynamic":
        quantized = work / "int8-dynamic"
        quantize_dynamic_int8(source, quantized)
        candidates.append(_measure("int8-dynamic", quantized, validation))

    selected = select_candidate(candidates, max_metric_drop=config.max_metric_drop)
    for candidate in candidates:
        logger.info(
            "Candidate %s: %d bytes, validation %s %.4f (drop %.4f)%s",
            candidate.name,
            candidate.size_bytes,
            candidate.metric_name,
            candidate.metric,
            candidate.metric_drop,
            " <- selected" if candidate.selected else "",
        )
    shutil.copytree(selected.model_dir, output_dir, dirs_exist_ok=True)
    return {
        "selected": selected.name,
        "max_metric_drop": config.max_metric_drop,
        "candidates": [asdict(c) for c in candidates],
    }
