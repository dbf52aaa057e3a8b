"""Compressed candidates of a TensorFlow model: tfmot pruning and TFLite int8.

`tf_candidates` is what the compress step (`components/compress/lib.py`) calls for a
model directory written by `components/train/tf_train.py`. It starts from that
directory's `model.keras` and writes one full model directory (format `tflite`) per
candidate:

- `pruned`: `prune_low_magnitude` with a `PolynomialDecay` schedule from 0 to
  `compression.sparsity` while fine-tuning, then `strip_pruning` (float TFLite whose
  kernels are that share zeros, which gzip shows);
- `int8-dynamic`: TFLite post-training dynamic-range quantization (int8 weights);
- `int8-static`: TFLite full-integer quantization, activations calibrated on training
  rows (int8 inside, float32 input and output);
- `int8-qat`: quantization-aware training with tfmot, then TFLite int8;
- `pruned+int8-<mode>`: the pruned network quantized the same way
  (`compression.quantize_candidates`).

The compress step measures every candidate through `load_model` and picks one.
"""

from __future__ import annotations

import os

# tfmot needs Keras 2; this must be set before anything imports TensorFlow.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components.common.artifacts import (
    KERAS_MODEL_FILE,
    METADATA_FILE,
    SCHEMA_FILE,
    TFLITE_MODEL_FILE,
    TRANSFORM_FILE,
    read_json,
    write_json,
)
from components.common.config import (
    MIN_CALIBRATION_ROWS,
    CompressionConfig,
    TrainingConfig,
)
from components.common.errors import PlumbError
from components.preprocess.schema import Schema
from components.preprocess.transform import Transform

logger = logging.getLogger(__name__)

TF_METHODS = ("pruning", "quantization")
"""Methods plumb applies to TensorFlow models."""
TF_QUANTIZATION = ("dynamic", "static", "qat")
"""int8 modes for TensorFlow models."""
_TFLITE_MODE = {"dynamic": "dynamic", "static": "full-int8"}
DEFAULT_BATCH_SIZE = 256


def tf_candidates(
    config: CompressionConfig,
    *,
    model_dir: Path,
    train: pd.DataFrame,
    validation: pd.DataFrame,
    work_dir: Path,
) -> list[tuple[str, Path]]:
    """Make the pruned and quantized candidates of a TensorFlow model directory.

    Args:
        config: The compression section: methods, sparsity, fine-tuning, modes.
        model_dir: A model directory with `model.keras` (from the train step).
        train: Training rows: fine-tuning and calibration.
        validation: Validation rows (checked to be present; the caller scores on them).
        work_dir: Where the candidate directories are written.

    Returns:
        (candidate name, model directory) pairs, in the order they were made.

    Raises:
        PlumbError: An option the TensorFlow path does not support, or data too small
            for it; raised before any work starts.
    """
    source = Path(model_dir)
    methods, modes = check_tf_options(
        config, model_dir=source, train_rows=len(train), validation_rows=len(validation)
    )
    if not methods:
        return []

    from components.train.tf_model import set_seed

    metadata = read_json(source / METADATA_FILE)
    schema = Schema.load(source / SCHEMA_FILE)
    transform = Transform.load(source / TRANSFORM_FILE)
    network = _load_network(source)
    train_x = transform.apply(train)
    train_y = schema.labels(train)
    batch_size = _batch_size(metadata, rows=len(train_x))
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    calibration = None
    if "static" in modes:
        calibration = _calibration_rows(
            train_x, rows=config.calibration_rows, seed=config.seed
        )

    made: list[tuple[str, Path]] = []
    networks = [("", network)]
    if "pruning" in methods:
        set_seed(config.seed)
        # tfmot wraps the very layer objects it is given, so fine-tuning would change
        # `network` too: each method starts from its own copy.
        pruned = prune_network(
            _load_network(source),
            train_x=train_x,
            train_y=train_y,
            task=schema.task,
            sparsity=config.sparsity,
            epochs=config.fine_tune_epochs,
            learning_rate=config.fine_tune_learning_rate,
            batch_size=batch_size,
        )
        made.append(
            _write(pruned, name="pruned", source=source, work=work, task=schema.task)
        )
        if config.quantize_candidates:
            networks.append(("pruned+", pruned))
    for mode in modes:
        if mode == "qat":
            set_seed(config.seed)
            qat = quantization_aware_training(
                _load_network(source),
                train_x=train_x,
                train_y=train_y,
                task=schema.task,
                epochs=max(1, config.fine_tune_epochs),
                learning_rate=config.fine_tune_learning_rate,
                batch_size=batch_size,
            )
            made.append(
                _write(
                    qat,
                    name="int8-qat",
                    source=source,
                    work=work,
                    task=schema.task,
                    quantization="dynamic",
                    keep_keras=False,
                )
            )
            continue
        for prefix, candidate in networks:
            made.append(
                _write(
                    candidate,
                    name=f"{prefix}int8-{mode}",
                    source=source,
                    work=work,
                    task=schema.task,
                    quantization=_TFLITE_MODE[mode],
                    representative_rows=calibration,
                )
            )
    return made


