"""Benchmark plumb's PyTorch training on `flights`: workers and loop overhead.

Run: `python -m bench.training [--quick]`. Prints, measured side by side in one run:
- rows/s of plumb's loop with 1 and with 2 torchrun workers (gloo on the CPU; timed
  inside rank 0, so process start-up is excluded but printed separately), the 2 workers
  kept in step either by DDP (a gradient all-reduce every step) or by local SGD
  (weights averaged every `LOCAL_SGD_STEPS` steps), each run's best validation loss,
  and the ratios (goal: 2 workers >= 1.6x one worker on 2 cores);
- rows/s of plumb's loop in one process against a plain single-process torch loop
  (same network, data, batch size, epochs and one intra-op thread each), and plumb's
  overhead (goal: <= 10%). Plumb's figure includes what its loop does beyond the plain
  one: the per-epoch validation pass, the checkpoint and the sampler.
`run()` returns the same figures as a dict (the ratios are `two_vs_one_workers` and
`plumb_overhead`), with the load average before and after, for a harness to collect.
On a shared machine the workers ratio is bounded by what 2 processes get at all: the
benchmark also measures 2 independent one-thread matmul processes against 1
(`parallel_ceiling_*`, about 2.0 on 2 idle cores) before and after.
`--quick` (development, rough figures) uses 80,000 rows and a 1 s ceiling probe, run
before only (full mode: 5 s, before and after).
"""

from __future__ import annotations

import argparse
import logging
import math
import multiprocessing
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from components.common.config import PlumbConfig, TrainingConfig
from components.common.logs import setup_logging
from components.preprocess.lib import prepare
from components.train.launch import launch_local
from components.train.loop import TrainingData, WorkerContext, fit
from components.train.torch_model import build_network
from components.train.worker import WorkerSpec

logger = logging.getLogger("bench.training")

# Local SGD's averaging period in the 2-worker comparison: about 3 averages per epoch
# on flights (50 steps per worker), the setting docs/training.md recommends on CPUs.
LOCAL_SGD_STEPS = 16


def load_flights(max_rows: int | None) -> TrainingData:
    """Transformed train/validation arrays of the flights dataset."""
    config = PlumbConfig.model_validate(
        {"data": {"dataset": "flights", "max_rows": max_rows}}
    )
    prepared = prepare(config)
    schema, transform = prepared.schema, prepared.transform
    train, validation = prepared.splits["train"], prepared.splits["validation"]
    return TrainingData(
        train_x=transform.apply(train),
        train_y=schema.labels(train),
        validation_x=transform.apply(validation),
        validation_y=schema.labels(validation),
    )


def plain_loop_rows_per_second(training: TrainingConfig, data: TrainingData) -> float:
    """The textbook loop: shuffle, batch, forward, BCE, backward, Adam; nothing else."""
    torch.manual_seed(training.seed)
    network = build_network(
        input_width=data.train_x.shape[1],
        model=training.model,
        hidden_units=training.hidden_units,
        dropout=training.dropout,
    )
    optimizer = torch.optim.Adam(network.parameters(), lr=training.learning_rate)
    loss_fn = nn.BCEWithLogitsLoss()
    features = torch.from_numpy(data.train_x)
    labels = torch.from_numpy(data.train_y)
    started = time.perf_counter()
    for _ in range(training.epochs):
        network.train()
        order = torch.randperm(len(features))
        for batch in torch.split(order, training.batch_size_for(len(features))):
            optimizer.zero_grad()
            loss = loss_fn(network(features[batch]).squeeze(-1), labels[batch])
            loss.backward()
            optimizer.step()
    seconds = time.perf_counter() - started
    return training.epochs * len(features) / seconds


def plumb_in_process_rows_per_second(
    training: TrainingConfig, data: TrainingData, run_dir: Path
) -> float:
    """plumb's loop in this process (one worker), timed around the call."""
    started = time.perf_counter()
    result = fit(
        training, data, task="binary", run_dir=run_dir, context=WorkerContext()
    )
    seconds = time.perf_counter() - started
    return result.epochs_run * len(data.train_x) / seconds


