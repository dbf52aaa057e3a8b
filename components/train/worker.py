"""Entry point of one training worker: `python -m components.train.worker SPEC_JSON`.

`torchrun` (locally, see `launch.py`) or a cluster job (see `cluster.py`) starts one of
these per rank. The spec names the staged arrays, the run directory and the training
config. Rank 0 writes `result.pt` (best weights and metrics) into the run directory; a
bad-input error (NaN loss, say) is written to `error.json` instead and the worker exits
0, so that torchrun does not restart a run that would fail the same way again.

Each restarted worker group joins its process group under a key prefix of its own (see
`_attempt_store`): torchrun keeps one store for the whole run, and a restarted rank
that read the previous attempt's keys would dial a dead peer's port.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import record

from components.common.config import TrainingConfig
from components.common.errors import PlumbError
from components.common.logs import setup_logging
from components.train.loop import (
    TrainingData,
    WorkerContext,
    context_from_env,
    fit,
)

logger = logging.getLogger(__name__)

RESULT_FILE = "result.pt"
ERROR_FILE = "error.json"
SPEC_FILE = "spec.json"
_PR_SET_PDEATHSIG = 1
_STORE_TIMEOUT = timedelta(minutes=30)  # torch's default for gloo process groups


@dataclass
class WorkerSpec:
    """Everything a worker process needs, written as JSON by the launcher."""

    training: dict
    task: str
    data_dir: str
    run_dir: str
    device: str = "cpu"

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")

    @classmethod
    def read(cls, path: str | Path) -> WorkerSpec:
        return cls(**json.loads(Path(path).read_text(encoding="utf-8")))


def run_worker(spec: WorkerSpec) -> None:
    """Join the process group, train, and (rank 0) write the result or the error."""
    context = context_from_env(spec.device)
    if context.distributed:
        _init_process_group(
            backend="nccl" if spec.device == "cuda" else "gloo", context=context
        )
    run_dir = Path(spec.run_dir)
    try:
        result = fit(
            TrainingConfig.model_validate(spec.training),
            TrainingData.load(spec.data_dir),
            task=spec.task,
            run_dir=run_dir,
            context=context,
        )
        if context.is_main:
            partial = run_dir / (RESULT_FILE + ".partial")
            torch.save(
                {"state_dict": result.best_state, "metrics": result.metrics()}, partial
            )
            partial.replace(run_dir / RESULT_FILE)
    except PlumbError as err:
        if context.is_main:
            error = {"error": str(err), "type": type(err).__name__}
            (run_dir / ERROR_FILE).write_text(json.dumps(error), encoding="utf-8")
        logger.error("Training stopped: %s", err)
    finally:
        if context.distributed:
            dist.destroy_process_group()


def _init_process_group(*, backend: str, context: WorkerContext) -> None:
    """Join the worker group, through this attempt's own keys when torchrun's agent
    hosts the store."""
    store = _attempt_store(context)
    if store is None:
        dist.init_process_group(backend=backend)
        return
    dist.init_process_group(
        backend=backend, store=store, rank=context.rank, world_size=context.world_size
    )


def _attempt_store(context: WorkerContext) -> dist.Store | None:
    """A view of torchrun's store that only this restart attempt uses, or None.

    torchrun's agent (c10d and static rendezvous alike) hosts one TCPStore for the
    whole run and hands every attempt the same MASTER_PORT, and `env://` adds no
    per-attempt prefix under the agent store (torch 2.13). The gloo and NCCL
    bootstrap keys (each rank's listening address) are the same names in every
    attempt, so a restarted rank that reads its peer's key before the peer has
    rewritten it gets the killed attempt's address and fails with "Connection
    refused". Upstream:
    https://github.com/pytorch/pytorch/issues/135712 (the per-round store server its
    fix created is reused again in 2.13). Prefixing the keys with the restart count,
    which one torchrun agent gives all its workers, keeps attempts apart.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != str(True):
        return None
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    client = dist.TCPStore(
        host_name=os.environ["MASTER_ADDR"],
        port=int(os.environ["MASTER_PORT"]),
        world_size=context.world_size,
        is_master=False,
        timeout=_STORE_TIMEOUT,
    )
    return dist.PrefixStore(f"plumb/attempt_{attempt}", client)


def _exit_with_parent() -> None:
    """Have Linux SIGKILL this worker when torchrun (its parent) dies: no orphans."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before the guard was set
        sys.exit(1)


@record
def main(argv: list[str] | None = None) -> int:
    """Run one worker from the spec file named on the command line."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m components.train.worker SPEC_JSON\n")
        return 2
    _exit_with_parent()
    setup_logging()
    context = context_from_env("cpu")
    if context.rank != 0:
        # Rank 0 logs; the others only speak up when something goes wrong.
        for name in ("components", "plumb"):
            logging.getLogger(name).setLevel(logging.WARNING)
        for handler in logging.getLogger("components").handlers:
            handler.setFormatter(
                logging.Formatter(
                    f"%(asctime)s %(levelname)s [rank {context.rank}] %(name)s: "
                    "%(message)s",
                    datefmt="%H:%M:%S",
                )
            )
    run_worker(WorkerSpec.read(args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
