"""Serving benchmark: plumb's predictor against torch eager, a no-op floor and batches.

    python -m bench.serving [--quick]

Trains the breast-cancer MLP (the pipeline's default 64-32 network), compresses it to
int8 with plumb's compress step, then for each scenario starts one kserve ModelServer
on 127.0.0.1 and drives it from a separate load process at fixed concurrency for a
fixed time (keep-alive connections, a raw HTTP/1.1 client so the client's own cost
stays small). Scenarios run one after another, never side by side, and print
throughput, p50/p99 latency and the ratios the serving goals are stated in:

- int8 predictor throughput / torch eager fp32 throughput behind the same server (>= 2x)
- int8 predictor p50 / no-op model p50, the HTTP floor (<= 1.3x)
- rows per second with 1,000-row requests (>= 200k): V1 JSON rows, V2 JSON columns
  (one tensor per feature), V2 binary (the transformed FP32 `features` tensor)

Both sides are equally single-threaded: onnxruntime with one intra-op and one inter-op
thread, torch with `set_num_threads(1)` and `set_num_interop_threads(1)`, so the client
process keeps a core; the figures depend on the machine and its load. The no-op server
answers 1,000-row requests too, so every batch figure has its own HTTP floor.

`--quick` is for development: 0.75 s per scenario after 0.25 s of warm-up (10 s after
2 s in full), a 3-epoch model trained in-process, and one server for the scenarios of
the same kind, model and batching, all started together (full mode starts a fresh
one just before each scenario). Every scenario and ratio is still printed; the figures
are rough.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.common.net import free_port

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

MODEL_NAME = "bench"
SINGLE_ROW_CONCURRENCY = 8
BATCH_CONCURRENCY = 2
BATCH_ROWS = 1_000


@dataclass
class Scenario:
    name: str
    kind: str  # plumb | torch | noop
    model: str  # int8 | fp32
    rows: int
    concurrency: int
    batch_window_ms: float = 0.0
    request: str = "v1"  # v1 | v2-json | v2-binary
    batching: bool = True  # the predictor's default: batch requests already waiting


SCENARIOS = [
    Scenario("noop (HTTP floor)", "noop", "int8", 1, SINGLE_ROW_CONCURRENCY),
    Scenario("plumb int8", "plumb", "int8", 1, SINGLE_ROW_CONCURRENCY),
    Scenario("torch eager fp32", "torch", "fp32", 1, SINGLE_ROW_CONCURRENCY),
    Scenario(
        "plumb int8, batch window 2 ms", "plumb", "int8", 1, SINGLE_ROW_CONCURRENCY, 2
    ),
    Scenario(
        "plumb int8, batching off",
        "plumb",
        "int8",
        1,
        SINGLE_ROW_CONCURRENCY,
        batching=False,
    ),
    Scenario("noop, 1000-row requests", "noop", "int8", BATCH_ROWS, BATCH_CONCURRENCY),
    Scenario(
        "plumb int8, 1000-row requests", "plumb", "int8", BATCH_ROWS, BATCH_CONCURRENCY
    ),
    Scenario(
        "plumb int8, 1000 rows V2 JSON",
        "plumb",
        "int8",
        BATCH_ROWS,
        BATCH_CONCURRENCY,
        request="v2-json",
    ),
    Scenario(
        "plumb int8, 1000 rows V2 binary",
        "plumb",
        "int8",
        BATCH_ROWS,
        BATCH_CONCURRENCY,
        request="v2-binary",
    ),
    Scenario(
        "torch fp32, 1000-row requests", "torch", "fp32", BATCH_ROWS, BATCH_CONCURRENCY
    ),
]


# --- models served by the benchmark's own server processes -----------------------


def _torch_runtime(model_dir: Path) -> Any:
    """The trained network in torch eager fp32, with plumb's schema and transform."""
    import numpy as np
    import torch

    from components.common.model_runtime import load_model
    from components.train.torch_model import ServingHead, build_network

    base = load_model(model_dir, threads=1)
    checkpoint = torch.load(model_dir / "checkpoint.pt", weights_only=False)
    training = checkpoint["training"]
    network = build_network(
        input_width=base.transform.width,
        model=training["model"],
        hidden_units=training["hidden_units"],
        dropout=training["dropout"],
    )
    network.load_state_dict(checkpoint["state_dict"])
    head = ServingHead(network, task=base.schema.task).eval()
    torch.set_num_threads(1)
    if torch.get_num_interop_threads() != 1:
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # only settable before torch's first parallel work
            pass

    def predict_matrix(matrix: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            output = head(torch.from_numpy(matrix.astype(np.float32)))
        return output.numpy().astype(np.float64).reshape(-1)

    base.predict_matrix = predict_matrix  # type: ignore[method-assign]
    return base


def _serve(
    kind: str, model_dir: Path, port: int, batch_window_ms: float, batching: bool
) -> None:
    from kserve import Model

    from components.serving.model import PlumbModel
    from components.serving.server import BoundModelServer

    model: Model
    if kind == "noop":

        class NoopModel(Model):
            def load(self) -> bool:
                self.ready = True
                return True

            async def predict(self, payload: Any, headers: Any = None) -> dict:
                count = len(payload.get("instances", []))
                return {"predictions": [{"probability": 0.5, "label": "x"}] * count}

        model = NoopModel(MODEL_NAME)
    else:
        model = PlumbModel(
            MODEL_NAME,
            model_dir,
            batching=batching,
            batch_window_ms=batch_window_ms,
            threads=1,
        )
    model.load()
    if kind == "torch":
        model.runtime = _torch_runtime(model_dir)
    server = BoundModelServer(
        host="127.0.0.1",
        max_body_bytes=16 * 1024 * 1024,  # plumb serve's default
        http_port=port,
        enable_grpc=False,
        enable_latency_logging=False,
    )
    server.start([model])


# --- load generator (runs in its own process) --------------------------------------


async def _client(
    port: int, request: bytes, stop_at: float, record_from: float
) -> tuple[list[float], int]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    latencies: list[float] = []
    errors = 0
    try:
        while True:
            start = time.perf_counter()
            if start >= stop_at:
                break
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            end = time.perf_counter()
            if start >= record_from:
                latencies.append(end - start)
                errors += status != 200
    finally:
        writer.close()
    return latencies, errors


def _http_request(
    scenario: Scenario, rows: list[list[float]], model_dir: Path
) -> bytes:
    """The raw HTTP/1.1 request a scenario sends over and over."""
    body_rows = [rows[index % len(rows)] for index in range(scenario.rows)]
    path = f"/v2/models/{MODEL_NAME}/infer"
    headers = {"Content-Type": "application/json"}
    if scenario.request == "v1":
        path = f"/v1/models/{MODEL_NAME}:predict"
        body = json.dumps({"instances": body_rows}).encode()
    elif scenario.request == "v2-json":
        from components.preprocess.schema import Schema

        names = Schema.load(model_dir / "schema.json").feature_names
        columns = zip(*body_rows, strict=True)
        inputs = [
            {"name": name, "shape": [len(body_rows)], "datatype": "FP64", "data": data}
            for name, data in zip(names, map(list, columns), strict=True)
        ]
        body = json.dumps({"inputs": inputs}).encode()
    else:
        import pandas as pd

        from components.common.model_runtime import load_model

        runtime = load_model(model_dir)
        frame = pd.DataFrame(body_rows, columns=runtime.schema.feature_names)
        matrix = runtime.transform.apply(frame)
        tensor: dict[str, Any] = {
            "name": "features",
            "shape": list(matrix.shape),
            "datatype": "FP32",
        }
        tensor["parameters"] = {"binary_data_size": matrix.nbytes}
        header = json.dumps({"inputs": [tensor]}).encode()
        body = header + matrix.tobytes()
        headers = {
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(header)),
        }
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far; NaN without Linux /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


