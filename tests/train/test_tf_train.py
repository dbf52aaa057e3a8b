"""TensorFlow training: tf_keras in one process and two real MultiWorkerMirrored workers."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from components.common.artifacts import (
    KERAS_MODEL_FILE,
    TFLITE_MODEL_FILE,
    read_json,
)
from components.common.config import TrainingConfig
from components.common.errors import PlumbError
from components.common.model_runtime import TfliteModel, load_model
from components.preprocess.lib import PreparedData
from components.train import tf_workers
from components.train.lib import train_and_export

pytestmark = pytest.mark.slow

TF_TRAINING = {
    "framework": "tensorflow",
    "epochs": 15,
    "batch_size": 64,
    "hidden_units": [16],
}


def tf_training(**overrides: object) -> TrainingConfig:
    """A quick TensorFlow training config (validated like a loaded one)."""
    return TrainingConfig.model_validate({**TF_TRAINING, **overrides})


def _train(
    prepared: PreparedData, preprocessed_dir: Path, model_dir: Path, **training: object
) -> dict[str, float]:
    return train_and_export(
        tf_training(**training),
        train=prepared.splits["train"],
        validation=prepared.splits["validation"],
        preprocessor_dir=preprocessed_dir / "preprocessor",
        model_dir=model_dir,
    )


def _test_auc(model_dir: Path, prepared: PreparedData) -> float:
    model = load_model(model_dir)
    test = prepared.splits["test"]
    return float(roc_auc_score(model.schema.labels(test), model.predict(test)))


@pytest.fixture(scope="module")
def tf_model_dir(
    tmp_path_factory: pytest.TempPathFactory,
    prepared_breast_cancer: PreparedData,
    preprocessed_dir: Path,
) -> Path:
    model_dir = tmp_path_factory.mktemp("tf") / "model"
    _train(prepared_breast_cancer, preprocessed_dir, model_dir)
    return model_dir


def test_single_process_exports_tflite_model_dir(
    tf_model_dir: Path, prepared_breast_cancer: PreparedData
) -> None:
    """One worker writes a tflite model dir that load_model serves with AUC > 0.95."""
    metadata = read_json(tf_model_dir / "metadata.json")
    assert metadata["framework"] == "tensorflow"
    assert metadata["format"] == "tflite"
    assert metadata["model_file"] == TFLITE_MODEL_FILE
    for name in (
        "schema.json",
        "transform.json",
        "reference.parquet",
        KERAS_MODEL_FILE,
    ):
        assert (tf_model_dir / name).is_file(), name
    assert isinstance(load_model(tf_model_dir), TfliteModel)
    assert _test_auc(tf_model_dir, prepared_breast_cancer) > 0.95


def test_tflite_matches_keras_model_for_any_batch_size(
    tf_model_dir: Path, prepared_breast_cancer: PreparedData
) -> None:
    """TFLite probabilities equal sigmoid(Keras logits) within 1e-5 for 1, 7 and all rows."""
    import tf_keras

    model = load_model(tf_model_dir)
    network = tf_keras.models.load_model(tf_model_dir / KERAS_MODEL_FILE)
    x = model.transform.apply(prepared_breast_cancer.splits["test"])
    expected = 1 / (1 + np.exp(-network(x, training=False).numpy().reshape(-1)))
    # Float32 kernels (XNNPACK vs Eigen) sum in different orders: 1e-5 covers that.
    for rows in (1, 7, len(x), 1):
        np.testing.assert_allclose(
            model.predict_matrix(x[:rows]), expected[:rows], atol=1e-5
        )
    assert model.predict_matrix(x[:0]).shape == (0,)


def test_seeded_single_process_runs_are_reproducible(
    tmp_path: Path,
    tf_model_dir: Path,
    prepared_breast_cancer: PreparedData,
    preprocessed_dir: Path,
) -> None:
    """Training again with the same seed gives the same predictions (to 1e-6)."""
    _train(prepared_breast_cancer, preprocessed_dir, tmp_path / "again")
    test = prepared_breast_cancer.splits["test"]
    np.testing.assert_allclose(
        load_model(tmp_path / "again").predict(test),
        load_model(tf_model_dir).predict(test),
        atol=1e-6,
    )


def test_nan_loss_stops_with_a_message(
    tmp_path: Path, prepared_breast_cancer: PreparedData, preprocessed_dir: Path
) -> None:
    """An absurd learning rate makes the loss non-finite and names the fix."""
    with pytest.raises(PlumbError, match=r"training\.learning_rate"):
        _train(
            prepared_breast_cancer,
            preprocessed_dir,
            tmp_path / "nan",
            learning_rate=1e38,
            epochs=3,
            hidden_units=[256, 256],
        )


def test_too_few_rows_for_workers_is_rejected(
    tmp_path: Path, prepared_breast_cancer: PreparedData, preprocessed_dir: Path
) -> None:
    """More workers than the training rows can feed fail before any worker starts."""
    with pytest.raises(PlumbError, match=r"training\.workers 3"):
        train_and_export(
            tf_training(workers=3),
            train=prepared_breast_cancer.splits["train"].head(4),
            validation=prepared_breast_cancer.splits["validation"],
            preprocessor_dir=preprocessed_dir / "preprocessor",
            model_dir=tmp_path / "few",
        )


def test_gpus_asked_without_gpus_is_refused_or_falls_back(
    tmp_path: Path, prepared_breast_cancer: PreparedData, preprocessed_dir: Path
) -> None:
    """No GPU visible to TensorFlow: an error naming the fix, or a warning if allowed."""
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("checks the no-GPU path")
    with pytest.raises(PlumbError, match="finds 0 GPU.*gpu_fallback_to_cpu"):
        _train(
            prepared_breast_cancer, preprocessed_dir, tmp_path / "g", gpus_per_worker=1
        )
    assert not (tmp_path / "g").exists()
    with pytest.warns(UserWarning, match="training on the CPU instead"):
        metrics = _train(
            prepared_breast_cancer,
            preprocessed_dir,
            tmp_path / "fallback",
            gpus_per_worker=1,
            gpu_fallback_to_cpu=True,
            workers=1,
            epochs=2,
        )
    assert metrics["epochs"] == 2


def _worker_processes() -> list[int]:
    """PIDs of tf_workers processes started by this test process."""
    marker = f"--parent-pid\0{os.getpid()}\0"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_text()
        except OSError:
            continue
        if "components.train.tf_workers" in cmdline and marker in cmdline + "\0":
            found.append(int(entry.name))
    return found


def test_two_workers_train_agree_and_export(
    tmp_path: Path, prepared_breast_cancer: PreparedData, preprocessed_dir: Path
) -> None:
    """Two real TF workers on 127.0.0.1 finish in sync; the chief's export scores well."""
    model_dir = tmp_path / "two"
    metrics = _train(
        prepared_breast_cancer,
        preprocessed_dir,
        model_dir,
        workers=2,
        epochs=6,
        learning_rate=1e-2,
    )
    # All-reduce hands both replicas identical gradients; any drift would be a bug.
    assert metrics["replica_max_weight_diff"] <= 1e-6
    assert metrics["epochs"] >= 1
    assert read_json(model_dir / "metadata.json")["workers"] == 2
    assert _test_auc(model_dir, prepared_breast_cancer) > 0.95
    assert _worker_processes() == []