def check_tf_options(
    config: CompressionConfig,
    *,
    model_dir: Path,
    train_rows: int,
    validation_rows: int,
) -> tuple[list[str], list[str]]:
    """Check the config against a TensorFlow model and the data, before any work.

    Returns:
        The methods and the quantization modes to apply.

    Raises:
        PlumbError: Naming the option, the value received and the allowed values.
    """
    keras_file = model_dir / KERAS_MODEL_FILE
    metadata_file = model_dir / METADATA_FILE
    if not metadata_file.is_file() or not keras_file.is_file():
        raise PlumbError(
            f"{str(model_dir)!r} is not a TensorFlow model directory (no "
            f"{METADATA_FILE} or {KERAS_MODEL_FILE}); train with "
            "training.framework 'tensorflow'"
        )
    framework = read_json(metadata_file).get("framework")
    if framework != "tensorflow":
        raise PlumbError(
            f"TensorFlow compression got a {framework!r} model from {str(model_dir)!r}; "
            "it compresses models trained with training.framework 'tensorflow'"
        )
    methods: list[str] = list(TF_METHODS if config.methods is None else config.methods)
    if not config.enabled:
        methods = []
    unknown = [m for m in methods if m not in TF_METHODS]
    if unknown:
        raise PlumbError(
            f"compression.methods lists {unknown}, which TensorFlow models do not "
            f"support; allowed: {list(TF_METHODS)}"
        )
    modes: list[str] = list(config.quantization) if "quantization" in methods else []
    bad_modes = [q for q in modes if q not in TF_QUANTIZATION]
    if bad_modes:
        raise PlumbError(
            f"compression.quantization lists {bad_modes}; TensorFlow models allow "
            f"{list(TF_QUANTIZATION)}"
        )
    if not 0.0 <= config.sparsity < 1.0:
        raise PlumbError(
            f"compression.sparsity must be in [0, 1), got {config.sparsity!r}; "
            "e.g. 0.5 zeroes half of the weights"
        )
    if "static" in modes and train_rows < MIN_CALIBRATION_ROWS:
        raise PlumbError(
            f"compression.quantization 'static' needs at least {MIN_CALIBRATION_ROWS} "
            f"training rows to calibrate on, got {train_rows}; use more data or drop "
            "'static'"
        )
    if ("pruning" in methods or "qat" in modes) and train_rows == 0:
        raise PlumbError(
            "pruning and 'qat' fine-tune on the training split, which is empty; pass "
            "the training rows or drop them from compression.methods / quantization"
        )
    if validation_rows == 0:
        raise PlumbError(
            "the validation split is empty, so candidates cannot be compared; set "
            "data.split.validation_fraction above 0"
        )
    return methods, modes


