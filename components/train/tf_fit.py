"""Fit and export a tf_keras network, in one process or as one worker of many.

`tf_train.py` (one process) and `tf_workers.py` (each worker of a
`MultiWorkerMirroredStrategy` run) call `fit_network`, then the chief calls
`export_network`. Importing this module imports TensorFlow.

Given a checkpoint directory, `fit_network` saves the network, Adam's state and the
early-stopping state there every `training.checkpoint_every_epochs` epochs
(`tf.train.CheckpointManager`), and a run started again on the same directory resumes
from the latest one. Under `MultiWorkerMirroredStrategy` every worker writes (the save
may read variables through collective ops), the chief into the directory and the others
into scratch copies, and every worker restores from the chief's.
"""

from __future__ import annotations

import os

# tfmot needs Keras 2; this must be set before anything imports TensorFlow.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras

from components.common.artifacts import KERAS_MODEL_FILE, TFLITE_MODEL_FILE
from components.common.config import TrainingConfig
from components.common.errors import PlumbError
from components.train.tf_model import (
    build_network,
    compile_network,
    convert_to_tflite,
    set_seed,
)
from components.train.tf_train import TrainingArrays

logger = logging.getLogger(__name__)

VALIDATION_CHUNK_ROWS = 8192
CHECKPOINTS_KEPT = 2


@dataclass
class FitResult:
    """What one TensorFlow training run produced (on one worker)."""

    weights: list[np.ndarray]
    """Weights of the epoch with the best validation loss."""
    epochs_run: int
    best_validation_loss: float
    seconds: float
    rows_per_second: float
    resumed_from_epoch: int = 0
    """The epoch of the checkpoint this run continued from (0: a fresh start)."""

    def metrics(self) -> dict[str, float]:
        return {
            "epochs": float(self.epochs_run),
            "validation_loss": self.best_validation_loss,
            "train_seconds": self.seconds,
            "rows_per_second": self.rows_per_second,
            "resumed_from_epoch": float(self.resumed_from_epoch),
        }


def fit_network(
    config: TrainingConfig,
    *,
    arrays: TrainingArrays,
    task: str,
    strategy: tf.distribute.Strategy | None = None,
    is_chief: bool = True,
    rank: int = 0,
    checkpoint_dir: Path | None = None,
) -> FitResult:
    """Train with Adam and early stopping on the validation loss; keep the best weights.

    Under `MultiWorkerMirroredStrategy` every worker calls this with the same arrays;
    the batches are sharded between workers and gradients are all-reduced, so
    `config.batch_size` is the per-worker batch. The validation loss is computed on the
    full validation split by each worker from identical weights, so all workers make
    the same early-stopping decision.

    With `checkpoint_dir`, a checkpoint found there is resumed from (weights, Adam,
    best weights and early-stopping counters; the shuffle and dropout streams start
    afresh) and new ones are written every `config.checkpoint_every_epochs` epochs.

    Raises:
        PlumbError: The loss became NaN or infinite.
    """
    set_seed(config.seed)
    use_threads(config.threads_per_worker)
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        network = build_network(
            input_width=arrays.train_x.shape[1],
            model=config.model,
            hidden_units=config.hidden_units,
            dropout=config.dropout,
        )
        compile_network(network, task=task, learning_rate=config.learning_rate)
    dataset = _training_dataset(
        arrays,
        global_batch_size=config.batch_size_for(len(arrays.train_x))
        * strategy.num_replicas_in_sync,
        seed=config.seed,
    )
    tracker = _BestWeights(
        arrays=arrays,
        task=task,
        epochs=config.epochs,
        patience=config.early_stopping_patience,
        learning_rate=config.learning_rate,
        log_level=logging.INFO if is_chief else logging.DEBUG,
    )
    callbacks: list[tf_keras.callbacks.Callback] = [tracker]
    resumed_from = 0
    if checkpoint_dir is not None:
        with strategy.scope():
            # Adam's slots must exist before a restore can fill them.
            network.optimizer.build(network.trainable_variables)
        checkpoints = _EpochCheckpoints(
            network,
            tracker=tracker,
            directory=checkpoint_dir,
            every_epochs=config.checkpoint_every_epochs,
            is_chief=is_chief,
            rank=rank,
        )
        resumed_from = checkpoints.restore()
        callbacks.append(checkpoints)

    started = time.perf_counter()
    network.fit(
        dataset,
        epochs=config.epochs,
        initial_epoch=resumed_from,
        verbose=0,
        callbacks=callbacks,
    )
    seconds = time.perf_counter() - started
    if tracker.error is not None:
        raise PlumbError(tracker.error)

    epochs_here = max(tracker.epochs_run - resumed_from, 0)
    rows_per_second = epochs_here * len(arrays.train_x) / max(seconds, 1e-9)
    logger.log(
        tracker.log_level,
        "Trained %d epochs in %.1f s (%.0f rows/s on %d worker(s)), best validation "
        "loss %.4f",
        tracker.epochs_run,
        seconds,
        rows_per_second,
        strategy.num_replicas_in_sync,
        tracker.best_loss,
    )
    return FitResult(
        weights=tracker.best_weights,
        epochs_run=tracker.epochs_run,
        best_validation_loss=tracker.best_loss,
        seconds=seconds,
        rows_per_second=rows_per_second,
        resumed_from_epoch=resumed_from,
    )


