"""Launch local multi-worker training with `torchrun` and clean up after it.

`torchrun` (torch.distributed.run) starts `training.workers` worker processes on this
machine, rendezvousing on a free 127.0.0.1 port, and restarts the whole group up to
`training.max_restarts` times when a worker dies; the restarted workers resume from the
latest checkpoint in the run directory (see `loop.py`). torchrun runs in its own
process group, which is killed when the launch ends for any reason, so a failed or
interrupted run leaves no worker behind.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from components.common.artifacts import read_json
from components.common.config import TrainingConfig
from components.common.errors import PlumbError
from components.common.net import bind_error, free_port
from components.train.worker import ERROR_FILE, RESULT_FILE, WorkerSpec

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
_KILL_GRACE_SECONDS = 5.0
# Ask Linux to SIGKILL torchrun when the process that launched it dies (the signal
# survives exec), then become torchrun. Without it, a launcher killed with SIGKILL would
# leave torchrun and its workers running. The workers get the same guard in worker.py.
_EXEC_WITH_PARENT_DEATH_SIGNAL = (
    "import ctypes, os, signal, sys; "
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


class TrainingFailedError(RuntimeError):
    """The worker group failed for a reason other than bad input."""


def rendezvous_port(requested: int | None) -> int:
    """The port torchrun should use: the one asked for (if free) or a free one.

    Raises:
        PlumbError: The requested port is already in use.
    """
    if requested is None:
        return free_port()
    error = bind_error(LOOPBACK, requested)
    if error is not None:
        raise PlumbError(
            f"training.master_port {requested} is already in use on {LOOPBACK} "
            f"({error.strerror}); pick another port or set it to null to let plumb "
            "pick a free one"
        ) from error
    return requested


def torchrun_command(
    spec_path: str | Path, *, workers: int, port: int, max_restarts: int
) -> list[str]:
    """The torchrun command line that starts `workers` local workers."""
    return [
        sys.executable,
        "-c",
        _EXEC_WITH_PARENT_DEATH_SIGNAL,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        f"--nproc-per-node={workers}",
        # c10d rendezvous (hosted by torchrun on this port) runs a fresh round for each
        # restart; the static one can hang when a restarted group re-joins.
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={LOOPBACK}:{port}",
        f"--rdzv-id=plumb-{port}",
        f"--max-restarts={max_restarts}",
        "--monitor-interval=0.5",
        "-m",
        "components.train.worker",
        str(spec_path),
    ]


def launch_local(
    spec: WorkerSpec, *, training: TrainingConfig
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Run the worker group with torchrun and return rank 0's best weights and metrics.

    Raises:
        PlumbError: Bad input found by a worker (NaN loss, say), or the port is taken.
        TrainingFailedError: The group failed after all restarts.
    """
    run_dir = Path(spec.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in (RESULT_FILE, ERROR_FILE):
        (run_dir / stale).unlink(missing_ok=True)
    spec_path = run_dir / "spec.json"
    spec.write(spec_path)
    port = rendezvous_port(training.master_port)
    command = torchrun_command(
        spec_path,
        workers=training.workers,
        port=port,
        max_restarts=training.max_restarts,
    )
    logger.info(
        "Starting %d workers with torchrun on %s:%d (max %d restarts)",
        training.workers,
        LOOPBACK,
        port,
        training.max_restarts,
    )
    started = time.perf_counter()
    returncode = run_process_group(
        command, env=worker_env(threads=training.threads_per_worker)
    )
    if (run_dir / ERROR_FILE).is_file():
        raise PlumbError(read_json(run_dir / ERROR_FILE)["error"])
    if returncode != 0 or not (run_dir / RESULT_FILE).is_file():
        raise TrainingFailedError(
            f"torchrun exited with code {returncode} after at most "
            f"{training.max_restarts} restarts; the first failing worker's error is in "
            "the log above (torchrun's 'Root Cause' section)"
        )
    logger.info("Worker group finished in %.1f s", time.perf_counter() - started)
    payload = torch.load(run_dir / RESULT_FILE, map_location="cpu", weights_only=True)
    return payload["state_dict"], payload["metrics"]


def run_process_group(command: list[str], *, env: dict[str, str]) -> int:
    """Run a command in its own process group; kill the group however it ends."""
    process = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        return process.wait()
    finally:
        _kill_group(process)


def _kill_group(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL, every process left in the group (the workers)."""
    group = process.pid
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + _KILL_GRACE_SECONDS
        while time.monotonic() < deadline:
            if process.poll() is not None and not _group_alive(group):
                return
            time.sleep(0.05)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def worker_env(*, threads: int) -> dict[str, str]:
    """torchrun's environment: this one, with `threads` OpenMP threads per worker and
    plumb importable from this tree."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    # The workers import plumb from the same tree as this process.
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (root, env.get("PYTHONPATH", "")) if part
    )
    return env