async def _cpu_seconds_at(moment: float, pid: int) -> float:
    await asyncio.sleep(max(0.0, moment - time.perf_counter()))
    return _cpu_seconds(pid)


async def _load(
    port: int,
    request: bytes,
    concurrency: int,
    seconds: float,
    warmup: float,
    server_pid: int,
) -> dict:
    begin = time.perf_counter()
    record_from = begin + warmup
    stop_at = record_from + seconds
    cpu_from = asyncio.create_task(_cpu_seconds_at(record_from, server_pid))
    results = await asyncio.gather(
        *[_client(port, request, stop_at, record_from) for _ in range(concurrency)]
    )
    server_cpu = _cpu_seconds(server_pid) - await cpu_from
    latencies = sorted(value for part, _ in results for value in part)
    errors = sum(count for _, count in results)
    return {
        "requests": len(latencies),
        # Server CPU per request: on a shared machine this moves far less with other
        # work than throughput does, and 1 / it is the capacity of one core.
        "cpu_ms_per_request": 1000 * server_cpu / max(len(latencies), 1),
        "errors": errors,
        "seconds": seconds,
        "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else float("nan"),
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)]
        if latencies
        else float("nan"),
    }


# --- orchestration --------------------------------------------------------------------


def _prepare_models(
    workdir: Path, *, epochs: int, workers: int | None
) -> dict[str, Path]:
    """Train the breast-cancer MLP (fp32) and quantize it (int8); return both dirs.

    `workers` None keeps the training config's default (torchrun on 2 workers).
    """
    from components.common.config import PlumbConfig
    from components.compress.onnx_quantize import (
        calibration_matrix,
        quantize_model_dir,
    )
    from components.preprocess.lib import prepare, write_prepared
    from components.preprocess.split import SPLITS
    from components.preprocess.transform import Transform
    from components.train.lib import train_and_export

    training: dict[str, int] = {"epochs": epochs}
    if workers is not None:
        training["workers"] = workers
    config = PlumbConfig.model_validate(
        {"data": {"dataset": "breast-cancer"}, "training": training}
    )
    prepared = prepare(config)
    write_prepared(
        prepared,
        split_paths={name: str(workdir / f"{name}.parquet") for name in SPLITS},
        preprocessor_dir=str(workdir / "preprocessor"),
    )
    fp32 = workdir / "fp32"
    train_and_export(
        config.training,
        train=prepared.splits["train"],
        validation=prepared.splits["validation"],
        preprocessor_dir=workdir / "preprocessor",
        model_dir=fp32,
    )
    # Static int8, the quantization plumb's compress step selects by default.
    compression = config.compression
    calibration = calibration_matrix(
        prepared.splits["train"],
        transform=Transform.load(fp32 / "transform.json"),
        rows=compression.calibration_rows,
        seed=compression.seed,
    )
    int8 = workdir / "int8"
    quantize_model_dir(
        fp32, int8, mode="static", calibration=calibration, work_dir=workdir
    )
    return {"fp32": fp32, "int8": int8}


