"""The compress step: make smaller candidates of the trained model and keep the best.

PyTorch models get magnitude pruning, structured pruning and distillation
(`torch_compress`), each exported to ONNX, and int8 quantization of the float model and
of those candidates (`onnx_quantize`). TensorFlow models get their candidates from
`tf_compress`. Every candidate is measured the same way (`measure`), and the smallest
or fastest one within `compression.max_metric_drop` of the float model is selected; the
float model is kept when none qualifies. `report` renders what was measured.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components.common.artifacts import (
    METADATA_FILE,
    SCHEMA_FILE,
    TORCH_CHECKPOINT_FILE,
    read_json,
)
from components.common.config import COMPRESSION_METHODS, CompressionConfig
from components.common.errors import PlumbError
from components.compress import onnx_quantize, torch_compress
from components.compress.measure import Candidate, measure_candidate, select_candidate
from components.preprocess.schema import Schema

logger = logging.getLogger(__name__)

FINE_TUNE_THREADS = 1
"""Intra-op threads of the fine-tuning and distillation passes. The networks are tiny:
with the default (one per core) on 2 shared cores, compressing the flights MLP took
245.8 s, with one thread 32.8 s, selecting the same candidate at the same ROC AUC."""

FLOAT_NAME = "float32"
_ALL_METHODS = list(COMPRESSION_METHODS)
SUPPORTED_METHODS: dict[tuple[str, str], list[str]] = {
    ("pytorch", "mlp"): _ALL_METHODS,
    ("pytorch", "logistic"): ["pruning", "quantization"],
    ("tensorflow", "mlp"): ["pruning", "quantization"],
    ("tensorflow", "logistic"): ["pruning", "quantization"],
}
"""Methods each (framework, model) pair supports: structured pruning and distillation
need hidden layers."""
SUPPORTED_QUANTIZATION: dict[str, list[str]] = {
    "pytorch": ["dynamic", "static"],
    "tensorflow": ["dynamic", "static", "qat"],
}
"""int8 modes per framework: `qat` is quantization-aware training in tfmot."""
_NEEDS_CHECKPOINT = ("pruning", "structured_pruning", "distillation")


@dataclass
class CompressionPlan:
    """What will be tried, after the config has been checked against the model."""

    framework: str
    model: str
    task: str
    methods: list[str]
    quantization: list[str]


def plan_compression(
    config: CompressionConfig,
    *,
    model_dir: Path,
    train_rows: int,
    validation_rows: int,
) -> CompressionPlan:
    """Check the config against the model and the data before any work starts.

    Raises:
        PlumbError: A method or quantization mode the model does not support, too few
            calibration rows, a missing checkpoint or empty splits.
    """
    metadata_path = model_dir / METADATA_FILE
    if not metadata_path.is_file():
        raise PlumbError(
            f"no {METADATA_FILE} in {str(model_dir)!r}; point at a model directory "
            "written by plumb's train step"
        )
    metadata = read_json(metadata_path)
    framework = str(metadata.get("framework", "pytorch"))
    model = str(metadata.get("model", "mlp"))
    task = str(metadata.get("task") or Schema.load(model_dir / SCHEMA_FILE).task)
    supported = SUPPORTED_METHODS.get((framework, model))
    if supported is None:
        raise PlumbError(
            f"cannot compress a {framework!r} {model!r} model (from "
            f"{str(metadata_path)!r}); plumb compresses: "
            + ", ".join(f"{f} {m}" for f, m in SUPPORTED_METHODS)
        )
    if validation_rows == 0:
        raise PlumbError(
            "the validation split is empty, so candidates cannot be compared; set "
            "data.split.validation_fraction above 0"
        )

    has_checkpoint = (model_dir / TORCH_CHECKPOINT_FILE).is_file()
    methods, quantization = _resolve_methods(
        config,
        framework=framework,
        model=model,
        supported=supported,
        has_checkpoint=has_checkpoint,
    )
    if "static" in quantization:
        onnx_quantize.check_calibration_rows(train_rows, rows=config.calibration_rows)
    needs_training = [m for m in methods if m in _NEEDS_CHECKPOINT]
    if needs_training and train_rows == 0:
        raise PlumbError(
            f"compression.methods {needs_training} fine-tune on the training split, "
            "which is empty; pass the training rows or drop those methods"
        )
    if framework == "pytorch" and needs_training and not has_checkpoint:
        raise PlumbError(
            f"compression.methods {needs_training} need {TORCH_CHECKPOINT_FILE} in "
            f"{str(model_dir)!r}, which is missing; retrain with plumb's train step or "
            "set compression.methods to ['quantization']"
        )
    return CompressionPlan(
        framework=framework,
        model=model,
        task=task,
        methods=methods,
        quantization=quantization,
    )


def _resolve_methods(
    config: CompressionConfig,
    *,
    framework: str,
    model: str,
    supported: list[str],
    has_checkpoint: bool,
) -> tuple[list[str], list[str]]:
    """The methods and int8 modes to run; raise on any the model does not support."""
    methods: list[str] = (
        list(supported) if config.methods is None else [*config.methods]
    )
    if not config.enabled:
        methods = []
    if config.methods is None and framework == "pytorch" and not has_checkpoint:
        logger.warning(
            "No %s in the model directory: trying quantization only",
            TORCH_CHECKPOINT_FILE,
        )
        methods = [m for m in methods if m not in _NEEDS_CHECKPOINT]
    unsupported = [m for m in methods if m not in supported]
    if unsupported:
        raise PlumbError(
            f"compression.methods lists {unsupported} for a {framework} {model!r} model, "
            f"which supports {supported}; remove them (or train an 'mlp' for "
            "structured_pruning and distillation)"
        )
    quantization: list[str] = (
        [*config.quantization] if "quantization" in methods else []
    )
    if config.methods is not None and "quantization" in methods and not quantization:
        raise PlumbError(
            "compression.methods lists 'quantization' but compression.quantization is "
            f"empty; set it to some of {SUPPORTED_QUANTIZATION[framework]}"
        )
    bad_modes = [q for q in quantization if q not in SUPPORTED_QUANTIZATION[framework]]
    if bad_modes:
        raise PlumbError(
            f"compression.quantization lists {bad_modes}, which {framework} models do "
            f"not support; allowed: {SUPPORTED_QUANTIZATION[framework]}"
        )
    return methods, quantization


def compress_model(
    config: CompressionConfig,
    *,
    model_dir: str | Path,
    train: pd.DataFrame,
    validation: pd.DataFrame,
    work_dir: str | Path,
    output_dir: str | Path,
) -> dict[str, Any]:
    """Make candidates, measure them, and copy the selected one to `output_dir`.

    Args:
        config: The compression section of the config.
        model_dir: The trained (float) model directory.
        train: The training split: fine-tuning, distillation and calibration rows.
        validation: The validation split every candidate is scored on.
        work_dir: Scratch space for the candidates.
        output_dir: Where the selected model directory is copied.

    Returns:
        The report: every candidate's measurements and the selection.

    Raises:
        PlumbError: The config does not fit the model or the data (checked first).
    """
    source = Path(model_dir)
    work = Path(work_dir)
    plan = plan_compression(
        config,
        model_dir=source,
        train_rows=len(train),
        validation_rows=len(validation),
    )
    work.mkdir(parents=True, exist_ok=True)
    logger.info(
        "Compressing a %s %s model: methods %s, quantization %s",
        plan.framework,
        plan.model,
        plan.methods,
        plan.quantization,
    )

    if plan.framework == "tensorflow":
        from components.compress.tf_compress import tf_candidates

        made = tf_candidates(
            config, model_dir=source, train=train, validation=validation, work_dir=work
        )
    else:
        made = _torch_candidates(
            config, plan=plan, source=source, train=train, work=work
        )

    candidates = [
        measure_candidate(
            name,
            directory,
            validation=validation,
            batch_rows=config.batch_rows,
            repeats=config.latency_repeats,
        )
        for name, directory in [(FLOAT_NAME, source), *made]
    ]
    selected = select_candidate(
        candidates, max_metric_drop=config.max_metric_drop, objective=config.objective
    )
    report = build_report(candidates, config=config, plan=plan)
    logger.info("%s", report["summary"])
    shutil.copytree(selected.model_dir, output_dir, dirs_exist_ok=True)
    return report


def _torch_candidates(
    config: CompressionConfig,
    *,
    plan: CompressionPlan,
    source: Path,
    train: pd.DataFrame,
    work: Path,
) -> list[tuple[str, Path]]:
    """Prune, distil and quantize a PyTorch model; return (name, model directory)."""
    made: list[tuple[str, Path]] = []
    transform = onnx_quantize.load_transform(source)
    schema = Schema.load(source / SCHEMA_FILE)
    if any(m in plan.methods for m in _NEEDS_CHECKPOINT):
        with _torch_threads(FINE_TUNE_THREADS):
            made += _torch_networks(
                config,
                plan=plan,
                source=source,
                train_x=transform.apply(train),
                train_y=schema.labels(train).astype(np.float32),
                work=work,
            )

    calibration = None
    if "static" in plan.quantization:
        calibration = onnx_quantize.calibration_matrix(
            train, transform=transform, rows=config.calibration_rows, seed=config.seed
        )
    to_quantize = [(FLOAT_NAME, source)]
    if config.quantize_candidates:
        to_quantize += list(made)
    for mode in plan.quantization:
        for name, directory in to_quantize:
            label = f"int8-{mode}" if name == FLOAT_NAME else f"{name}+int8-{mode}"
            quantized = onnx_quantize.quantize_model_dir(
                directory,
                work / label,
                mode=mode,
                calibration=calibration,
                work_dir=work,
            )
            made.append((label, quantized))
    return made


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """Run torch's CPU ops on `threads` intra-op threads, then restore the setting."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _torch_networks(
    config: CompressionConfig,
    *,
    plan: CompressionPlan,
    source: Path,
    train_x: np.ndarray,
    train_y: np.ndarray,
    work: Path,
) -> list[tuple[str, Path]]:
    """The pruned, structured-pruned and distilled networks, each exported."""
    teacher = torch_compress.load_torch_model(source)
    float_parameters = torch_compress.parameter_count(teacher.network)
    made: list[tuple[str, Path]] = []
    if "pruning" in plan.methods:
        pruned = torch_compress.prune_unstructured(
            teacher, train_x=train_x, train_y=train_y, config=config
        )
        made.append(
            (
                "pruned",
                torch_compress.write_torch_candidate(
                    pruned,
                    source_dir=source,
                    target_dir=work / "pruned",
                    teacher=teacher,
                    training_updates={},
                    compression="pruned",
                    details={
                        "method": "pruning",
                        "target_sparsity": config.sparsity,
                        "sparsity": torch_compress.weight_sparsity(pruned),
                        "parameter_count": float_parameters,
                    },
                ),
            )
        )
    if "structured_pruning" in plan.methods:
        smaller, hidden_units = torch_compress.prune_structured(
            teacher, train_x=train_x, train_y=train_y, config=config
        )
        made.append(
            (
                "structured",
                torch_compress.write_torch_candidate(
                    smaller,
                    source_dir=source,
                    target_dir=work / "structured",
                    teacher=teacher,
                    training_updates={"hidden_units": hidden_units},
                    compression="structured",
                    details={
                        "method": "structured_pruning",
                        "structured_ratio": config.structured_ratio,
                        "hidden_units": hidden_units,
                        "parameter_count": torch_compress.parameter_count(smaller),
                    },
                ),
            )
        )
    if "distillation" in plan.methods:
        student = torch_compress.distill(
            teacher,
            train_x=train_x,
            train_y=train_y,
            config=config.distillation,
            seed=config.seed,
        )
        made.append(
            (
                "distilled",
                torch_compress.write_torch_candidate(
                    student,
                    source_dir=source,
                    target_dir=work / "distilled",
                    teacher=teacher,
                    training_updates={
                        "model": "mlp",
                        "hidden_units": list(config.distillation.hidden_units),
                        "dropout": 0.0,
                    },
                    compression="distilled",
                    details={
                        "method": "distillation",
                        "hidden_units": list(config.distillation.hidden_units),
                        "temperature": config.distillation.temperature,
                        "alpha": config.distillation.alpha,
                        "parameter_count": torch_compress.parameter_count(student),
                    },
                ),
            )
        )
    return made


