"""Multi-worker TensorFlow training: one process per worker, locally or in TFJob pods.

`run_workers` (the launcher, which never imports TensorFlow) writes the training arrays
and settings to a job folder (`stage_job`), picks free ports, and starts
`training.workers` copies of this module with a `TF_CONFIG` naming all of them. In a
TFJob (`cluster.py`) the operator starts the same module in each pod with its own
`TF_CONFIG`, on a job folder on the shared volume. Each worker builds a
`tf.distribute.MultiWorkerMirroredStrategy`, trains with `tf_fit.fit_network`
(checkpointing into the job folder every `training.checkpoint_every_epochs` epochs),
and writes its final weights; the chief (worker 0) also exports the model.

If a worker dies, the launcher stops the others and starts the whole group again, up to
`training.max_restarts` times (as `torchrun` does for PyTorch); the new group resumes
from the latest checkpoint. A worker that reports bad input (a NaN loss, say) is not
restarted: the launcher raises its reason. A worker whose launcher disappears exits by
itself, so no process is left behind.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import numpy as np

from components.common.artifacts import read_json, write_json
from components.common.config import TrainingConfig
from components.common.errors import PlumbError
from components.train.tf_train import TrainingArrays

logger = logging.getLogger(__name__)

ARRAYS_FILE = "arrays.npz"
CONFIG_FILE = "training.json"
METRICS_FILE = "metrics.json"
ERROR_FILE = "error-{rank}.json"
WEIGHTS_FILE = "weights-{rank}.npz"
CHECKPOINT_DIR = "checkpoints"
JOB_DIR = "run"
"""The job folder's name inside the model directory (removed once the model is out)."""
LOG_TAIL_LINES = 40
POLL_SECONDS = 0.2
STOP_GRACE_SECONDS = 5.0
PARENT_CHECK_SECONDS = 1.0
WORKER_LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
PLUMB_LOG_PREFIXES = ("components.", "plumb.", "pipelines.")
WORKER_MODULE = "components.train.tf_workers"


def run_workers(
    config: TrainingConfig,
    *,
    arrays: TrainingArrays,
    task: str,
    model_dir: Path,
) -> dict[str, float]:
    """Train with `config.workers` local processes; the chief exports to `model_dir`.

    Returns:
        The chief's metrics plus `replica_max_weight_diff`, the largest absolute
        difference between any worker's final weights and the chief's (0 when the
        replicas stayed in sync), and `restarts`, how often the group was restarted.

    Raises:
        PlumbError: A worker reported bad input, or workers kept failing after
            `config.max_restarts` restarts; the message carries the reason.
    """
    job_dir = model_dir / JOB_DIR
    stage_job(config, arrays=arrays, task=task, job_dir=job_dir, model_dir=model_dir)
    started = time.perf_counter()
    restarts = 0
    while True:
        failure = _run_group(config, job_dir=job_dir)
        if failure is None:
            break
        error, reported = failure
        if reported or restarts >= config.max_restarts:
            raise error
        restarts += 1
        logger.warning(
            "%s; restarting the %d workers from the latest checkpoint (restart %d of "
            "at most %d)",
            str(error).splitlines()[0],
            config.workers,
            restarts,
            config.max_restarts,
        )
    metrics = read_json(job_dir / METRICS_FILE)
    metrics["replica_max_weight_diff"] = replica_weight_diff(
        job_dir, workers=config.workers
    )
    metrics["restarts"] = restarts
    shutil.rmtree(job_dir, ignore_errors=True)
    logger.info(
        "%d workers finished in %.1f s (%d restarts); replicas differ by at most %.3g",
        config.workers,
        time.perf_counter() - started,
        restarts,
        metrics["replica_max_weight_diff"],
    )
    return {name: float(value) for name, value in metrics.items()}


def stage_job(
    config: TrainingConfig,
    *,
    arrays: TrainingArrays,
    task: str,
    job_dir: Path,
    model_dir: Path,
) -> None:
    """Write what every worker reads: the arrays and the settings (where the chief
    exports the model, too). Leaves checkpoints of an earlier attempt in place."""
    job_dir.mkdir(parents=True, exist_ok=True)
    for stale in job_dir.glob("error-*.json"):
        stale.unlink()
    arrays.save(job_dir / ARRAYS_FILE)
    write_json(
        job_dir / CONFIG_FILE,
        {"training": config.model_dump(), "task": task, "model_dir": str(model_dir)},
    )