def _wait_ready(port: int, process: subprocess.Popen, timeout: float = 90) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"benchmark server exited with {process.returncode}")
        try:
            url = f"http://127.0.0.1:{port}/v1/models/{MODEL_NAME}"
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError("benchmark server did not become ready")


def server_key(scenario: Scenario) -> tuple[str, str, float, bool]:
    """What makes two scenarios' servers the same: kind, model and batching."""
    return (scenario.kind, scenario.model, scenario.batch_window_ms, scenario.batching)


def server_groups(
    scenarios: list[Scenario], *, share_servers: bool
) -> list[list[Scenario]]:
    """The scenarios in the order they run, grouped by the server they run against.

    Without `share_servers` each scenario gets its own fresh server. With it, the
    scenarios of the same `server_key` share one, in first-seen order.
    """
    if not share_servers:
        return [[scenario] for scenario in scenarios]
    groups: dict[tuple[str, str, float, bool], list[Scenario]] = {}
    for scenario in scenarios:
        key = server_key(scenario)
        groups.setdefault(key, []).append(scenario)
    return list(groups.values())


@contextmanager
def _servers(
    scenarios: list[Scenario], models: dict[str, Path]
) -> Iterator[list[tuple[int, int]]]:
    """Start each scenario's server, all at once; yield their (port, pid)s when ready.

    Every server is stopped on the way out, ready or not.
    """
    started: list[tuple[int, subprocess.Popen]] = []
    try:
        for scenario in scenarios:
            port = free_port()
            while port in {taken for taken, _ in started}:
                port = free_port()
            server = subprocess.Popen(
                [sys.executable, "-m", "bench.serving", "_serve", scenario.kind]
                + [str(models[scenario.model]), str(port)]
                + [str(scenario.batch_window_ms), str(int(scenario.batching))],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            started.append((port, server))
        for port, server in started:
            _wait_ready(port, server)
        yield [(port, server.pid) for port, server in started]
    finally:
        for _, server in started:
            server.terminate()
        for _, server in started:
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _run_scenario(
    scenario: Scenario,
    models: dict[str, Path],
    rows: list[list[float]],
    *,
    server: tuple[int, int],
    seconds: float,
    warmup: float,
    workdir: Path,
) -> dict:
    """Drive the running `server` (port, pid) with the scenario's requests."""
    port, server_pid = server
    body_path = workdir / "request.http"
    body_path.write_bytes(_http_request(scenario, rows, models[scenario.model]))
    load = subprocess.run(
        [sys.executable, "-m", "bench.serving", "_load", str(port), str(body_path)]
        + [str(scenario.concurrency), str(seconds), str(warmup), str(server_pid)],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + warmup + 60,
    )
    result = json.loads(load.stdout.strip().splitlines()[-1])
    result["requests_per_s"] = result["requests"] / seconds
    result["rows_per_s"] = result["requests_per_s"] * scenario.rows
    return result


def _in_process_rows_per_s(
    models: dict[str, Path], rows: list[list[float]], *, seconds: float
) -> dict:
    """Model-only cost, no HTTP: rows/s of predict_matrix on 1 and on 1,000 rows.

    Each size is called over and over for `seconds`.
    """
    import numpy as np
    import pandas as pd

    from components.common.model_runtime import load_model

    runtimes = {
        "plumb int8": load_model(models["int8"], threads=1),
        "torch eager fp32": _torch_runtime(models["fp32"]),
    }
    figures = {}
    for name, runtime in runtimes.items():
        frame = pd.DataFrame(rows * 40, columns=runtime.schema.feature_names)
        matrix = runtime.transform.apply(frame)
        for size in (1, BATCH_ROWS):
            block = np.ascontiguousarray(matrix[:size])
            calls, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                runtime.predict_matrix(block)
                calls += 1
            figures[f"{name}, {size} row(s)"] = (
                calls * size / (time.perf_counter() - start)
            )
    return figures


def main(argv: list[str] | None = None) -> None:
    """Run every scenario and print the table and the goal ratios."""
    parser = argparse.ArgumentParser(prog="python -m bench.serving")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="0.75 s per scenario, servers shared: rough figures, for development",
    )
    args = parser.parse_args(argv)
    # Quick: the model is trained in-process (no torchrun start-up); it is only served.
    seconds, warmup, epochs, workers = (
        (0.75, 0.25, 3, 1) if args.quick else (10.0, 2.0, 20, None)
    )

    import pandas as pd

    from components.common.logs import setup_logging

    setup_logging("WARNING")
    with tempfile.TemporaryDirectory(prefix="plumb-bench-") as tmp:
        workdir = Path(tmp)
        models = _prepare_models(workdir, epochs=epochs, workers=workers)
        test = pd.read_parquet(workdir / "test.parquet")
        from components.preprocess.schema import Schema

        schema = Schema.load(models["int8"] / "schema.json")
        rows = test[schema.feature_names].values.tolist()
        groups = server_groups(SCENARIOS, share_servers=args.quick)
        # Full mode starts each scenario's fresh server just before it; quick mode
        # starts the shared servers together (their start-ups overlap, and an idle
        # server takes no CPU from the one being measured).
        batches = [groups] if args.quick else [[group] for group in groups]
        results = {}
        for batch in batches:
            with _servers([group[0] for group in batch], models) as servers:
                for group, server in zip(batch, servers, strict=True):
                    for scenario in group:
                        results[scenario.name] = _run_scenario(
                            scenario,
                            models,
                            rows,
                            server=server,
                            seconds=seconds,
                            warmup=warmup,
                            workdir=workdir,
                        )
        model_only = _in_process_rows_per_s(
            models, rows, seconds=0.2 if args.quick else 0.5
        )
    # The table keeps the scenarios' own order, whichever order they ran in.
    results = {scenario.name: results[scenario.name] for scenario in SCENARIOS}
    _report(results, model_only, cpus=os.cpu_count() or 0)
    if args.quick:
        print(
            f"\n--quick: {seconds:g} s per scenario after {warmup:g} s of warm-up, "
            "one server per kind, model and batching: rough figures, for "
            "development; the goals count in full mode."
        )