def build_report(
    candidates: list[Candidate], *, config: CompressionConfig, plan: CompressionPlan
) -> dict[str, Any]:
    """The JSON report of a selection (candidates already went through selection)."""
    baseline = candidates[0]
    selected = next(c for c in candidates if c.selected)
    others_eligible = [c.name for c in candidates[1:] if c.eligible]
    none_qualified = len(candidates) > 1 and not others_eligible
    if len(candidates) == 1:
        summary = f"No compressed candidates were made; kept {baseline.name}."
    elif none_qualified:
        summary = (
            f"No compressed candidate is within a {baseline.metric_name} drop of "
            f"{config.max_metric_drop:.4f}; kept the float model {baseline.name}."
        )
    elif selected is baseline:
        summary = (
            f"Kept the float model {baseline.name}: it is the "
            f"{'fastest' if config.objective == 'latency' else 'smallest'} of the "
            f"candidates within budget ({', '.join(others_eligible)})."
        )
    else:
        summary = (
            f"Selected {selected.name}: {selected.size_ratio:.2f}x smaller and "
            f"{selected.latency_ratio:.2f}x faster (single row) than {baseline.name}, "
            f"{selected.metric_name} {selected.metric:.4f} (drop "
            f"{selected.metric_drop:+.4f}, budget {config.max_metric_drop:.4f})."
        )
    return {
        "framework": plan.framework,
        "task": plan.task,
        "methods": plan.methods,
        "quantization": plan.quantization,
        "objective": config.objective,
        "max_metric_drop": config.max_metric_drop,
        "metric_name": baseline.metric_name,
        "baseline": baseline.name,
        "baseline_metric": baseline.metric,
        "selected": selected.name,
        "none_qualified": none_qualified,
        "summary": summary,
        "candidates": [asdict(c) for c in candidates],
    }


def metric_key(name: str) -> str:
    """A candidate name as a KFP metric key (letters, digits, underscores)."""
    return re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_")