def use_threads(threads: int) -> None:
    """Give TensorFlow `threads` intra-op threads and one inter-op thread.

    TensorFlow fixes its thread pools when it first runs an op; later calls (a second
    training in the same process) keep the pools it has and log that at DEBUG.
    """
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError as err:
        logger.debug("Keeping TensorFlow's thread pools: %s", err)


def _training_dataset(
    arrays: TrainingArrays, *, global_batch_size: int, seed: int
) -> tf.data.Dataset:
    # Every worker shuffles with the same seed, so DATA sharding hands each worker a
    # disjoint share of every global batch.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    return (
        tf.data.Dataset.from_tensor_slices((arrays.train_x, arrays.train_y))
        .shuffle(len(arrays.train_x), seed=seed, reshuffle_each_iteration=True)
        .batch(global_batch_size)
        .with_options(options)
    )


def validation_loss(logits: np.ndarray, labels: np.ndarray, *, task: str) -> float:
    """The training loss on raw outputs: logistic loss on logits, or mean squared error."""
    outputs = logits.astype(np.float64).reshape(-1)
    targets = labels.astype(np.float64).reshape(-1)
    if task == "binary":
        # log(1 + exp(-|z|)) + max(z, 0) - z * y, stable for large |z|; a NaN output
        # gives a NaN loss, which the caller reports.
        with np.errstate(over="ignore", invalid="ignore"):
            losses = (
                np.logaddexp(0.0, -np.abs(outputs))
                + np.maximum(outputs, 0)
                - outputs * targets
            )
        return float(np.mean(losses))
    return float(np.mean((outputs - targets) ** 2))


class _BestWeights(tf_keras.callbacks.Callback):
    """Track the best validation loss, stop early, and stop on a NaN loss."""

    def __init__(
        self,
        *,
        arrays: TrainingArrays,
        task: str,
        epochs: int,
        patience: int,
        learning_rate: float,
        log_level: int,
    ) -> None:
        super().__init__()
        self.arrays = arrays
        self.task = task
        self.epochs = epochs
        self.patience = patience
        self.learning_rate = learning_rate
        self.log_level = log_level
        self.best_loss = math.inf
        self.best_weights: list[np.ndarray] = []
        self.stale_epochs = 0
        self.epochs_run = 0
        self.error: str | None = None
        self._epoch_started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        train_loss = float((logs or {}).get("loss", math.nan))
        val_loss = self._validation_loss()
        self.epochs_run = epoch + 1
        seconds = time.perf_counter() - self._epoch_started
        logger.log(
            self.log_level,
            "Epoch %d/%d: train loss %.4f, validation loss %.4f, %.0f rows/s",
            epoch + 1,
            self.epochs,
            train_loss,
            val_loss,
            len(self.arrays.train_x) / max(seconds, 1e-9),
        )
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            self.error = (
                f"training loss became {train_loss} (validation {val_loss}) in epoch "
                f"{epoch + 1}; lower training.learning_rate (got {self.learning_rate}) "
                "or check the target for extreme values"
            )
            self.model.stop_training = True
            return
        if val_loss < self.best_loss - 1e-6:
            self.best_loss = val_loss
            self.best_weights = [np.array(w) for w in self.model.get_weights()]
            self.stale_epochs = 0
            return
        self.stale_epochs += 1
        if self.patience and self.stale_epochs >= self.patience:
            logger.log(
                self.log_level,
                "Stopped early after %d epochs without improvement",
                self.stale_epochs,
            )
            self.model.stop_training = True

    def _validation_loss(self) -> float:
        x = self.arrays.validation_x
        logits = np.concatenate(
            [
                np.asarray(self.model(x[start : start + VALIDATION_CHUNK_ROWS]))
                for start in range(0, len(x), VALIDATION_CHUNK_ROWS)
            ]
        )
        return validation_loss(logits, self.arrays.validation_y, task=self.task)