def plumb_torchrun(
    training: TrainingConfig, data: TrainingData, run_dir: Path
) -> tuple[float, float, float]:
    """plumb's loop under torchrun: (rows/s inside rank 0, wall seconds with start-up,
    best validation loss)."""
    data_dir = run_dir / "data"
    data.save(data_dir)
    spec = WorkerSpec(
        training=training.model_dump(),
        task="binary",
        data_dir=str(data_dir),
        run_dir=str(run_dir),
    )
    started = time.perf_counter()
    _, metrics = launch_local(spec, training=training)
    wall = time.perf_counter() - started
    return metrics["rows_per_second"], wall, metrics["validation_loss"]


def run(*, quick: bool = False) -> dict[str, float]:
    """Measure the five loops side by side; return the figures and their ratios.

    Returns:
        `two_vs_one_workers` (local SGD, goal >= 1.6), `two_vs_one_workers_ddp`,
        `plumb_overhead` (plain / plumb - 1, goal <= 0.10), the five rows/s figures
        (medians of alternated runs, full mode), the torchrun wall seconds, and the 1-minute
        load average before and after the measurements (the machine may be shared).
    """
    max_rows, epochs = (80_000, 3) if quick else (None, 6)
    rounds, worker_rounds = (1, 1) if quick else (3, 2)
    # Each probe spawns fresh processes that import torch: seconds before it starts.
    ceiling_seconds = 1.0 if quick else 5.0
    data = load_flights(max_rows)
    training = TrainingConfig(
        epochs=epochs, early_stopping_patience=0, workers=1, seed=7
    )
    load_before = os.getloadavg()[0]
    ceiling_before = parallel_ceiling(ceiling_seconds)
    # Both single-process loops get one intra-op thread, like each torchrun worker.
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # Warm-up (first Adam imports torch._dynamo, first passes allocate): one epoch
        # of each in-process loop before anything is timed.
        warm_up = training.model_copy(update={"epochs": 1})
        plain_loop_rows_per_second(warm_up, data)
        plumb_in_process_rows_per_second(warm_up, data, root / "warm-up")
        # Alternate the measured runs and keep medians: one run takes seconds, and a
        # neighbour's burst on a shared machine would otherwise decide a ratio.
        plains, plumbs = [], []
        for index in range(rounds):
            plains.append(plain_loop_rows_per_second(training, data))
            plumbs.append(
                plumb_in_process_rows_per_second(training, data, root / f"in-{index}")
            )
        runs: dict[str, list[tuple[float, float, float]]] = {
            "one": [],
            "two": [],
            "local": [],
        }
        variants = {
            "one": training,
            "two": training.model_copy(update={"workers": 2}),
            "local": training.model_copy(
                update={"workers": 2, "average_every_steps": LOCAL_SGD_STEPS}
            ),
        }
        for index in range(worker_rounds):
            for name, variant in variants.items():
                runs[name].append(
                    plumb_torchrun(variant, data, root / f"{name}-{index}")
                )
    plain, plumb = statistics.median(plains), statistics.median(plumbs)
    one, one_wall, one_loss = _medians(runs["one"])
    two, two_wall, two_loss = _medians(runs["two"])
    local, local_wall, local_loss = _medians(runs["local"])
    return {
        "training_rows": float(len(data.train_x)),
        "epochs": float(epochs),
        "batch_size": float(training.batch_size_for(len(data.train_x))),
        "plain_rows_per_second": plain,
        "plumb_rows_per_second": plumb,
        "one_worker_rows_per_second": one,
        "two_workers_rows_per_second": two,
        "two_workers_local_sgd_rows_per_second": local,
        "one_worker_wall_seconds": one_wall,
        "two_workers_wall_seconds": two_wall,
        "two_workers_local_sgd_wall_seconds": local_wall,
        "one_worker_validation_loss": one_loss,
        "two_workers_validation_loss": two_loss,
        "two_workers_local_sgd_validation_loss": local_loss,
        "two_vs_one_workers": local / one,
        "two_vs_one_workers_ddp": two / one,
        "plumb_overhead": plain / plumb - 1 if plumb > 0 else math.inf,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
        "parallel_ceiling_before": ceiling_before,
        # Quick mode skips the second probe: NaN, printed as "not measured".
        "parallel_ceiling_after": (
            math.nan if quick else parallel_ceiling(ceiling_seconds)
        ),
    }


