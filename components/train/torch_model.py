"""PyTorch networks for tabular data, and their export to ONNX."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

logger = logging.getLogger(__name__)

ONNX_OPSET = 18


def build_network(
    *,
    input_width: int,
    model: str,
    hidden_units: list[int],
    dropout: float,
    batch_norm: bool = False,
) -> nn.Module:
    """Build a logistic/linear layer or an MLP with one output (a logit or a value).

    The MLP stacks Linear -> [BatchNorm1d] -> ReLU -> [Dropout] per hidden layer.
    """
    if model == "logistic":
        return nn.Sequential(nn.Linear(input_width, 1))
    layers: list[nn.Module] = []
    width = input_width
    for units in hidden_units:
        layers.append(nn.Linear(width, units))
        if batch_norm:
            layers.append(nn.BatchNorm1d(units))
        layers.append(nn.ReLU())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = units
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


class ServingHead(nn.Module):
    """Wrap a network so its output is what serving returns: a probability or a value."""

    def __init__(self, network: nn.Module, *, task: str) -> None:
        super().__init__()
        self.network = network
        self.task = task

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        output = self.network(features).squeeze(-1)
        return torch.sigmoid(output) if self.task == "binary" else output


def export_onnx(
    network: nn.Module, *, task: str, input_width: int, path: str | Path
) -> None:
    """Export the network with its serving head; the batch dimension stays dynamic."""
    head = ServingHead(network, task=task).eval()
    example = torch.zeros(2, input_width)
    torch.onnx.export(
        head,
        (example,),
        str(path),
        input_names=["features"],
        output_names=["output"],
        dynamic_axes={"features": {0: "batch"}, "output": {0: "batch"}},
        opset_version=ONNX_OPSET,
        dynamo=False,
    )
    logger.info("Exported ONNX model to %s", path)
