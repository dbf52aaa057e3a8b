"""Distributed PyTorch training: real gloo workers under torchrun on breast-cancer.

Two torchrun runs dominate this file's time (each starts three Python processes that
import torch): one uninterrupted run, and the same run with a worker SIGKILLed after
its first checkpoint. Everything else trains in-process or fails before launching.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from plumb_testing import quick_config

from components.common.config import PlumbConfig
from components.common.errors import ConfigError, PlumbError
from components.common.model_runtime import load_model
from components.preprocess.lib import PreparedData
from components.train.launch import (
    launch_local,
    rendezvous_port,
    run_process_group,
    torchrun_command,
    worker_env,
)
from components.train.lib import resolve_device, train_and_export
from components.train.loop import (
    NonFiniteLossError,
    ShardSampler,
    TrainingData,
    WorkerContext,
    fit,
    roc_auc,
)
from components.train.worker import WorkerSpec

WORKER_MARK = "components.train.worker"

# Long enough (40 short epochs, a checkpoint every 2) that a kill lands mid-run.
DDP_TRAINING = {
    "workers": 2,
    "epochs": 40,
    "batch_size": 16,
    "early_stopping_patience": 0,
    "checkpoint_every_epochs": 2,
    "max_restarts": 2,
}


def _train(
    config: PlumbConfig, prepared: PreparedData, preprocessed_dir: Path, model_dir: Path
) -> dict[str, float]:
    return train_and_export(
        config.training,
        train=prepared.splits["train"],
        validation=prepared.splits["validation"],
        preprocessor_dir=preprocessed_dir / "preprocessor",
        model_dir=model_dir,
    )


def _worker_processes(*, with_launcher: bool = False) -> list[psutil.Process]:
    """Workers (and torchrun, if asked) that this test process started, recursively."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            command = child.cmdline()
        except psutil.NoSuchProcess:
            continue
        # torchrun's own command line names the worker module too; skip it.
        launcher = "torch.distributed.run" in command
        if WORKER_MARK in command and (with_launcher or not launcher):
            found.append(child)
    return found


def _in_process_data(prepared: PreparedData) -> TrainingData:
    schema, transform = prepared.schema, prepared.transform
    return TrainingData(
        train_x=transform.apply(prepared.splits["train"]),
        train_y=schema.labels(prepared.splits["train"]),
        validation_x=transform.apply(prepared.splits["validation"]),
        validation_y=schema.labels(prepared.splits["validation"]),
    )


@pytest.fixture(scope="module")
def uninterrupted(
    tmp_path_factory: pytest.TempPathFactory,
    prepared_breast_cancer: PreparedData,
    preprocessed_dir: Path,
) -> tuple[dict[str, float], Path]:
    """Metrics and model directory of a 2-worker gloo run that nobody disturbs."""
    model_dir = tmp_path_factory.mktemp("ddp") / "model"
    config = quick_config(training=DDP_TRAINING)
    metrics = _train(config, prepared_breast_cancer, preprocessed_dir, model_dir)
    return metrics, model_dir


@pytest.mark.slow
@pytest.mark.integration
def test_two_gloo_workers_finish_with_agreeing_replicas(
    uninterrupted: tuple[dict[str, float], Path], prepared_breast_cancer: PreparedData
) -> None:
    """Both ranks finish, their final parameters match, and the model scores well."""
    metrics, model_dir = uninterrupted
    assert metrics["epochs"] == DDP_TRAINING["epochs"]
    # DDP all-reduces the same gradients into the same Adam steps on every rank, so the
    # replicas stay bitwise equal; 1e-6 only allows for a platform's reduction order.
    assert metrics["replica_max_abs_diff"] <= 1e-6
    assert metrics["resumed_from_epoch"] == 0
    assert metrics["validation_metric"] >= 0.97  # breast-cancer AUC is ~0.99
    assert metrics["rows_per_second"] > 0

    model = load_model(model_dir)
    test = prepared_breast_cancer.splits["test"]
    auc = roc_auc(prepared_breast_cancer.schema.labels(test), model.predict(test))
    assert auc >= 0.95
    checkpoint = torch.load(model_dir / "checkpoint.pt", weights_only=True)
    assert checkpoint["training"]["workers"] == 2
    assert {"model.onnx", "schema.json", "transform.json", "reference.parquet"} <= {
        path.name for path in model_dir.iterdir()
    }
    assert not (model_dir / "run").exists()
    assert _worker_processes(with_launcher=True) == []