def prune_network(
    network: Any,
    *,
    train_x: np.ndarray,
    train_y: np.ndarray,
    task: str,
    sparsity: float,
    epochs: int,
    learning_rate: float,
    batch_size: int,
) -> Any:
    """Prune every Dense kernel to `sparsity` by magnitude while fine-tuning; strip.

    The sparsity rises polynomially from 0 and reaches its target one epoch before
    the end, so the last epoch fine-tunes the final mask. tfmot prunes each layer to
    the target on its own. With `epochs` 0 the masks are applied in one step with
    learning rate 0 (tfmot only prunes inside training steps).

    Returns:
        The stripped network: plain Dense layers whose kernels hold the zeros.
    """
    import tensorflow_model_optimization as tfmot

    from components.train.tf_model import compile_network

    steps_per_epoch = math.ceil(len(train_x) / batch_size)
    end_step = steps_per_epoch * (epochs - 1) if epochs > 1 else steps_per_epoch - 1
    schedule: Any
    if end_step < 1:
        schedule = tfmot.sparsity.keras.ConstantSparsity(
            sparsity, begin_step=0, frequency=1
        )
    else:
        # Masks are recomputed every `frequency` steps; end_step must be one of them so
        # the final sparsity is really reached.
        frequency = max(1, end_step // 10)
        end_step = (end_step // frequency) * frequency
        schedule = tfmot.sparsity.keras.PolynomialDecay(
            initial_sparsity=0.0,
            final_sparsity=sparsity,
            begin_step=0,
            end_step=end_step,
            frequency=frequency,
        )
    pruned = tfmot.sparsity.keras.prune_low_magnitude(
        network, pruning_schedule=schedule
    )
    compile_network(
        pruned, task=task, learning_rate=learning_rate if epochs > 0 else 0.0
    )
    started = time.perf_counter()
    pruned.fit(
        train_x,
        train_y,
        batch_size=batch_size,
        epochs=max(1, epochs),
        steps_per_epoch=None if epochs > 0 else 1,
        verbose=0,
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
    )
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    logger.info(
        "Pruned to %.1f%% zero kernel weights (target %.1f%%) with %d fine-tuning "
        "epochs in %.1f s",
        100 * _kernel_sparsity(stripped),
        100 * sparsity,
        epochs,
        time.perf_counter() - started,
    )
    return stripped


def quantization_aware_training(
    network: Any,
    *,
    train_x: np.ndarray,
    train_y: np.ndarray,
    task: str,
    epochs: int,
    learning_rate: float,
    batch_size: int,
) -> Any:
    """Fine-tune with tfmot's fake-quant layers so int8 conversion loses less."""
    import tensorflow_model_optimization as tfmot

    from components.train.tf_model import compile_network

    qat = tfmot.quantization.keras.quantize_model(network)
    compile_network(qat, task=task, learning_rate=learning_rate)
    started = time.perf_counter()
    qat.fit(train_x, train_y, batch_size=batch_size, epochs=epochs, verbose=0)
    logger.info(
        "Quantization-aware training: %d epochs in %.1f s",
        epochs,
        time.perf_counter() - started,
    )
    return qat


def _batch_size(metadata: dict[str, Any], *, rows: int) -> int:
    """The training run's batch size (its rule when it was left to plumb)."""
    training = metadata.get("training")
    if not training:
        return DEFAULT_BATCH_SIZE
    return TrainingConfig.model_validate(training).batch_size_for(rows)


def _load_network(model_dir: Path) -> Any:
    import tf_keras

    return tf_keras.models.load_model(model_dir / KERAS_MODEL_FILE)


def _calibration_rows(matrix: np.ndarray, *, rows: int, seed: int) -> np.ndarray:
    if len(matrix) <= rows:
        if len(matrix) < rows:
            logger.warning(
                "compression.calibration_rows is %d but the training split holds %d "
                "rows; calibrating on all of them",
                rows,
                len(matrix),
            )
        return matrix
    picked = np.random.default_rng(seed).choice(len(matrix), size=rows, replace=False)
    return matrix[np.sort(picked)]


def _kernel_sparsity(network: Any) -> float:
    from components.train.tf_model import kernel_sparsity

    return kernel_sparsity(network)


def _write(
    network: Any,
    *,
    name: str,
    source: Path,
    work: Path,
    task: str,
    quantization: str = "none",
    representative_rows: np.ndarray | None = None,
    keep_keras: bool = True,
) -> tuple[str, Path]:
    """Write a candidate model directory: the TFLite model plus the source's artifacts."""
    from components.train.tf_model import convert_to_tflite

    target = work / name
    shutil.copytree(
        source,
        target,
        ignore=shutil.ignore_patterns(TFLITE_MODEL_FILE, KERAS_MODEL_FILE),
    )
    flatbuffer = convert_to_tflite(
        network,
        task=task,
        quantization=quantization,  # type: ignore[arg-type]
        representative_rows=representative_rows,
    )
    (target / TFLITE_MODEL_FILE).write_bytes(flatbuffer)
    if keep_keras:
        network.save(target / KERAS_MODEL_FILE)
    metadata = read_json(source / METADATA_FILE)
    metadata.update(
        {
            "format": "tflite",
            "model_file": TFLITE_MODEL_FILE,
            "checkpoint_file": KERAS_MODEL_FILE if keep_keras else None,
            "compression": name,
            "compression_details": {
                "tflite_quantization": quantization,
                "sparsity": _kernel_sparsity(network),
            },
        }
    )
    write_json(target / METADATA_FILE, metadata)
    logger.info("Wrote candidate %s (%d bytes TFLite)", name, len(flatbuffer))
    return name, target