def test_failed_worker_stops_the_others(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    prepared_breast_cancer: PreparedData,
    preprocessed_dir: Path,
) -> None:
    """Worker 1 cannot bind its port: the error names it and no worker is left running."""
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    free = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    free.bind(("127.0.0.1", 0))
    free_port = free.getsockname()[1]
    free.close()
    monkeypatch.setattr(
        tf_workers,
        "_free_ports",
        lambda count: [free_port, taken.getsockname()[1]],
    )
    try:
        with pytest.raises(PlumbError, match="TensorFlow worker 1 failed"):
            _train(
                prepared_breast_cancer,
                preprocessed_dir,
                tmp_path / "x",
                workers=2,
                max_restarts=0,
            )
    finally:
        taken.close()
    assert _worker_processes() == []


def test_killed_worker_group_resumes_from_checkpoint(
    tmp_path: Path, prepared_breast_cancer: PreparedData, preprocessed_dir: Path
) -> None:
    """SIGKILL a TF worker after a checkpoint: the group restarts and resumes from it."""
    model_dir = tmp_path / "killed"
    training = {
        "workers": 2,
        "epochs": 30,
        "early_stopping_patience": 0,
        "checkpoint_every_epochs": 2,
        "max_restarts": 2,
        "learning_rate": 1e-2,
    }
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["metrics"] = _train(
                prepared_breast_cancer, preprocessed_dir, model_dir, **training
            )
        except Exception as err:  # noqa: BLE001 - re-raised in the test thread below
            outcome["error"] = err

    thread = threading.Thread(target=run)
    thread.start()
    # CheckpointManager writes this index file once a checkpoint is complete.
    index = model_dir / tf_workers.JOB_DIR / tf_workers.CHECKPOINT_DIR / "checkpoint"
    deadline = time.monotonic() + 240
    while not index.exists() and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.02)
    workers = _worker_processes()
    assert index.exists() and len(workers) == 2, "no checkpoint was written in time"
    os.kill(max(workers), signal.SIGKILL)
    thread.join(timeout=300)
    if thread.is_alive():
        for pid in _worker_processes():
            os.kill(pid, signal.SIGKILL)
        pytest.fail("the restarted TensorFlow workers did not finish within 300 s")
    if "error" in outcome:
        raise outcome["error"]

    metrics = outcome["metrics"]
    assert metrics["restarts"] == 1
    assert metrics["resumed_from_epoch"] >= training["checkpoint_every_epochs"]
    assert metrics["epochs"] == training["epochs"]
    assert metrics["replica_max_weight_diff"] <= 1e-6
    assert _test_auc(model_dir, prepared_breast_cancer) > 0.95
    assert not (model_dir / tf_workers.JOB_DIR).exists()
    assert _worker_processes() == []