def _run_group(
    config: TrainingConfig, *, job_dir: Path
) -> tuple[PlumbError, bool] | None:
    """Run one attempt of the worker group: None on success, else (error, whether a
    worker reported it as bad input)."""
    addresses = [f"127.0.0.1:{port}" for port in _free_ports(config.workers)]
    logger.info(
        "Starting %d TensorFlow workers on %s", config.workers, ", ".join(addresses)
    )
    workers: list[_Worker] = []
    try:
        for rank in range(config.workers):
            workers.append(
                _Worker.start(rank=rank, addresses=addresses, job_dir=job_dir)
            )
        return _wait_for(workers, job_dir=job_dir)
    finally:
        for worker in workers:
            worker.stop()


def _free_ports(count: int) -> list[int]:
    # Hold every socket until all ports are known, so the same port is not picked twice;
    # another program may still take one before the worker binds it, and that worker
    # then fails with "address already in use", which the launcher reports.
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class _Worker:
    """One worker process and the tail of its output."""

    def __init__(self, rank: int, process: subprocess.Popen[str]) -> None:
        self.rank = rank
        self.process = process
        self.tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self.reader = threading.Thread(
            target=self._read_output, name=f"tf-worker-{rank}-log", daemon=True
        )
        self.reader.start()

    @classmethod
    def start(cls, *, rank: int, addresses: list[str], job_dir: Path) -> _Worker:
        tf_config = {
            "cluster": {"worker": addresses},
            "task": {"type": "worker", "index": rank},
        }
        env = {
            **os.environ,
            "TF_CONFIG": json.dumps(tf_config),
            "TF_USE_LEGACY_KERAS": "1",
            "PYTHONUNBUFFERED": "1",
            "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
        }
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                WORKER_MODULE,
                "--job-dir",
                str(job_dir),
                "--rank",
                str(rank),
                "--parent-pid",
                str(os.getpid()),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        return cls(rank, process)

    def _read_output(self) -> None:
        stream: IO[str] | None = self.process.stdout
        if stream is None:
            return
        for line in stream:
            text = line.rstrip()
            self.tail.append(text)
            level_name, _, rest = text.partition(" ")
            level = logging.getLevelName(level_name)
            is_plumb = rest.startswith(PLUMB_LOG_PREFIXES)
            if isinstance(level, int) and is_plumb and (self.rank == 0 or level >= 30):
                logger.log(level, "worker %d | %s", self.rank, rest)
            else:
                logger.debug("worker %d | %s", self.rank, text)

    def stop(self) -> None:
        """End the process if it still runs: SIGTERM, then SIGKILL after a grace period."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.reader.join(timeout=STOP_GRACE_SECONDS)
        if self.process.stdout is not None:
            self.process.stdout.close()


def _wait_for(
    workers: list[_Worker], *, job_dir: Path
) -> tuple[PlumbError, bool] | None:
    while True:
        codes = [worker.process.poll() for worker in workers]
        failed = [w for w, code in zip(workers, codes, strict=True) if code]
        if failed:
            return _failure(failed, job_dir=job_dir)
        if all(code == 0 for code in codes):
            return None
        time.sleep(POLL_SECONDS)


def _failure(failed: list[_Worker], *, job_dir: Path) -> tuple[PlumbError, bool]:
    # Prefer a worker that reported a plumb error (a NaN loss, say) over one that
    # crashed because its peer went away.
    for worker in failed:
        error_file = job_dir / ERROR_FILE.format(rank=worker.rank)
        if error_file.is_file():
            return PlumbError(read_json(error_file)["message"]), True
    worker = failed[0]
    worker.reader.join(timeout=STOP_GRACE_SECONDS)
    tail = "\n".join(worker.tail) or "(no output)"
    error = PlumbError(
        f"TensorFlow worker {worker.rank} failed with exit code "
        f"{worker.process.returncode}; the other workers were stopped. Its last "
        f"output:\n{tail}"
    )
    return error, False


def replica_weight_diff(job_dir: Path, *, workers: int) -> float:
    """Largest absolute difference between any worker's final weights and the chief's."""
    chief = np.load(job_dir / WEIGHTS_FILE.format(rank=0))
    largest = 0.0
    for rank in range(1, workers):
        other = np.load(job_dir / WEIGHTS_FILE.format(rank=rank))
        for name in chief.files:
            diff = np.max(np.abs(chief[name] - other[name]), initial=0.0)
            largest = max(largest, float(diff))
    return largest


# The worker side: `python -m components.train.tf_workers --job-dir D [--rank N]`.


def worker_command(job_dir: str | Path) -> list[str]:
    """The command of one worker (TFJob pods; the local launcher adds `--rank` and
    `--parent-pid`): its rank comes from `TF_CONFIG`."""
    return ["python", "-m", WORKER_MODULE, "--job-dir", str(job_dir)]


def worker_main(argv: list[str] | None = None) -> int:
    """Run one worker of a multi-worker job; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--job-dir", type=Path, required=True)
    parser.add_argument(
        "--rank", type=int, default=None, help="default: TF_CONFIG's task index"
    )
    parser.add_argument(
        "--parent-pid", type=int, default=None, help="exit when this process is gone"
    )
    args = parser.parse_args(argv)
    rank = _task_index() if args.rank is None else args.rank
    _configure_worker_logging()
    if args.parent_pid is not None:
        _exit_with_parent(args.parent_pid)
    try:
        _train_as_worker(args.job_dir, rank=rank)
    except PlumbError as err:
        write_json(args.job_dir / ERROR_FILE.format(rank=rank), {"message": str(err)})
        logger.error("%s", err)
        # Exit 0 in a TFJob pod: the operator would restart a worker that failed with
        # bad input, and it would fail the same way; the component reads the error file.
        return 3 if args.parent_pid is not None else 0
    return 0


