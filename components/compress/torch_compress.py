"""PyTorch compression: magnitude pruning, structured pruning and distillation.

Each function starts from the float network rebuilt from a model directory's
`checkpoint.pt` (see `components.train.lib`), returns a smaller or sparser network, and
`write_torch_candidate` exports it as a full model directory that `load_model`, the
measuring in `components.compress.lib` and the model server read like any other.
Quantization of the exported ONNX models lives in `components.compress.onnx_quantize`.
"""

from __future__ import annotations

import copy
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune

from components.common.artifacts import (
    METADATA_FILE,
    ONNX_MODEL_FILE,
    TORCH_CHECKPOINT_FILE,
    read_json,
    write_json,
)
from components.common.config import (
    CompressionConfig,
    DistillationConfig,
    TrainingConfig,
)
from components.common.errors import PlumbError
from components.train.torch_model import build_network, export_onnx

logger = logging.getLogger(__name__)


@dataclass
class TorchModel:
    """A float network rebuilt from its checkpoint, with the settings that built it."""

    network: nn.Sequential
    training: dict[str, Any]
    task: str
    input_width: int

    def batch_size_for(self, rows: int) -> int:
        """The training run's batch size (or its rule for `rows` rows when unset)."""
        return TrainingConfig(
            batch_size=self.training.get("batch_size")
        ).batch_size_for(rows)


def load_torch_model(model_dir: Path) -> TorchModel:
    """Rebuild the trained network of a model directory from its checkpoint.

    Raises:
        PlumbError: The directory holds no PyTorch checkpoint.
    """
    checkpoint_path = model_dir / TORCH_CHECKPOINT_FILE
    if not checkpoint_path.is_file():
        raise PlumbError(
            f"no {TORCH_CHECKPOINT_FILE} in {str(model_dir)!r}; pruning and distillation "
            "fine-tune the PyTorch network, so pass a model directory written by plumb's "
            "train step, or set compression.methods to ['quantization']"
        )
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    metadata = read_json(model_dir / METADATA_FILE)
    training = dict(checkpoint["training"])
    network = build_network(
        input_width=int(metadata["input_width"]),
        model=training["model"],
        hidden_units=list(training["hidden_units"]),
        dropout=float(training["dropout"]),
    )
    network.load_state_dict(checkpoint["state_dict"])
    network.eval()
    assert isinstance(network, nn.Sequential)
    return TorchModel(
        network=network,
        training=training,
        task=str(metadata["task"]),
        input_width=int(metadata["input_width"]),
    )


def linear_layers(network: nn.Module) -> list[nn.Linear]:
    """The network's Linear layers, input side first."""
    return [module for module in network.modules() if isinstance(module, nn.Linear)]


def weight_sparsity(network: nn.Module) -> float:
    """Share of exactly-zero weights over all Linear layers (biases excluded)."""
    weights = [layer.weight.detach() for layer in linear_layers(network)]
    total = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    return zeros / max(total, 1)


def parameter_count(network: nn.Module) -> int:
    """Number of parameters (weights and biases) of the network."""
    return sum(p.numel() for p in network.parameters())


def _loss_fn(task: str) -> nn.Module:
    return nn.BCEWithLogitsLoss() if task == "binary" else nn.MSELoss()


def _fit(
    network: nn.Module,
    *,
    features: torch.Tensor,
    loss_of_batch: Any,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    seed: int,
    label: str,
) -> None:
    """Run Adam over shuffled batches; `loss_of_batch(outputs, index)` gives the loss."""
    if epochs == 0:
        return
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(network.parameters(), lr=learning_rate)
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        network.train()
        order = torch.randperm(len(features), generator=generator)
        total = 0.0
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = loss_of_batch(network(features[batch]).squeeze(-1), batch)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        mean_loss = total / len(order)
        if not math.isfinite(mean_loss):
            raise PlumbError(
                f"{label} loss became {mean_loss} in epoch {epoch}; lower the learning "
                f"rate (got {learning_rate})"
            )
        logger.debug("%s epoch %d/%d: loss %.4f", label, epoch, epochs, mean_loss)
    network.eval()
    logger.info(
        "%s: %d epochs in %.1f s, final loss %.4f",
        label,
        epochs,
        time.perf_counter() - started,
        mean_loss,
    )