class _EpochCheckpoints(tf_keras.callbacks.Callback):
    """Save the run every N epochs with `tf.train.CheckpointManager`; restore the latest.

    The checkpoint holds the network, Adam (its step and slots), the number of epochs
    done and `_BestWeights`' state (best loss and weights, epochs without improvement),
    so a resumed run keeps the best epoch it saw before it was stopped.
    """

    def __init__(
        self,
        network: tf_keras.Model,
        *,
        tracker: _BestWeights,
        directory: Path,
        every_epochs: int,
        is_chief: bool,
        rank: int,
    ) -> None:
        super().__init__()
        self.tracker = tracker
        self.directory = directory
        self.every_epochs = every_epochs
        # Plain (per-worker) variables: every worker holds the same values, since all
        # compute the same validation loss from the same weights.
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.best_loss = tf.Variable(math.inf, dtype=tf.float64, trainable=False)
        self.stale_epochs = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.best_weights = [
            tf.Variable(np.zeros_like(w), trainable=False)
            for w in network.get_weights()
        ]
        self.checkpoint = tf.train.Checkpoint(
            network=network,
            optimizer=network.optimizer,
            epoch=self.epoch,
            best_loss=self.best_loss,
            stale_epochs=self.stale_epochs,
            best_weights=self.best_weights,
        )
        # Workers other than the chief write to a scratch copy, removed after each save.
        self.write_directory = (
            directory if is_chief else directory.with_name(f"{directory.name}-{rank}")
        )
        self.is_chief = is_chief
        self.manager = tf.train.CheckpointManager(
            self.checkpoint,
            directory=str(self.write_directory),
            max_to_keep=CHECKPOINTS_KEPT,
        )

    def restore(self) -> int:
        """Load the latest checkpoint in the chief's directory; return its epoch (0 if
        there is none)."""
        latest = tf.train.latest_checkpoint(str(self.directory))
        if latest is None:
            return 0
        self.checkpoint.restore(latest).assert_existing_objects_matched()
        epoch = int(self.epoch.numpy())
        self.tracker.best_loss = float(self.best_loss.numpy())
        self.tracker.stale_epochs = int(self.stale_epochs.numpy())
        self.tracker.epochs_run = epoch
        if math.isfinite(self.tracker.best_loss):
            self.tracker.best_weights = [w.numpy() for w in self.best_weights]
        logger.log(
            self.tracker.log_level,
            "Resumed from the checkpoint of epoch %d (%s)",
            epoch,
            latest,
        )
        return epoch

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        done = epoch + 1
        if self.tracker.error is not None:
            return
        last = bool(self.model.stop_training) or done == self.params.get("epochs")
        if done % self.every_epochs and not last:
            return
        self.epoch.assign(done)
        self.best_loss.assign(self.tracker.best_loss)
        self.stale_epochs.assign(self.tracker.stale_epochs)
        if self.tracker.best_weights:
            for variable, value in zip(
                self.best_weights, self.tracker.best_weights, strict=True
            ):
                variable.assign(value)
        path = self.manager.save(checkpoint_number=done)
        if not self.is_chief:
            shutil.rmtree(self.write_directory, ignore_errors=True)
        logger.debug("Wrote checkpoint of epoch %d to %s", done, path)


def export_network(
    config: TrainingConfig, *, result: FitResult, task: str, model_dir: Path
) -> None:
    """Write the best weights as `model.tflite` (served) and `model.keras` (fine-tuning).

    The network is rebuilt outside any distribution strategy, so the chief of a
    multi-worker run exports exactly what a single process would.
    """
    network = build_network(
        input_width=result.weights[0].shape[0],
        model=config.model,
        hidden_units=config.hidden_units,
        dropout=config.dropout,
    )
    network.set_weights(result.weights)
    compile_network(network, task=task, learning_rate=config.learning_rate)
    network.save(model_dir / KERAS_MODEL_FILE)
    flatbuffer = convert_to_tflite(network, task=task)
    (model_dir / TFLITE_MODEL_FILE).write_bytes(flatbuffer)
    logger.info(
        "Exported TFLite model (%d bytes) and Keras model to %s",
        len(flatbuffer),
        model_dir,
    )
