"""The train step: fit a network on the training split and export it for serving.

The model directory this writes is what compression, evaluation and the model server
read: `model.onnx` (the network with its serving head), the schema and transform it was
trained with, `metadata.json`, and the PyTorch checkpoint for fine-tuning.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

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
from components.train.torch_model import build_network, export_onnx

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What one training run produced."""

    network: nn.Module
    epochs_run: int
    best_validation_loss: float
    seconds: float
    rows_per_second: float


def train_network(
    config: TrainingConfig,
    *,
    train_x: np.ndarray,
    train_y: np.ndarray,
    validation_x: np.ndarray,
    validation_y: np.ndarray,
    task: str,
) -> TrainResult:
    """Train with Adam and early stopping on the validation loss; keep the best weights.

    Raises:
        PlumbError: The loss became NaN or infinite.
    """
    if config.framework != "pytorch":
        raise PlumbError(
            f"training.framework {config.framework!r} is not available in single-process "
            "training; use 'pytorch'"
        )
    torch.set_num_threads(config.threads_per_worker)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    network = build_network(
        input_width=train_x.shape[1],
        model=config.model,
        hidden_units=config.hidden_units,
        dropout=config.dropout,
    )
    loss_fn: nn.Module = nn.BCEWithLogitsLoss() if task == "binary" else nn.MSELoss()
    optimizer = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
    features = torch.from_numpy(train_x)
    labels = torch.from_numpy(train_y)
    val_features = torch.from_numpy(validation_x)
    val_labels = torch.from_numpy(validation_y)

    batch_size = config.batch_size_for(len(features))
    best_loss = math.inf
    best_state = {k: v.clone() for k, v in network.state_dict().items()}
    stale_epochs = 0
    epochs_run = 0
    started = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        network.train()
        order = torch.randperm(len(features), generator=generator)
        total = 0.0
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(network(features[batch]).squeeze(-1), labels[batch])
            loss.backward()
            optimizer.step()
            total += float(loss) * len(batch)
        train_loss = total / len(order)
        if not math.isfinite(train_loss):
            raise PlumbError(
                f"training loss became {train_loss} in epoch {epoch}; lower "
                f"training.learning_rate (got {config.learning_rate}) or check the target "
                "for extreme values"
            )

        network.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(network(val_features).squeeze(-1), val_labels))
        epochs_run = epoch
        logger.info(
            "Epoch %d/%d: train loss %.4f, validation loss %.4f",
            epoch,
            config.epochs,
            train_loss,
            val_loss,
        )
        if val_loss < best_loss - 1e-6:
            best_loss = val_loss
            best_state = {k: v.clone() for k, v in network.state_dict().items()}
            stale_epochs = 0
        else:
            stale_epochs += 1
            if (
                config.early_stopping_patience
                and stale_epochs >= config.early_stopping_patience
            ):
                logger.info(
                    "Stopped early after %d epochs without improvement", stale_epochs
                )
                break

    seconds = time.perf_counter() - started
    network.load_state_dict(best_state)
    network.eval()
    rows_per_second = epochs_run * len(features) / max(seconds, 1e-9)
    logger.info(
        "Trained %d epochs in %.1f s (%.0f rows/s), best validation loss %.4f",
        epochs_run,
        seconds,
        rows_per_second,
        best_loss,
    )
    return TrainResult(
        network=network,
        epochs_run=epochs_run,
        best_validation_loss=best_loss,
        seconds=seconds,
        rows_per_second=rows_per_second,
    )


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
        Metrics to log: epochs, validation loss, seconds, rows per second.
    """
    preprocessor = Path(preprocessor_dir)
    schema = Schema.load(preprocessor / "schema.json")
    transform = Transform.load(preprocessor / "transform.json")
    if len(validation) == 0:
        raise PlumbError(
            "the validation split is empty; set data.split.validation_fraction above 0"
        )

    result = train_network(
        config,
        train_x=transform.apply(train),
        train_y=schema.labels(train),
        validation_x=transform.apply(validation),
        validation_y=schema.labels(validation),
        task=schema.task,
    )

    out = Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    export_onnx(
        result.network,
        task=schema.task,
        input_width=transform.width,
        path=out / ONNX_MODEL_FILE,
    )
    torch.save(
        {"state_dict": result.network.state_dict(), "training": config.model_dump()},
        out / TORCH_CHECKPOINT_FILE,
    )
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
        },
    )
    return {
        "epochs": float(result.epochs_run),
        "validation_loss": result.best_validation_loss,
        "train_seconds": result.seconds,
        "rows_per_second": result.rows_per_second,
    }
