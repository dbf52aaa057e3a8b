"""Pruning, structured pruning and distillation of the PyTorch MLP (breast-cancer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from components.common.config import CompressionConfig
from components.common.model_runtime import load_model
from components.compress import torch_compress
from components.evaluate.metrics import compute_metrics


def _training_arrays(model_dir: Path, prepared) -> tuple[np.ndarray, np.ndarray]:
    model = load_model(model_dir)
    train = prepared.splits["train"]
    return model.transform.apply(train), model.schema.labels(train).astype(np.float32)


def _auc(model_dir: Path, prepared) -> float:
    model = load_model(model_dir)
    validation = prepared.splits["validation"]
    scores = compute_metrics(
        model.schema.labels(validation), model.predict(validation), task="binary"
    )
    return scores["roc_auc"]


def test_unstructured_pruning_reaches_sparsity(
    trained_model_dir: Path, prepared_breast_cancer, tmp_path: Path
) -> None:
    """Global magnitude pruning zeroes the asked share of weights, also in the ONNX file."""
    teacher = torch_compress.load_torch_model(trained_model_dir)
    train_x, train_y = _training_arrays(trained_model_dir, prepared_breast_cancer)
    config = CompressionConfig(sparsity=0.7, fine_tune_epochs=2)

    pruned = torch_compress.prune_unstructured(
        teacher, train_x=train_x, train_y=train_y, config=config
    )
    out = torch_compress.write_torch_candidate(
        pruned,
        source_dir=trained_model_dir,
        target_dir=tmp_path / "pruned",
        teacher=teacher,
        training_updates={},
        compression="pruned",
        details={},
    )

    # Global pruning zeroes round(0.7 * n) of the n weights: exact up to one weight.
    total = sum(layer.weight.numel() for layer in torch_compress.linear_layers(pruned))
    assert abs(torch_compress.weight_sparsity(pruned) - 0.7) <= 1.0 / total
    assert torch_compress.weight_sparsity(teacher.network) < 0.01
    graph = onnx.load(out / "model.onnx").graph
    weights = [
        numpy_helper.to_array(t) for t in graph.initializer if t.name.endswith("weight")
    ]
    onnx_zeros = sum(int((w == 0).sum()) for w in weights) / sum(
        w.size for w in weights
    )
    assert abs(onnx_zeros - 0.7) <= 1.0 / total
    # Fine-tuned at 70 % sparsity, the easy breast-cancer task keeps a high AUC.
    assert _auc(out, prepared_breast_cancer) > 0.95


def test_structured_pruning_shrinks_layers(
    trained_model_dir: Path, prepared_breast_cancer, tmp_path: Path
) -> None:
    """Removing half the hidden neurons rebuilds smaller Linear layers and a smaller file."""
    teacher = torch_compress.load_torch_model(trained_model_dir)
    train_x, train_y = _training_arrays(trained_model_dir, prepared_breast_cancer)
    config = CompressionConfig(structured_ratio=0.5, fine_tune_epochs=2)

    smaller, hidden_units = torch_compress.prune_structured(
        teacher, train_x=train_x, train_y=train_y, config=config
    )
    out = torch_compress.write_torch_candidate(
        smaller,
        source_dir=trained_model_dir,
        target_dir=tmp_path / "structured",
        teacher=teacher,
        training_updates={"hidden_units": hidden_units},
        compression="structured",
        details={},
    )

    width = teacher.input_width
    assert hidden_units == [8]  # the fixture's MLP has one hidden layer of 16
    assert torch_compress.parameter_count(smaller) == width * 8 + 8 + 8 + 1
    assert torch_compress.parameter_count(teacher.network) == width * 16 + 16 + 16 + 1
    saved_bytes = (trained_model_dir / "model.onnx").stat().st_size - (
        out / "model.onnx"
    ).stat().st_size
    # The file loses the removed parameters' float32 bytes (5 % slack for names).
    assert saved_bytes >= 0.95 * 4 * (width * 8 + 8)
    # The written checkpoint rebuilds the smaller network.
    rebuilt = torch_compress.load_torch_model(out)
    assert torch_compress.parameter_count(rebuilt.network) == width * 8 + 17
    assert _auc(out, prepared_breast_cancer) > 0.95


def test_structured_pruning_drops_only_the_weakest_neurons(
    trained_model_dir: Path, prepared_breast_cancer
) -> None:
    """Neurons with zero weights are the ones cut, and outputs stay identical (1e-5)."""
    teacher = torch_compress.load_torch_model(trained_model_dir)
    first, last = torch_compress.linear_layers(teacher.network)
    dead = [1, 4, 6, 9, 10, 12, 13, 15]
    with torch.no_grad():
        first.weight[dead] = 0.0
        first.bias[dead] = 0.0
    train_x, train_y = _training_arrays(trained_model_dir, prepared_breast_cancer)
    config = CompressionConfig(structured_ratio=0.5, fine_tune_epochs=0)

    smaller, hidden_units = torch_compress.prune_structured(
        teacher, train_x=train_x, train_y=train_y, config=config
    )

    assert hidden_units == [8]
    kept = torch_compress.linear_layers(smaller)[0]
    alive = [i for i in range(16) if i not in dead]
    assert torch.equal(kept.weight, first.weight[alive])
    with torch.no_grad():
        features = torch.from_numpy(train_x)
        expected = teacher.network.eval()(features)
        actual = smaller.eval()(features)
    # A dead neuron outputs relu(0) = 0, so removing it changes nothing but rounding.
    assert torch.allclose(expected, actual, atol=1e-5)


def test_distilled_student_is_smaller_and_close(
    trained_model_dir: Path, prepared_breast_cancer, tmp_path: Path
) -> None:
    """A 4-unit student trained on the teacher keeps AUC within 0.03 of it."""
    teacher = torch_compress.load_torch_model(trained_model_dir)
    train_x, train_y = _training_arrays(trained_model_dir, prepared_breast_cancer)
    config = CompressionConfig(
        distillation={
            "hidden_units": [4],
            "temperature": 2.0,
            "alpha": 0.7,
            "epochs": 15,
        }
    )

    student = torch_compress.distill(
        teacher,
        train_x=train_x,
        train_y=train_y,
        config=config.distillation,
        seed=0,
    )
    out = torch_compress.write_torch_candidate(
        student,
        source_dir=trained_model_dir,
        target_dir=tmp_path / "distilled",
        teacher=teacher,
        training_updates={"hidden_units": [4], "dropout": 0.0},
        compression="distilled",
        details={},
    )

    assert torch_compress.parameter_count(student) == teacher.input_width * 4 + 4 + 5
    teacher_auc = _auc(trained_model_dir, prepared_breast_cancer)
    # 0.03: breast-cancer validation has ~85 rows, so one swapped pair moves AUC ~0.001.
    assert _auc(out, prepared_breast_cancer) >= teacher_auc - 0.03