def fine_tune(
    network: nn.Module,
    *,
    train_x: np.ndarray,
    train_y: np.ndarray,
    task: str,
    config: CompressionConfig,
    batch_size: int,
    label: str,
) -> None:
    """Train the network further on the labels (pruning masks, if any, stay applied)."""
    torch.manual_seed(config.seed)
    labels = torch.from_numpy(train_y.astype(np.float32))
    loss_fn = _loss_fn(task)
    _fit(
        network,
        features=torch.from_numpy(train_x),
        loss_of_batch=lambda outputs, batch: loss_fn(outputs, labels[batch]),
        epochs=config.fine_tune_epochs,
        learning_rate=config.fine_tune_learning_rate,
        batch_size=batch_size,
        seed=config.seed,
        label=label,
    )


def prune_unstructured(
    model: TorchModel,
    *,
    train_x: np.ndarray,
    train_y: np.ndarray,
    config: CompressionConfig,
) -> nn.Sequential:
    """Zero the smallest weights across all layers to `config.sparsity`, then fine-tune.

    The masks stay in place during fine-tuning (pruned weights receive no update) and
    are then made permanent, so the returned network is a plain one with zeros.
    """
    network = copy.deepcopy(model.network)
    layers = linear_layers(network)
    prune.global_unstructured(
        [(layer, "weight") for layer in layers],
        pruning_method=prune.L1Unstructured,
        amount=config.sparsity,
    )
    fine_tune(
        network,
        train_x=train_x,
        train_y=train_y,
        task=model.task,
        config=config,
        batch_size=model.batch_size_for(len(train_x)),
        label=f"Fine-tuning at sparsity {config.sparsity:.2f}",
    )
    for layer in layers:
        prune.remove(layer, "weight")
    logger.info(
        "Pruned to weight sparsity %.3f (asked %.3f)",
        weight_sparsity(network),
        config.sparsity,
    )
    return network


def prune_structured(
    model: TorchModel,
    *,
    train_x: np.ndarray,
    train_y: np.ndarray,
    config: CompressionConfig,
) -> tuple[nn.Sequential, list[int]]:
    """Remove the weakest neurons of every hidden layer, rebuild smaller layers, fine-tune.

    A neuron's strength is the L1 or L2 norm of its incoming weights and bias. Its row
    in its own layer and its column in the next layer are cut out, so the rebuilt
    network really has fewer parameters.

    Returns:
        The smaller network and its hidden layer widths.

    Raises:
        PlumbError: The network has no hidden layer to prune.
    """
    layers = linear_layers(model.network)
    if len(layers) < 2:
        raise PlumbError(
            "compression.methods includes 'structured_pruning', but the model has no "
            "hidden layer (training.model is 'logistic'); use 'pruning' instead"
        )
    order = 1 if config.structured_norm == "l1" else 2
    kept: list[torch.Tensor] = []
    for layer in layers[:-1]:
        with torch.no_grad():
            incoming = torch.cat([layer.weight, layer.bias.unsqueeze(1)], dim=1)
            strength = torch.linalg.vector_norm(incoming, ord=order, dim=1)
        keep = max(1, round(layer.out_features * (1.0 - config.structured_ratio)))
        kept.append(torch.sort(torch.topk(strength, keep).indices).values)
    hidden_units = [len(index) for index in kept]

    smaller = build_network(
        input_width=model.input_width,
        model="mlp",
        hidden_units=hidden_units,
        dropout=float(model.training["dropout"]),
    )
    assert isinstance(smaller, nn.Sequential)
    with torch.no_grad():
        inputs = torch.arange(model.input_width)
        for position, (old, new) in enumerate(
            zip(layers, linear_layers(smaller), strict=True)
        ):
            rows = kept[position] if position < len(kept) else torch.arange(1)
            new.weight.copy_(old.weight[rows][:, inputs])
            new.bias.copy_(old.bias[rows])
            inputs = rows
    logger.info(
        "Structured pruning: hidden units %s -> %s, parameters %d -> %d",
        list(model.training["hidden_units"]),
        hidden_units,
        parameter_count(model.network),
        parameter_count(smaller),
    )
    fine_tune(
        smaller,
        train_x=train_x,
        train_y=train_y,
        task=model.task,
        config=config,
        batch_size=model.batch_size_for(len(train_x)),
        label=f"Fine-tuning hidden units {hidden_units}",
    )
    return smaller, hidden_units


