"""Entry point of one training worker: `python -m components.train.worker SPEC_JSON`.

`torchrun` (locally, see `launch.py`) or a cluster job (see `cluster.py`) starts one of
these per rank. The spec names the staged arrays, the run directory and the training
config. Rank 0 writes `result.pt` (best weights and metrics) into the run directory; a
bad-input error (NaN loss, say) is written to `error.json` instead and the worker exits
0, so that torchrun does not restart a run that would fail the same way again.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import record

from components.common.config import TrainingConfig
from components.common.errors import PlumbError
from components.common.logs import setup_logging
from components.train.loop import TrainingData, context_from_env, fit

logger = logging.getLogger(__name__)

RESULT_FILE = "result.pt"
ERROR_FILE = "error.json"
SPEC_FILE = "spec.json"
_PR_SET_PDEATHSIG = 1


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
        backend = "nccl" if spec.device == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
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


def _exit_with_parent() -> None:
    """Have Linux SIGKILL this worker when torchrun (its parent) dies: no orphans."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import os
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
