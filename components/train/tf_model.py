"""tf_keras networks for tabular data, and their conversion to TFLite.

The TensorFlow twin of `torch_model.py`: the same logistic/linear layer or MLP with one
output (a logit or a value), trained by `tf_train.py`, made smaller by
`components/compress/tf_compress.py`, and served as TFLite by
`components/common/model_runtime.py`. Keras 2 (`tf_keras`) is used because
tensorflow-model-optimization needs it.
"""

from __future__ import annotations

import os

# tfmot needs Keras 2; this must be set before anything imports TensorFlow.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import logging
from collections.abc import Iterator
from typing import Literal

import numpy as np
import tensorflow as tf
import tf_keras

logger = logging.getLogger(__name__)

TfliteQuantization = Literal["none", "dynamic", "full-int8"]
"""`none`: float32; `dynamic`: int8 weights, float activations (dynamic range);
`full-int8`: int8 weights and activations calibrated on a representative dataset, with
float32 input and output."""


def build_network(
    *, input_width: int, model: str, hidden_units: list[int], dropout: float
) -> tf_keras.Sequential:
    """Build a logistic/linear layer or an MLP with one output (a logit or a value)."""
    layers: list[tf_keras.layers.Layer] = [tf_keras.Input(shape=(input_width,))]
    if model == "mlp":
        for units in hidden_units:
            layers.append(tf_keras.layers.Dense(units, activation="relu"))
            if dropout > 0:
                layers.append(tf_keras.layers.Dropout(dropout))
    layers.append(tf_keras.layers.Dense(1))
    return tf_keras.Sequential(layers)


def compile_network(
    network: tf_keras.Model, *, task: str, learning_rate: float
) -> None:
    """Compile with Adam and the task's loss (logistic loss on logits, or MSE)."""
    loss = (
        tf_keras.losses.BinaryCrossentropy(from_logits=True)
        if task == "binary"
        else tf_keras.losses.MeanSquaredError()
    )
    network.compile(
        optimizer=tf_keras.optimizers.Adam(learning_rate=learning_rate), loss=loss
    )


def serving_model(network: tf_keras.Model, *, task: str) -> tf_keras.Model:
    """Wrap a network so its output is what serving returns: a probability or a value."""
    features = tf_keras.Input(shape=network.input_shape[1:], name="features")
    output = network(features, training=False)
    if task == "binary":
        output = tf_keras.layers.Activation("sigmoid")(output)
    return tf_keras.Model(features, output)


def convert_to_tflite(
    network: tf_keras.Model,
    *,
    task: str,
    quantization: TfliteQuantization = "none",
    representative_rows: np.ndarray | None = None,
) -> bytes:
    """Convert a network with its serving head to a TFLite flatbuffer.

    The batch dimension stays dynamic; the runtime resizes the input per call.

    Args:
        network: A built network whose output is a logit or a value (a QAT model
            from tfmot works as well; its fake-quant ranges are used).
        task: `binary` (a sigmoid head is added) or `regression`.
        quantization: See `TfliteQuantization`.
        representative_rows: Transformed training rows that calibrate `full-int8`.

    Raises:
        ValueError: `full-int8` without representative rows.
    """
    converter = tf.lite.TFLiteConverter.from_keras_model(
        serving_model(network, task=task)
    )
    if quantization != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "full-int8":
        if representative_rows is None or len(representative_rows) == 0:
            raise ValueError("full-int8 quantization needs representative rows")
        converter.representative_dataset = lambda: _one_row_batches(representative_rows)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    flatbuffer = converter.convert()
    logger.debug(
        "Converted a %s TFLite model of %d bytes", quantization, len(flatbuffer)
    )
    return bytes(flatbuffer)


def _one_row_batches(rows: np.ndarray) -> Iterator[list[np.ndarray]]:
    for row in rows.astype(np.float32):
        yield [row[np.newaxis, :]]


def kernel_sparsity(network: tf_keras.Model) -> float:
    """Share of exactly-zero weights over all Dense kernels (biases are not pruned)."""
    zeros = 0
    total = 0
    for weight in network.weights:
        if "kernel" not in weight.name:
            continue
        values = weight.numpy()
        zeros += int(np.count_nonzero(values == 0))
        total += values.size
    return zeros / total if total else 0.0


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow, and make TF ops deterministic on the CPU."""
    tf_keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