@pytest.mark.slow
@pytest.mark.integration
def test_local_sgd_workers_end_identical_with_ddp_quality(
    tmp_path: Path,
    uninterrupted: tuple[dict[str, float], Path],
    prepared_breast_cancer: PreparedData,
    preprocessed_dir: Path,
) -> None:
    """Two gloo workers averaging their weights every 4 steps (local SGD) end every
    epoch with identical replicas and reach DDP's validation quality."""
    config = quick_config(training={**DDP_TRAINING, "average_every_steps": 4})
    metrics = _train(
        config, prepared_breast_cancer, preprocessed_dir, tmp_path / "model"
    )
    ddp_metrics, _ = uninterrupted
    assert metrics["epochs"] == DDP_TRAINING["epochs"]
    # Both ranks all-reduce the same halves of each other's weights after the last
    # step: the averages agree bit for bit.
    assert metrics["replica_max_abs_diff"] <= 1e-6
    assert metrics["validation_metric"] >= 0.97
    assert abs(metrics["validation_metric"] - ddp_metrics["validation_metric"]) <= 0.01
    assert metrics["validation_loss"] <= ddp_metrics["validation_loss"] + 0.05
    assert _worker_processes(with_launcher=True) == []


@pytest.mark.parametrize(
    ("rows", "replicas", "drop_last"),
    [(10, 2, False), (11, 2, False), (11, 2, True), (3, 5, False), (100, 3, True)],
)
def test_shard_sampler_tensor_matches_iteration(
    rows: int, replicas: int, drop_last: bool
) -> None:
    """epoch_indices() is exactly the DistributedSampler's own iteration, per rank and
    epoch, padding and dropping included."""
    for rank in range(replicas):
        for shuffle in (True, False):
            sampler = ShardSampler(
                range(rows),  # type: ignore[arg-type]
                num_replicas=replicas,
                rank=rank,
                shuffle=shuffle,
                seed=3,
                drop_last=drop_last,
            )
            for epoch in (0, 1, 7):
                sampler.set_epoch(epoch)
                assert sampler.epoch_indices().tolist() == list(iter(sampler))


@pytest.mark.slow
@pytest.mark.integration
def test_killed_worker_resumes_from_checkpoint_with_same_quality(
    tmp_path: Path,
    uninterrupted: tuple[dict[str, float], Path],
    prepared_breast_cancer: PreparedData,
    preprocessed_dir: Path,
) -> None:
    """SIGKILL one worker after a checkpoint: torchrun restarts, the run matches."""
    model_dir = tmp_path / "model"
    config = quick_config(training=DDP_TRAINING)
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["metrics"] = _train(
                config, prepared_breast_cancer, preprocessed_dir, model_dir
            )
        except Exception as err:  # noqa: BLE001 - re-raised in the test thread below
            outcome["error"] = err

    thread = threading.Thread(target=run)
    thread.start()
    checkpoint = model_dir / "run" / "checkpoints" / "latest.pt"
    deadline = time.monotonic() + 240
    while not checkpoint.exists() and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.02)
    workers = _worker_processes()
    assert checkpoint.exists() and workers, "no checkpoint was written in time"
    workers[-1].send_signal(signal.SIGKILL)
    thread.join(timeout=300)
    if thread.is_alive():
        for process in _worker_processes(with_launcher=True):
            process.kill()
        pytest.fail("the restarted worker group did not finish within 300 s")
    if "error" in outcome:
        raise outcome["error"]

    metrics, reference = outcome["metrics"], uninterrupted[0]
    assert metrics["resumed_from_epoch"] >= config.training.checkpoint_every_epochs
    assert metrics["epochs"] == reference["epochs"]
    # Random streams depend only on (seed, epoch, rank) and the checkpoint carries Adam's
    # state, so the resumed run retraces the uninterrupted one; 1e-6 absorbs float noise.
    assert metrics["validation_loss"] == pytest.approx(
        reference["validation_loss"], abs=1e-6
    )
    assert metrics["validation_metric"] == pytest.approx(
        reference["validation_metric"], abs=1e-6
    )
    assert metrics["replica_max_abs_diff"] <= 1e-6
    assert _worker_processes(with_launcher=True) == []