def _medians(runs: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    """The median of each position over the runs' tuples."""
    first, second, third = (
        statistics.median(values) for values in zip(*runs, strict=True)
    )
    return first, second, third


def report(figures: dict[str, float]) -> str:
    """The printed table of `run`'s figures."""
    rows = figures["training_rows"]
    return "\n".join(
        [
            f"flights: {rows:,.0f} training rows x {figures['epochs']:.0f} epochs, "
            f"batch {figures['batch_size']:.0f} per worker",
            f"plain torch loop, 1 process      "
            f"{figures['plain_rows_per_second']:>12,.0f} rows/s",
            f"plumb loop, in-process           "
            f"{figures['plumb_rows_per_second']:>12,.0f} rows/s",
            f"plumb, torchrun 1 worker         "
            f"{figures['one_worker_rows_per_second']:>12,.0f} rows/s  "
            f"({figures['one_worker_wall_seconds']:.1f} s wall, best val loss "
            f"{figures['one_worker_validation_loss']:.4f})",
            f"plumb, torchrun 2 workers, DDP   "
            f"{figures['two_workers_rows_per_second']:>12,.0f} rows/s  "
            f"({figures['two_workers_wall_seconds']:.1f} s wall, best val loss "
            f"{figures['two_workers_validation_loss']:.4f})",
            f"plumb, torchrun 2 workers, local SGD "
            f"{figures['two_workers_local_sgd_rows_per_second']:>8,.0f} rows/s  "
            f"({figures['two_workers_local_sgd_wall_seconds']:.1f} s wall, best val "
            f"loss {figures['two_workers_local_sgd_validation_loss']:.4f}; weights "
            f"averaged every {LOCAL_SGD_STEPS} steps)",
            f"2 workers / 1 worker, local SGD  "
            f"{figures['two_vs_one_workers']:>12.2f}x  (goal >= 1.6x)",
            f"2 workers / 1 worker, DDP        "
            f"{figures['two_vs_one_workers_ddp']:>12.2f}x  (a gradient all-reduce "
            "every step)",
            f"plumb overhead vs plain loop     "
            f"{figures['plumb_overhead']:>12.1%}  (goal <= 10%)",
            f"load average (1 min)             {figures['load_average_before']:>12.2f} "
            f"before, {figures['load_average_after']:.2f} after, on "
            f"{os.cpu_count()} CPUs",
            f"2 busy processes / 1 (ceiling)   "
            f"{figures['parallel_ceiling_before']:>12.2f}x before, "
            + (
                "after not measured (--quick)"
                if math.isnan(figures["parallel_ceiling_after"])
                else f"{figures['parallel_ceiling_after']:.2f}x after"
            )
            + " (no communication)",
        ]
    )


def _matmul_loop(seconds: float, results: multiprocessing.Queue) -> None:
    """One thread of dense float32 work for `seconds`; report products per second."""
    torch.set_num_threads(1)
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    done, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        torch.mm(a, b)
        done += 1
    results.put(done / seconds)


def parallel_ceiling(seconds: float = 5.0) -> float:
    """Throughput of 2 independent one-thread processes over 1: what this machine (and
    whatever else runs on it now) allows 2 workers without any communication."""
    context = multiprocessing.get_context("spawn")
    rates = []
    for processes in (1, 2):
        results: multiprocessing.Queue = context.Queue()
        workers = [
            context.Process(target=_matmul_loop, args=(seconds, results))
            for _ in range(processes)
        ]
        for worker in workers:
            worker.start()
        rates.append(sum(results.get() for _ in workers))
        for worker in workers:
            worker.join()
    return rates[1] / rates[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="80,000 rows, one 1 s ceiling probe: rough figures (default: every row)",
    )
    args = parser.parse_args()
    # The torchrun workers read the level from the environment.
    os.environ.setdefault("PLUMB_LOG_LEVEL", "WARNING")
    setup_logging()
    print(report(run(quick=args.quick)))


if __name__ == "__main__":
    main()