def _report(
    results: dict[str, dict], model_only: dict[str, float], *, cpus: int
) -> None:
    print(f"plumb serving benchmark on 127.0.0.1 ({cpus} CPUs visible)")
    header = (
        f"{'scenario':34} {'req/s':>9} {'rows/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'cpu ms/req':>10} {'errors':>6}"
    )
    print(header)
    print("-" * len(header))
    for name, result in results.items():
        print(
            f"{name:34} {result['requests_per_s']:9.0f} {result['rows_per_s']:10.0f} "
            f"{result['p50_ms']:8.2f} {result['p99_ms']:8.2f} "
            f"{result['cpu_ms_per_request']:10.3f} {result['errors']:6d}"
        )
    print("\nmodel only, in-process (rows/s):")
    for name, value in model_only.items():
        print(f"  {name:34} {value:12.0f}")

    int8, torch_ = results["plumb int8"], results["torch eager fp32"]
    floor = results["noop (HTTP floor)"]
    batch_floor = results["noop, 1000-row requests"]
    window = results["plumb int8, batch window 2 ms"]
    unbatched = results["plumb int8, batching off"]
    batches = {
        "V1 JSON rows": results["plumb int8, 1000-row requests"],
        "V2 JSON columns": results["plumb int8, 1000 rows V2 JSON"],
        "V2 binary features": results["plumb int8, 1000 rows V2 binary"],
    }
    torch_batch = results["torch fp32, 1000-row requests"]
    lines = [
        (
            "int8 / torch eager fp32 throughput, 1 row",
            int8["requests_per_s"] / torch_["requests_per_s"],
            "x",
            ">= 2x",
        ),
        (
            "int8 / torch eager fp32 rows/s, 1000 rows",
            batches["V1 JSON rows"]["rows_per_s"] / torch_batch["rows_per_s"],
            "x",
            "",
        ),
        (
            "torch / int8 server CPU per request, 1 row",
            torch_["cpu_ms_per_request"] / int8["cpu_ms_per_request"],
            "x",
            "",
        ),
        (
            "torch / int8 server CPU per request, 1000",
            torch_batch["cpu_ms_per_request"]
            / batches["V1 JSON rows"]["cpu_ms_per_request"],
            "x",
            "",
        ),
        (
            "int8 / torch eager fp32, model only, 1 row",
            model_only["plumb int8, 1 row(s)"]
            / model_only["torch eager fp32, 1 row(s)"],
            "x",
            "",
        ),
        (
            "int8 / torch eager fp32, model only, 1000",
            model_only[f"plumb int8, {BATCH_ROWS} row(s)"]
            / model_only[f"torch eager fp32, {BATCH_ROWS} row(s)"],
            "x",
            "",
        ),
        (
            "int8 throughput / no-op throughput, 1 row",
            int8["requests_per_s"] / floor["requests_per_s"],
            "x",
            "",
        ),
        (
            "int8 p50 / no-op p50 (HTTP floor)",
            int8["p50_ms"] / floor["p50_ms"],
            "x",
            "<= 1.3x",
        ),
        (
            "int8 / no-op server CPU per request, 1 row",
            int8["cpu_ms_per_request"] / floor["cpu_ms_per_request"],
            "x",
            "",
        ),
    ]
    for name, batch in batches.items():
        lines.append(
            (f"rows/s, 1000-row requests, {name}", batch["rows_per_s"], "", ">= 200000")
        )
    lines.append(
        ("rows/s, 1000-row requests, no-op floor", batch_floor["rows_per_s"], "", "")
    )
    lines += [
        (
            "batch window 2 ms / none, throughput",
            window["requests_per_s"] / int8["requests_per_s"],
            "x",
            "",
        ),
        (
            "batching off / on (default), p50",
            unbatched["p50_ms"] / int8["p50_ms"],
            "x",
            "",
        ),
    ]
    print("\nratios (goal in brackets):")
    for name, value, unit, goal in lines:
        figure = f"{value:8.2f}{unit}" if unit else f"{value:9.0f}"
        print(f"  {name:42}: {figure}" + (f"  [{goal}]" if goal else ""))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_serve":
        kind, model_dir, port, window, batching = sys.argv[2:7]
        _serve(kind, Path(model_dir), int(port), float(window), batching == "1")
    elif len(sys.argv) > 1 and sys.argv[1] == "_load":
        port, request_path, concurrency, seconds, warmup, server_pid = sys.argv[2:8]
        outcome = asyncio.run(
            _load(
                int(port),
                Path(request_path).read_bytes(),
                int(concurrency),
                float(seconds),
                float(warmup),
                int(server_pid),
            )
        )
        print(json.dumps(outcome))
    else:
        main()
