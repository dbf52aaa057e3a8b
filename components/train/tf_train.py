"""The train step for `training.framework: tensorflow`: tf_keras, exported as TFLite.

`train_and_export_tf` is what `components/train/lib.py` dispatches to. With one worker it
trains in its own process; with more, `tf_workers.py` starts one process per worker
under `tf.distribute.MultiWorkerMirroredStrategy` and the chief (worker 0) writes the
model. Either way the model directory has the layout every later step reads:
`model.tflite` (served), `model.keras` (for fine-tuning and compression), the schema and
transform, `reference.parquet` and `metadata.json` with `"format": "tflite"`.

TensorFlow is imported lazily, so the PyTorch path never pays for it.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from components.common.artifacts import (
    KERAS_MODEL_FILE,
    METADATA_FILE,
    TFLITE_MODEL_FILE,
    copy_preprocessor,
    write_json,
    write_reference,
)
from components.common.config import TrainingConfig
from components.common.errors import DataError, PlumbError
from components.preprocess.schema import Schema
from components.preprocess.transform import Transform

logger = logging.getLogger(__name__)


@dataclass
class TrainingArrays:
    """Transformed features and float32 labels of the training and validation splits."""

    train_x: np.ndarray
    train_y: np.ndarray
    validation_x: np.ndarray
    validation_y: np.ndarray

    def save(self, path: Path) -> None:
        np.savez(path, **self.__dict__)

    @classmethod
    def load(cls, path: Path) -> TrainingArrays:
        with np.load(path) as data:
            return cls(**{name: data[name] for name in data.files})


def train_and_export_tf(
    config: TrainingConfig,
    *,
    train: pd.DataFrame,
    validation: pd.DataFrame,
    preprocessor_dir: str | Path,
    model_dir: str | Path,
) -> dict[str, float]:
    """Train a tf_keras network on the splits and write a self-contained model directory.

    Returns:
        Metrics to log: epochs, validation loss, seconds, rows per second (and, with
        several workers, the largest weight difference between replicas).

    Raises:
        PlumbError: A split is too small, the loss became NaN, or a worker failed.
    """
    preprocessor = Path(preprocessor_dir)
    schema = Schema.load(preprocessor / "schema.json")
    transform = Transform.load(preprocessor / "transform.json")
    _check_split_sizes(train=train, validation=validation, workers=config.workers)
    _check_gpus(config)
    arrays = TrainingArrays(
        train_x=transform.apply(train),
        train_y=schema.labels(train),
        validation_x=transform.apply(validation),
        validation_y=schema.labels(validation),
    )
    out = Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)

    if config.backend == "tfjob":
        from components.train.cluster import run_tfjob_training

        metrics = run_tfjob_training(
            config, arrays=arrays, task=schema.task, model_dir=out
        )
    elif config.workers == 1:
        from components.train.tf_fit import export_network, fit_network

        run_dir = out / "run"
        result = fit_network(
            config,
            arrays=arrays,
            task=schema.task,
            checkpoint_dir=run_dir / "checkpoints",
        )
        export_network(config, result=result, task=schema.task, model_dir=out)
        shutil.rmtree(run_dir, ignore_errors=True)
        metrics = result.metrics()
    else:
        from components.train.tf_workers import run_workers

        metrics = run_workers(config, arrays=arrays, task=schema.task, model_dir=out)

    copy_preprocessor(preprocessor, out)
    write_reference(train, out, seed=config.seed)
    write_json(
        out / METADATA_FILE,
        {
            "framework": "tensorflow",
            "model": config.model,
            "task": schema.task,
            "input_width": transform.width,
            "output": "probability" if schema.task == "binary" else "value",
            "format": "tflite",
            "model_file": TFLITE_MODEL_FILE,
            "checkpoint_file": KERAS_MODEL_FILE,
            "compression": "none",
            "workers": config.workers,
            "training": config.model_dump(),
        },
    )
    return metrics


def _check_gpus(config: TrainingConfig) -> None:
    """Refuse GPUs asked for where TensorFlow sees none (or warn, if allowed).

    Raises:
        PlumbError: `gpus_per_worker` asks for more GPUs than TensorFlow finds here
            and `gpu_fallback_to_cpu` is off.
    """
    if config.gpus_per_worker == 0 or config.backend != "local":
        return
    import tensorflow as tf

    found = len(tf.config.list_physical_devices("GPU"))
    if found >= config.gpus_per_worker:
        return
    problem = (
        f"training.gpus_per_worker={config.gpus_per_worker} but TensorFlow finds "
        f"{found} GPU(s) here (the pinned tensorflow wheel has no CUDA libraries; "
        "tensorflow[and-cuda] adds them)"
    )
    if config.gpu_fallback_to_cpu:
        warnings.warn(f"{problem}; training on the CPU instead", stacklevel=3)
        logger.warning("%s; training on the CPU instead", problem)
        return
    raise PlumbError(
        f"{problem}; set training.gpus_per_worker to 0, or set "
        "training.gpu_fallback_to_cpu to true to train on the CPU"
    )


def _check_split_sizes(
    *, train: pd.DataFrame, validation: pd.DataFrame, workers: int
) -> None:
    if len(validation) == 0:
        raise PlumbError(
            "the validation split is empty; set data.split.validation_fraction above 0"
        )
    # Each worker takes every workers-th row of a batch; fewer rows than workers leaves
    # a worker without data and the collective ops waiting forever.
    if len(train) < 2 * workers:
        raise DataError(
            f"the training split has {len(train)} rows, too few for training.workers "
            f"{workers}; use at most {max(1, len(train) // 2)} workers or more data"
        )
