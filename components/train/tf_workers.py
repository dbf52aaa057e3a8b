"""Local multi-worker TensorFlow training: one process per worker on 127.0.0.1.

`run_workers` (the launcher, which never imports TensorFlow) writes the training arrays
to a job folder, picks free ports, and starts `training.workers` copies of this module
with a `TF_CONFIG` naming all of them. Each worker builds a
`tf.distribute.MultiWorkerMirroredStrategy`, trains with `tf_fit.fit_network`, and
writes its final weights; the chief (worker 0) also exports the model. If any worker
fails, the launcher stops the others and raises the first failing worker's reason. A
worker whose launcher disappears exits by itself, so no process is left behind.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
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
LOG_TAIL_LINES = 40
POLL_SECONDS = 0.2
STOP_GRACE_SECONDS = 5.0
PARENT_CHECK_SECONDS = 1.0
WORKER_LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
PLUMB_LOG_PREFIXES = ("components.", "plumb.", "pipelines.")


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
        replicas stayed in sync).

    Raises:
        PlumbError: A worker failed; the message carries its reason.
    """
    with tempfile.TemporaryDirectory(prefix="plumb-tf-workers-") as job:
        job_dir = Path(job)
        arrays.save(job_dir / ARRAYS_FILE)
        write_json(
            job_dir / CONFIG_FILE,
            {
                "training": config.model_dump(),
                "task": task,
                "model_dir": str(model_dir),
            },
        )
        addresses = [f"127.0.0.1:{port}" for port in _free_ports(config.workers)]
        logger.info(
            "Starting %d TensorFlow workers on %s", config.workers, ", ".join(addresses)
        )
        started = time.perf_counter()
        workers: list[_Worker] = []
        try:
            for rank in range(config.workers):
                workers.append(
                    _Worker.start(rank=rank, addresses=addresses, job_dir=job_dir)
                )
            _wait_for(workers, job_dir=job_dir)
        finally:
            for worker in workers:
                worker.stop()
        metrics = read_json(job_dir / METRICS_FILE)
        metrics["replica_max_weight_diff"] = _replica_weight_diff(
            job_dir, workers=config.workers
        )
    logger.info(
        "%d workers finished in %.1f s; replicas differ by at most %.3g",
        config.workers,
        time.perf_counter() - started,
        metrics["replica_max_weight_diff"],
    )
    return {name: float(value) for name, value in metrics.items()}


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
                "components.train.tf_workers",
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


def _wait_for(workers: list[_Worker], *, job_dir: Path) -> None:
    while True:
        codes = [worker.process.poll() for worker in workers]
        failed = [w for w, code in zip(workers, codes, strict=True) if code]
        if failed:
            raise _failure(failed, job_dir=job_dir)
        if all(code == 0 for code in codes):
            return
        time.sleep(POLL_SECONDS)


def _failure(failed: list[_Worker], *, job_dir: Path) -> PlumbError:
    # Prefer a worker that reported a plumb error (a NaN loss, say) over one that
    # crashed because its peer went away.
    for worker in failed:
        error_file = job_dir / ERROR_FILE.format(rank=worker.rank)
        if error_file.is_file():
            return PlumbError(read_json(error_file)["message"])
    worker = failed[0]
    worker.reader.join(timeout=STOP_GRACE_SECONDS)
    tail = "\n".join(worker.tail) or "(no output)"
    return PlumbError(
        f"TensorFlow worker {worker.rank} failed with exit code "
        f"{worker.process.returncode}; the other workers were stopped. Its last "
        f"output:\n{tail}"
    )


def _replica_weight_diff(job_dir: Path, *, workers: int) -> float:
    chief = np.load(job_dir / WEIGHTS_FILE.format(rank=0))
    largest = 0.0
    for rank in range(1, workers):
        other = np.load(job_dir / WEIGHTS_FILE.format(rank=rank))
        for name in chief.files:
            diff = np.max(np.abs(chief[name] - other[name]), initial=0.0)
            largest = max(largest, float(diff))
    return largest


# The worker side: `python -m components.train.tf_workers --job-dir D --rank N`.


def worker_main(argv: list[str] | None = None) -> int:
    """Run one worker of a local multi-worker job; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--job-dir", type=Path, required=True)
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    args = parser.parse_args(argv)
    _configure_worker_logging()
    _exit_with_parent(args.parent_pid)
    try:
        _train_as_worker(args.job_dir, rank=args.rank)
    except PlumbError as err:
        write_json(
            args.job_dir / ERROR_FILE.format(rank=args.rank), {"message": str(err)}
        )
        logger.error("%s", err)
        return 3
    return 0


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
    )
    np.savez(job_dir / WEIGHTS_FILE.format(rank=rank), *result.weights)
    if rank == 0:
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