def _task_index() -> int:
    """This worker's index in `TF_CONFIG` (set by the TFJob operator)."""
    try:
        return int(json.loads(os.environ["TF_CONFIG"])["task"]["index"])
    except (KeyError, ValueError, TypeError) as err:
        raise SystemExit(
            f"TF_CONFIG has no task index ({err!r}); pass --rank or run under a TFJob"
        ) from err


def _train_as_worker(job_dir: Path, *, rank: int) -> None:
    # MultiWorkerMirroredStrategy must exist before any other TensorFlow op runs (the
    # thread pools are set just before it).
    import tensorflow as tf

    from components.train.tf_fit import export_network, fit_network, use_threads

    spec = read_json(job_dir / CONFIG_FILE)
    config = TrainingConfig.model_validate(spec["training"])
    use_threads(config.threads_per_worker)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    arrays = TrainingArrays.load(job_dir / ARRAYS_FILE)
    result = fit_network(
        config,
        arrays=arrays,
        task=spec["task"],
        strategy=strategy,
        is_chief=rank == 0,
        rank=rank,
        checkpoint_dir=job_dir / CHECKPOINT_DIR,
    )
    np.savez(job_dir / WEIGHTS_FILE.format(rank=rank), *result.weights)
    if rank == 0:
        Path(spec["model_dir"]).mkdir(parents=True, exist_ok=True)
        export_network(
            config, result=result, task=spec["task"], model_dir=Path(spec["model_dir"])
        )
        write_json(job_dir / METRICS_FILE, result.metrics())


def _configure_worker_logging() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(WORKER_LOG_FORMAT))
    level = os.environ.get("PLUMB_LOG_LEVEL", "INFO").upper()
    for name in ("components", "plumb"):
        package_logger = logging.getLogger(name)
        package_logger.handlers[:] = [handler]
        package_logger.setLevel(level)
        package_logger.propagate = False


def _exit_with_parent(parent_pid: int) -> None:
    # A worker whose launcher was killed would wait in a collective op forever.
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(4)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


if __name__ == "__main__":
    sys.exit(worker_main())