# A torchrun entry point. Attempt 0 joins the group, then rank 1 fails. In attempt 1,
# rank 1 joins late, so rank 0 reads rank 1's bootstrap key while it still holds the
# dead attempt's address; with one key space for all attempts rank 0 dials that port
# and gets "Connection refused" (the failure the killed-worker test used to hit).
_RESTART_PROBE = """
import os, sys, time
import torch.distributed as dist
from components.train.loop import context_from_env
from components.train.worker import _init_process_group

context = context_from_env("cpu")
attempt = int(os.environ["TORCHELASTIC_RESTART_COUNT"])
if attempt == 1 and context.rank == 1:
    time.sleep(6)
_init_process_group(backend="gloo", context=context)
dist.barrier()
open(os.path.join(sys.argv[1], f"joined_{attempt}_{context.rank}"), "w").close()
if attempt == 0 and context.rank == 1:
    sys.exit(1)
dist.destroy_process_group()
"""


@pytest.mark.slow
@pytest.mark.integration
def test_restarted_group_does_not_read_the_previous_attempts_keys(
    tmp_path: Path,
) -> None:
    """A restarted worker group joins through fresh keys, whatever the join order."""
    script = tmp_path / "probe.py"
    script.write_text(_RESTART_PROBE, encoding="utf-8")
    command = torchrun_command(
        tmp_path / "spec.json", workers=2, port=rendezvous_port(None), max_restarts=1
    )
    # Same launch as training, with the probe in place of `-m worker SPEC`.
    command[-3:] = [str(script), str(tmp_path)]
    done = subprocess.run(
        command,
        env=worker_env(threads=1),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Connection refused" not in done.stderr
    joined = {path.name for path in tmp_path.glob("joined_*")}
    assert joined == {"joined_0_0", "joined_0_1", "joined_1_0", "joined_1_1"}


def test_seeded_cpu_runs_are_reproducible(
    tmp_path: Path, prepared_breast_cancer: PreparedData
) -> None:
    """Two in-process runs with one seed give identical weights."""
    training = quick_config(
        training={"workers": 1, "epochs": 3, "batch_norm": True}
    ).training
    data = _in_process_data(prepared_breast_cancer)
    runs = [
        fit(
            training,
            data,
            task="binary",
            run_dir=tmp_path / str(i),
            context=WorkerContext(),
        )
        for i in range(2)
    ]
    for name, tensor in runs[0].best_state.items():
        assert torch.equal(tensor, runs[1].best_state[name]), name
    assert any("running_mean" in name for name in runs[0].best_state)


def test_nan_loss_stops_with_likely_cause(
    tmp_path: Path, prepared_breast_cancer: PreparedData
) -> None:
    """A NaN in the features makes the loss NaN; the error names the likely causes."""
    data = _in_process_data(prepared_breast_cancer)
    data.train_x = data.train_x.copy()
    data.train_x[0, 0] = np.nan
    training = quick_config(training={"workers": 1, "epochs": 2}).training
    with pytest.raises(NonFiniteLossError, match="learning_rate=.*NaN in"):
        fit(training, data, task="binary", run_dir=tmp_path, context=WorkerContext())


@pytest.mark.slow
@pytest.mark.integration
def test_nan_loss_under_torchrun_fails_once_and_leaves_no_worker(
    tmp_path: Path,
    prepared_breast_cancer: PreparedData,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A worker's NaN loss ends the group without restarts; the cause reaches the caller."""
    data = _in_process_data(prepared_breast_cancer)
    data.train_x = data.train_x.copy()
    data.train_x[:, 0] = np.nan
    data.save(tmp_path / "data")
    training = quick_config(training={**DDP_TRAINING, "epochs": 3}).training
    spec = WorkerSpec(
        training=training.model_dump(),
        task="binary",
        data_dir=str(tmp_path / "data"),
        run_dir=str(tmp_path / "run"),
    )
    with pytest.raises(PlumbError, match="loss became nan in epoch 1.*NaN in"):
        launch_local(spec, training=training)
    # Bad input is not retried: each of the 2 ranks stopped once, in one attempt.
    assert capfd.readouterr().err.count("Training stopped: training loss became") == 2
    assert _worker_processes(with_launcher=True) == []


def test_workers_below_one_is_rejected() -> None:
    """training.workers=0 fails at config load with the value received."""
    with pytest.raises(ConfigError, match=r"training.workers.*got 0"):
        PlumbConfig.from_json('{"training": {"workers": 0}}')


def test_dataset_too_small_for_workers(
    tmp_path: Path, prepared_breast_cancer: PreparedData, preprocessed_dir: Path
) -> None:
    """Three training rows for two workers fail before any process starts."""
    config = quick_config(training={"workers": 2})
    small = prepared_breast_cancer.splits["train"].head(3)
    with pytest.raises(PlumbError, match="has 3 rows, too few for training.workers=2"):
        train_and_export(
            config.training,
            train=small,
            validation=prepared_breast_cancer.splits["validation"],
            preprocessor_dir=preprocessed_dir / "preprocessor",
            model_dir=tmp_path / "model",
        )


def test_port_in_use_is_refused() -> None:
    """A master_port someone listens on is refused with the port named."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PlumbError, match=f"master_port {port} is already in use"):
            rendezvous_port(port)
    assert rendezvous_port(None) > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU paths")
def test_gpus_asked_without_gpus() -> None:
    """GPUs asked for on a CPU machine: an error, or CPU with a warning if allowed."""
    training = quick_config(training={"gpus_per_worker": 1}).training
    with pytest.raises(PlumbError, match="found 0.*gpu_fallback_to_cpu"):
        resolve_device(training)
    fallback = training.model_copy(update={"gpu_fallback_to_cpu": True})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert resolve_device(fallback) == "cpu"
    assert any("training on the CPU instead" in str(w.message) for w in caught)


def test_torchrun_dies_with_its_launcher(tmp_path: Path) -> None:
    """The launch command makes Linux kill torchrun when the launcher dies."""
    from components.train.launch import torchrun_command

    command = torchrun_command(
        tmp_path / "spec.json", workers=2, port=1, max_restarts=0
    )
    # Same prefix, but `sleep` in place of torchrun: its parent (sh) exits at once.
    prefix = command[: command.index("-m")]
    pid_file = tmp_path / "pid"
    script = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
    script += "time.sleep(120)"
    launcher = subprocess.Popen(
        [
            "sh",
            "-c",
            " ".join([*map(shlex.quote, prefix), "-c", shlex.quote(script)])
            + " & sleep 3",
        ],
    )
    launcher.wait(timeout=60)
    deadline = time.monotonic() + 30
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_failed_group_leaves_no_orphans(tmp_path: Path) -> None:
    """A launcher that dies leaves no child behind: the whole group is killed."""
    pid_file = tmp_path / "child.pid"
    command = ["sh", "-c", f"sleep 120 & echo $! > {pid_file}; exit 3"]
    assert run_process_group(command, env=dict(os.environ)) == 3
    orphan = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while psutil.pid_exists(orphan) and time.monotonic() < deadline:
        try:
            if psutil.Process(orphan).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    alive = psutil.pid_exists(orphan) and (
        psutil.Process(orphan).status() != psutil.STATUS_ZOMBIE
    )
    assert not alive


def test_roc_auc_matches_definition() -> None:
    """The workers' AUC equals the pairwise definition, ties counted half."""
    labels = np.array([0, 0, 1, 1, 0, 1], dtype=np.float32)
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.4])
    pairs = [
        1.0 if p > n else 0.5 if p == n else 0.0
        for p in scores[labels == 1]
        for n in scores[labels == 0]
    ]
    assert roc_auc(labels, scores) == pytest.approx(np.mean(pairs), abs=1e-12)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_training(
    tmp_path: Path, prepared_breast_cancer: PreparedData
) -> None:
    """On a GPU the loop trains under bf16 autocast and still scores well."""
    training = quick_config(training={"workers": 1, "gpus_per_worker": 1}).training
    context = WorkerContext(device=torch.device("cuda", 0))
    result = fit(
        training,
        _in_process_data(prepared_breast_cancer),
        task="binary",
        run_dir=tmp_path,
        context=context,
    )
    assert result.best_validation_metric >= 0.97


@pytest.mark.gpu
@pytest.mark.skipif(
    torch.cuda.device_count() < 2,
    reason="needs two CUDA devices for NCCL",  # noqa: PLR2004
)
def test_two_nccl_workers(
    tmp_path: Path, prepared_breast_cancer: PreparedData, preprocessed_dir: Path
) -> None:
    """Two NCCL workers on two GPUs finish with agreeing replicas."""
    config = quick_config(training={**DDP_TRAINING, "gpus_per_worker": 1})
    metrics = _train(config, prepared_breast_cancer, preprocessed_dir, tmp_path / "m")
    assert metrics["replica_max_abs_diff"] <= 1e-3  # bf16 autocast, same reductions
    assert metrics["validation_metric"] >= 0.97