def distill(
    teacher: TorchModel,
    *,
    train_x: np.ndarray,
    train_y: np.ndarray,
    config: DistillationConfig,
    seed: int,
) -> nn.Sequential:
    """Train a smaller student MLP on the teacher's soft outputs plus the labels.

    Binary: the loss is `alpha * T^2 * BCE(student_logit / T, sigmoid(teacher_logit /
    T)) + (1 - alpha) * BCE(student_logit, label)`; the `T^2` keeps the soft term's
    gradient on the scale of the hard one. Regression: the student matches the
    teacher's value and the label by mean squared error, weighted the same way (the
    temperature does not apply).
    """
    torch.manual_seed(seed)
    student = build_network(
        input_width=teacher.input_width,
        model="mlp",
        hidden_units=list(config.hidden_units),
        dropout=0.0,
    )
    assert isinstance(student, nn.Sequential)
    features = torch.from_numpy(train_x)
    labels = torch.from_numpy(train_y.astype(np.float32))
    with torch.no_grad():
        teacher_out = teacher.network.eval()(features).squeeze(-1)
    temperature = config.temperature
    alpha = config.alpha
    bce = nn.BCEWithLogitsLoss()
    mse = nn.MSELoss()

    def loss_of_batch(outputs: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        if teacher.task == "binary":
            soft_targets = torch.sigmoid(teacher_out[batch] / temperature)
            soft = bce(outputs / temperature, soft_targets) * temperature**2
            hard = bce(outputs, labels[batch])
        else:
            soft = mse(outputs, teacher_out[batch])
            hard = mse(outputs, labels[batch])
        return alpha * soft + (1.0 - alpha) * hard

    _fit(
        student,
        features=features,
        loss_of_batch=loss_of_batch,
        epochs=config.epochs,
        learning_rate=config.learning_rate,
        batch_size=teacher.batch_size_for(len(train_x)),
        seed=seed,
        label=f"Distilling student {list(config.hidden_units)}",
    )
    logger.info(
        "Student has %d parameters (teacher %d)",
        parameter_count(student),
        parameter_count(teacher.network),
    )
    return student


def write_torch_candidate(
    network: nn.Module,
    *,
    source_dir: Path,
    target_dir: Path,
    teacher: TorchModel,
    training_updates: dict[str, Any],
    compression: str,
    details: dict[str, Any],
) -> Path:
    """Write a full model directory for a compressed network: ONNX, checkpoint, metadata.

    The schema, transform and drift reference are copied from `source_dir`; the
    checkpoint's training settings get `training_updates` (e.g. the new hidden units)
    so the network can be rebuilt from it.
    """
    copy_model_dir(source_dir, target_dir)
    export_onnx(
        network,
        task=teacher.task,
        input_width=teacher.input_width,
        path=target_dir / ONNX_MODEL_FILE,
    )
    torch.save(
        {
            "state_dict": network.state_dict(),
            "training": {**teacher.training, **training_updates},
        },
        target_dir / TORCH_CHECKPOINT_FILE,
    )
    metadata = read_json(source_dir / METADATA_FILE)
    metadata.update(
        {"compression": compression, "compression_details": details, "format": "onnx"}
    )
    metadata.pop("model_file", None)
    if "model" in training_updates:
        metadata["model"] = training_updates["model"]
    write_json(target_dir / METADATA_FILE, metadata)
    return target_dir


def copy_model_dir(source_dir: Path, target_dir: Path) -> None:
    """Copy a model directory without its model file and checkpoint (written anew)."""
    shutil.copytree(
        source_dir,
        target_dir,
        ignore=shutil.ignore_patterns(
            ONNX_MODEL_FILE, TORCH_CHECKPOINT_FILE, "*.tflite"
        ),
    )
