"""The train step: fit a network on the training split and export it for serving.

`train_and_export` picks where the PyTorch loop (`loop.py`) runs: in this process (one
worker), in `torchrun`'s local worker group (`launch.py`), or in a cluster job
(`cluster.py`); TensorFlow is handed to `tf_train.py`. Whatever ran it, the model
directory it writes is what compression, evaluation and the model server read:
`model.onnx` (the network with its serving head), the schema and transform it was
trained with, `metadata.json`, `reference.parquet` and the PyTorch checkpoint for
fine-tuning.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from pathlib import Path

import pandas as pd
import torch

from components.common.artifacts import (
    METADATA_FILE,
    ONNX_MODEL_FILE,
    TORCH_CHECKPOINT_FILE,
    copy_preprocessor,
    write_json,
    write_reference,
)
from components.common.config import TrainingConfig
from components.common.errors import PlumbError
from components.preprocess.schema import Schema
from components.preprocess.transform import Transform
from components.train.loop import TrainingData, WorkerContext, fit
from components.train.torch_model import build_network, export_onnx
from components.train.worker import WorkerSpec

logger = logging.getLogger(__name__)

MIN_ROWS_PER_WORKER = 2
"""A worker needs two rows: BatchNorm cannot train on a batch of one."""


def train_and_export(
    config: TrainingConfig,
    *,
    train: pd.DataFrame,
    validation: pd.DataFrame,
    preprocessor_dir: str | Path,
    model_dir: str | Path,
) -> dict[str, float]:
    """Train on the splits and write a self-contained model directory.

    Returns:
        Metrics to log: epochs, validation loss and metric, seconds, rows per second,
        the epoch a restarted run resumed from and the largest parameter difference
        between replicas.

    Raises:
        PlumbError: Bad input: empty or too small splits, GPUs asked for but absent,
            a port in use, a loss that became NaN.
    """
    if config.framework == "tensorflow":
        from components.train.tf_train import train_and_export_tf

        return train_and_export_tf(
            config,
            train=train,
            validation=validation,
            preprocessor_dir=preprocessor_dir,
            model_dir=model_dir,
        )
    preprocessor = Path(preprocessor_dir)
    schema = Schema.load(preprocessor / "schema.json")
    transform = Transform.load(preprocessor / "transform.json")
    check_splits(config, train_rows=len(train), validation_rows=len(validation))
    device = resolve_device(config)
    data = TrainingData(
        train_x=transform.apply(train),
        train_y=schema.labels(train),
        validation_x=transform.apply(validation),
        validation_y=schema.labels(validation),
    )

    out = Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    run_dir = out / "run"
    best_state, metrics = _run_training(
        config, data=data, task=schema.task, run_dir=run_dir, device=device
    )
    network = build_network(
        input_width=transform.width,
        model=config.model,
        hidden_units=config.hidden_units,
        dropout=config.dropout,
        batch_norm=config.batch_norm,
    )
    network.load_state_dict(best_state)
    network.eval()

    export_onnx(
        network,
        task=schema.task,
        input_width=transform.width,
        path=out / ONNX_MODEL_FILE,
    )
    torch.save(
        {"state_dict": network.state_dict(), "training": config.model_dump()},
        out / TORCH_CHECKPOINT_FILE,
    )
    # The resumable checkpoints served their purpose; checkpoint.pt is what ships.
    shutil.rmtree(run_dir, ignore_errors=True)
    copy_preprocessor(preprocessor, out)
    write_reference(train, out, seed=config.seed)
    write_json(
        out / METADATA_FILE,
        {
            "framework": "pytorch",
            "model": config.model,
            "task": schema.task,
            "input_width": transform.width,
            "output": "probability" if schema.task == "binary" else "value",
            "format": "onnx",
            "compression": "none",
            "workers": config.workers,
            "device": device,
        },
    )
    return metrics


def check_splits(
    config: TrainingConfig, *, train_rows: int, validation_rows: int
) -> None:
    """Refuse splits the workers cannot train on.

    Raises:
        PlumbError: The validation split is empty, or the training split has fewer than
            `MIN_ROWS_PER_WORKER` rows per worker.
    """
    if validation_rows == 0:
        raise PlumbError(
            "the validation split is empty; set data.split.validation_fraction above 0"
        )
    needed = MIN_ROWS_PER_WORKER * config.workers
    if train_rows < needed:
        raise PlumbError(
            f"the training split has {train_rows} rows, too few for "
            f"training.workers={config.workers} (each worker needs at least "
            f"{MIN_ROWS_PER_WORKER}, so {needed} rows); lower training.workers or use "
            "more data"
        )


def resolve_device(config: TrainingConfig) -> str:
    """`cuda` or `cpu` for the workers, checking that asked-for GPUs exist here.

    For cluster backends this machine is not checked: the job's workers get the GPUs.

    Raises:
        PlumbError: GPUs are asked for, none (or too few) are present, and
            `gpu_fallback_to_cpu` is off.
    """
    if config.gpus_per_worker == 0:
        return "cpu"
    if config.backend != "local":
        return "cuda"
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if available >= config.workers:
        return "cuda"
    problem = (
        f"training.gpus_per_worker={config.gpus_per_worker} with "
        f"training.workers={config.workers} needs {config.workers} CUDA devices here "
        f"(one per local worker), found {available}"
    )
    if config.gpu_fallback_to_cpu:
        warnings.warn(f"{problem}; training on the CPU instead", stacklevel=2)
        logger.warning("%s; training on the CPU instead", problem)
        return "cpu"
    raise PlumbError(
        f"{problem}; set training.gpus_per_worker to 0, lower training.workers, or set "
        "training.gpu_fallback_to_cpu to true to train on the CPU"
    )


def _run_training(
    config: TrainingConfig,
    *,
    data: TrainingData,
    task: str,
    run_dir: Path,
    device: str,
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Run the loop where the config says; return the best weights and the metrics."""
    if config.backend != "local":
        from components.train.cluster import run_cluster_training

        return run_cluster_training(config, data=data, task=task)
    if config.workers == 1:
        context = WorkerContext(device=torch.device(device))
        result = fit(config, data, task=task, run_dir=run_dir, context=context)
        return result.best_state, result.metrics()

    from components.train.launch import launch_local

    data_dir = run_dir / "data"
    data.save(data_dir)
    spec = WorkerSpec(
        training=config.model_dump(),
        task=task,
        data_dir=str(data_dir),
        run_dir=str(run_dir),
        device=device,
    )
    return launch_local(spec, training=config)
