"""Run plumb's benchmarks as child processes and collect their figures.

Each section runs its command (the per-stage scripts `bench.training`, `.compression`,
`.serving`, `.drift`, or `plumb run` itself) `repeats` times, one after another, in a
child process. A section's figures are parsed from what the command prints (or writes
as JSON); the harness keeps every value, the median, and the ratio to the section's
comparison and goal. Peak memory is the OS's own accounting: `wait4`'s `ru_maxrss` for
the child, i.e. the largest resident set of any process in its tree (the benchmark, its
servers, its workers). `bench.report` renders the JSON as a Markdown table.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("pipeline", "training", "compression", "serving", "drift")
COMMAND_TIMEOUT_SECONDS = 1_800


@dataclass
class Goal:
    """A figure's target: `value op target` (op is `<=` or `>=`)."""

    op: str
    target: float

    def met(self, value: float) -> bool:
        return value <= self.target if self.op == "<=" else value >= self.target


@dataclass
class Figure:
    """One measured quantity over the repeats of a section."""

    name: str
    unit: str
    values: list[float] = field(default_factory=list)
    goal: Goal | None = None
    comparison: str | None = None
    """What the figure is a ratio to (or is compared with), in words."""

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["median"] = self.median
        record["goal_met"] = (
            None
            if self.goal is None or self.median is None
            else self.goal.met(self.median)
        )
        return record


@dataclass
class Run:
    """One child process: its command, wall time, peak memory and output."""

    command: list[str]
    seconds: float
    peak_rss_mib: float
    returncode: int
    output: str


def run_child(command: list[str], *, cwd: Path, env: dict[str, str]) -> Run:
    """Run `command` to the end; time it and read its tree's peak RSS from `wait4`."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    timer = threading.Timer(COMMAND_TIMEOUT_SECONDS, process.kill)
    timer.start()
    try:
        assert process.stdout is not None
        output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        timer.cancel()
    # Popen did not reap the child itself; tell it, so it does not try again.
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    # Linux reports ru_maxrss in KiB.
    return Run(
        command=command,
        seconds=seconds,
        peak_rss_mib=usage.ru_maxrss / 1024,
        returncode=process.returncode,
        output=output,
    )


@dataclass
class Section:
    """A benchmark section's figures, runs and failures."""

    name: str
    figures: dict[str, Figure] = field(default_factory=dict)
    runs: list[Run] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, value: float, unit: str, **extra: Any) -> None:
        figure = self.figures.setdefault(name, Figure(name=name, unit=unit, **extra))
        figure.values.append(float(value))

    def to_dict(self) -> dict[str, Any]:
        return {
            "figures": [figure.to_dict() for figure in self.figures.values()],
            "runs": [
                {
                    "command": " ".join(run.command),
                    "seconds": round(run.seconds, 2),
                    "peak_rss_mib": round(run.peak_rss_mib, 1),
                    "returncode": run.returncode,
                }
                for run in self.runs
            ],
            "failed_output_tails": [
                run.output[-3000:] for run in self.runs if run.returncode != 0
            ],
            "notes": self.notes,
        }


def child_env() -> dict[str, str]:
    """The children's environment: quiet logs, this checkout first on the path."""
    env = {**os.environ, "PLUMB_LOG_LEVEL": "WARNING"}
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(ROOT), env.get("PYTHONPATH", "")) if part
    )
    return env


def machine() -> dict[str, Any]:
    """Cores, CPU model, memory and platform of this machine."""
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_gib = None
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        first = meminfo.read_text(encoding="utf-8").splitlines()[0]
        memory_gib = round(int(first.split()[1]) / 1024**2, 1)
    return {
        "cores": os.cpu_count(),
        "cpu_model": model or platform.processor(),
        "memory_gib": memory_gib,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": list(os.getloadavg()),
    }


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def _parse(section: Section, output: str, patterns: list[tuple]) -> None:
    """Add each `(name, regex, unit, extra)` whose regex matches the output."""
    for name, pattern, unit, given in patterns:
        extra = {key: value for key, value in given.items() if key != "optional"}
        match = re.search(pattern, output, flags=re.MULTILINE)
        if match is None:
            if not given.get("optional"):
                section.notes.append(f"{name}: not found in the output")
            continue
        section.add(name, _number(match.group(1)), unit, **extra)


def _python(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def _repeat(
    section: Section,
    repeats: int,
    command: list[str],
    parse: Callable[[Section, Run], None],
    *,
    env: dict[str, str],
) -> None:
    for index in range(repeats):
        logger.info("%s %d/%d: %s", section.name, index + 1, repeats, " ".join(command))
        run = run_child(command, cwd=ROOT, env=env)
        section.runs.append(run)
        if run.returncode != 0:
            section.notes.append(f"run {index + 1} exited {run.returncode}")
            continue
        parse(section, run)
        section.add("peak RSS (largest process)", run.peak_rss_mib, "MiB")


# --- sections ------------------------------------------------------------------------


def pipeline_args(*, quick: bool) -> list[str]:
    """`plumb run`'s arguments: flights, or (quick) breast-cancer trained in-process.

    Quick mode trains on 1 worker: torchrun's start-up was a third of the cold run, and
    the training section measures torchrun itself.
    """
    if not quick:
        return ["--dataset", "flights"]
    return [
        "--config",
        str(ROOT / "examples/breast-cancer.yaml"),
        "--set",
        "training.workers=1",
    ]


def bench_pipeline(section: Section, *, quick: bool, repeats: int) -> Path | None:
    """`plumb run` cold (empty stage cache) and re-run, on flights (quick: breast-cancer).

    Returns:
        The compressed model of the last successful run (for the serving memory probe).
    """
    env = child_env()
    args = pipeline_args(quick=quick)
    cold_goal = None if quick else Goal("<=", 180.0)
    rerun_goal = None if quick else Goal("<=", 20.0)
    model: Path | None = None
    keep = Path(tempfile.mkdtemp(prefix="plumb-bench-pipeline-"))
    for index in range(repeats):
        runs_dir = keep / f"runs-{index}"
        command = _python("plumb", "run", *args, "--runs-dir", str(runs_dir))
        cold = run_child(command, cwd=ROOT, env=env)
        section.runs.append(cold)
        if cold.returncode != 0:
            section.notes.append(f"cold run {index + 1} exited {cold.returncode}")
            continue
        section.add("cold run", cold.seconds, "s", goal=cold_goal)
        section.add("peak RSS, cold run (largest process)", cold.peak_rss_mib, "MiB")
        for stage, seconds in stage_seconds(
            runs_dir / "latest" / "pipeline.log"
        ).items():
            section.add(f"cold: {stage} task", seconds, "s")
        rerun = run_child(command, cwd=ROOT, env=env)
        section.runs.append(rerun)
        if rerun.returncode != 0:
            section.notes.append(f"re-run {index + 1} exited {rerun.returncode}")
            continue
        summary = json.loads(
            (runs_dir / "latest" / "summary.json").read_text(encoding="utf-8")
        )
        section.add(
            "re-run (stage cache)",
            rerun.seconds,
            "s",
            goal=rerun_goal,
            comparison="cold run",
        )
        section.add("re-run / cold", rerun.seconds / cold.seconds, "x")
        section.add("stages taken from cache", len(summary["cached_stages"]), "stages")
        model = Path(summary["model_path"])
    section.notes.append(
        "cold: a fresh --runs-dir (empty stage cache); re-run: the same command again. "
        "Wall time of the whole command, start-up and data check included."
    )
    return model


def stage_seconds(log_path: Path) -> dict[str, float]:
    """Seconds of each task in a run's pipeline.log (kfp's start and end lines)."""
    if not log_path.is_file():
        return {}
    starts: dict[str, float] = {}
    seconds: dict[str, float] = {}
    pattern = re.compile(
        r"^(\d\d):(\d\d):(\d\d\.\d+) - INFO - "
        r"(?:Executing task '(\S+)'|Task '(\S+)' finished with status)"
    )
    for line in log_path.read_text(encoding="utf-8").splitlines():
        match = pattern.match(line)
        if match is None:
            continue
        hours, minutes, secs, started, finished = match.groups()
        stamp = int(hours) * 3600 + int(minutes) * 60 + float(secs)
        if started:
            starts[started] = stamp
        elif finished in starts:
            seconds[finished] = (stamp - starts[finished]) % 86_400
    return seconds


TRAINING_PATTERNS = [
    (
        "plain torch loop, 1 process",
        r"plain torch loop, 1 process\s+([\d,.]+)",
        "rows/s",
        {},
    ),
    ("plumb loop, in-process", r"plumb loop, in-process\s+([\d,.]+)", "rows/s", {}),
    ("plumb, torchrun 1 worker", r"torchrun 1 worker\s+([\d,.]+)", "rows/s", {}),
    (
        "plumb, torchrun 2 workers, DDP",
        r"torchrun 2 workers, DDP\s+([\d,.]+)",
        "rows/s",
        {},
    ),
    (
        "plumb, torchrun 2 workers, local SGD",
        r"torchrun 2 workers, local SGD\s+([\d,.]+)",
        "rows/s",
        {},
    ),
    (
        "best validation loss: 1 worker",
        r"torchrun 1 worker .*best val loss ([\d.]+)",
        "",
        {},
    ),
    (
        "best validation loss: 2 workers, DDP",
        r"2 workers, DDP .*best val loss ([\d.]+)",
        "",
        {},
    ),
    (
        "best validation loss: 2 workers, local SGD",
        r"2 workers, local SGD .*best val loss ([\d.]+)",
        "",
        {},
    ),
    (
        "2 workers (local SGD) / 1 worker",
        r"2 workers / 1 worker, local SGD\s+([\d,.]+)x",
        "x",
        {"goal": Goal(">=", 1.6), "comparison": "1 torchrun worker"},
    ),
    (
        "2 workers (DDP) / 1 worker",
        r"2 workers / 1 worker, DDP\s+([\d,.]+)x",
        "x",
        {"comparison": "1 torchrun worker"},
    ),
    (
        "plumb loop overhead vs plain torch loop",
        r"plumb overhead vs plain loop\s+(-?[\d,.]+)%",
        "%",
        {"goal": Goal("<=", 10.0), "comparison": "plain torch loop"},
    ),
    (
        "2 busy processes / 1 (machine's ceiling, before)",
        r"2 busy processes / 1 \(ceiling\)\s+([\d,.]+)x before",
        "x",
        {"optional": True},
    ),
]


def bench_training(section: Section, *, quick: bool, repeats: int) -> None:
    """`python -m bench.training`: 1 vs 2 workers, plumb loop vs a plain torch loop."""
    command = _python("bench.training", *(["--quick"] if quick else []))
    _repeat(
        section,
        repeats,
        command,
        lambda s, run: _parse(s, run.output, TRAINING_PATTERNS),
        env=child_env(),
    )


def bench_compression(section: Section, *, quick: bool, repeats: int) -> None:
    """`python -m bench.compression`: every candidate against the float model."""
    output = Path(tempfile.mkdtemp(prefix="plumb-bench-compression-")) / "report.json"
    command = _python(
        "bench.compression", *(["--quick"] if quick else []), "--output", str(output)
    )

    def parse(section: Section, run: Run) -> None:
        report = json.loads(output.read_text(encoding="utf-8"))
        for candidate in report["candidates"][1:]:
            name = candidate["name"]
            section.add(
                f"{name}: size vs float32", candidate["size_ratio"], "x smaller"
            )
            section.add(
                f"{name}: 1-row latency vs float32",
                candidate["latency_ratio"],
                "x faster",
            )
            section.add(
                f"{name}: {candidate['metric_name']} drop", candidate["metric_drop"], ""
            )
        meeting = [
            c["size_ratio"] for c in report["candidates"] if c["metric_drop"] <= 0.005
        ]
        section.add(
            "best size ratio with ROC AUC drop <= 0.005",
            max(meeting) if meeting else 0.0,
            "x",
            goal=Goal(">=", 4.0),
            comparison="float32 ONNX model",
        )

    _repeat(section, repeats, command, parse, env=child_env())
    shutil.rmtree(output.parent, ignore_errors=True)


SERVING_COLUMNS = {
    "req/s": ("throughput", "req/s"),
    "p50 ms": ("p50", "ms"),
    "p99 ms": ("p99", "ms"),
    "cpu ms/req": ("server CPU per request", "ms"),
}


def serving_rows(output: str) -> dict[str, dict[str, float]]:
    """The scenario table of `bench.serving`: scenario -> column -> value.

    The columns are read from the header, so a column added to the script shifts
    nothing; a row is its name followed by one number per column.
    """
    lines = output.splitlines()
    header_at = next(
        (i for i, line in enumerate(lines) if line.startswith("scenario")), None
    )
    if header_at is None:
        return {}
    header = lines[header_at]
    columns = sorted(
        (header.index(name), name)
        for name in ("req/s", "rows/s", "p50 ms", "p99 ms", "cpu ms/req", "errors")
        if name in header
    )
    names = [name for _, name in columns]
    table: dict[str, dict[str, float]] = {}
    for line in lines[header_at + 2 :]:
        tokens = line.split()
        if len(tokens) <= len(names):
            break
        try:
            values = [_number(token) for token in tokens[-len(names) :]]
        except ValueError:
            break
        table[" ".join(tokens[: -len(names)])] = dict(zip(names, values, strict=True))
    return table


SERVING_RATIOS = [
    (
        "int8 / torch eager fp32 throughput, 1 row",
        r"int8 / torch eager fp32 throughput, 1 row\s*:\s*([\d.]+)x",
        "x",
        {"goal": Goal(">=", 2.0), "comparison": "torch eager fp32, same server"},
    ),
    (
        "int8 p50 / no-op p50 (HTTP floor)",
        r"int8 p50 / no-op p50 \(HTTP floor\)\s*:\s*([\d.]+)x",
        "x",
        {"goal": Goal("<=", 1.3), "comparison": "no-op model, same server"},
    ),
    (
        "p50 without batching / with (the default)",
        r"batching off / on \(default\), p50\s*:\s*([\d.]+)x",
        "x",
        {"comparison": "the same predictor with --no-batching"},
    ),
]
# 1,000-row requests: one line before bench.serving split them by request format,
# one per format (V1 JSON rows, V2 JSON columns, V2 binary) after.
SERVING_BATCH = re.compile(
    r"^\s*rows/s(?: with 1000-row requests|, 1000-row requests, (?!no-op)(.+?))"
    r"\s*:\s*([\d.]+)",
    flags=re.MULTILINE,
)


def bench_serving(section: Section, *, quick: bool, repeats: int) -> None:
    """`python -m bench.serving`: p50 / p99 / throughput per scenario and the ratios."""

    def parse(section: Section, run: Run) -> None:
        for name, row in serving_rows(run.output).items():
            for column, (label, unit) in SERVING_COLUMNS.items():
                if column in row:
                    section.add(f"{name}: {label}", row[column], unit)
        _parse(section, run.output, SERVING_RATIOS)
        for request_format, rows_per_s in SERVING_BATCH.findall(run.output):
            label = f", {request_format}" if request_format else ""
            section.add(
                f"rows/s with 1000-row requests{label}",
                _number(rows_per_s),
                "rows/s",
                goal=Goal(">=", 200_000.0),
            )

    command = _python("bench.serving", *(["--quick"] if quick else []))
    _repeat(section, repeats, command, parse, env=child_env())


DRIFT_INGEST = re.compile(
    r"(\d+) rows/event:\s+([\d.]+) events/s,\s+([\d.]+) rows/s", flags=re.MULTILINE
)
DRIFT_SECONDS = re.compile(
    r"^\s+((?:plain Evidently|plumb,).*?)\s+([\d.]+) s\s+\(", flags=re.MULTILINE
)
DRIFT_FAST = "plumb, html_reports: false (stattests)"
DRIFT_SIZES = re.compile(
    r"^Drift, ([\d,]+) rows x (\d+) columns vs ([\d,]+)", flags=re.MULTILINE
)


def bench_drift(section: Section, *, quick: bool, repeats: int) -> None:
    """`python -m bench.drift`: events/s into the monitor, seconds per drift check."""

    def parse(section: Section, run: Run) -> None:
        for rows, events, _ in DRIFT_INGEST.findall(run.output):
            section.add(f"ingest, {rows} rows/event", _number(events), "events/s")
        for name, seconds in DRIFT_SECONDS.findall(run.output):
            extra: dict[str, Any] = {}
            if name == DRIFT_FAST and not quick:
                extra = {"goal": Goal("<=", 10.0), "comparison": "plain Evidently"}
            section.add(f"drift check: {name}", _number(seconds), "s", **extra)
        plain = section.figures.get(
            "drift check: plain Evidently DataDriftPreset Report"
        )
        fast = section.figures.get(f"drift check: {DRIFT_FAST}")
        if plain and fast and plain.values and fast.values:
            section.add(
                "plain Evidently / plumb (html_reports: false)",
                plain.values[-1] / fast.values[-1],
                "x faster",
                comparison="plain Evidently DataDriftPreset Report",
            )

    command = _python("bench.drift", *(["--quick"] if quick else []))
    _repeat(section, repeats, command, parse, env=child_env())
    sizes = next(
        (DRIFT_SIZES.search(run.output) for run in section.runs if run.returncode == 0),
        None,
    )
    if sizes is not None:
        rows, columns, reference_rows = sizes.groups()
        section.notes.append(
            f"drift checks on {rows} rows x {columns} columns vs {reference_rows}"
        )


def probe_server_memory(section: Section, model_dir: Path, *, requests: int) -> None:
    """Peak RSS of `plumb serve` (VmHWM) after `requests` single-row predictions."""
    import httpx

    from components.common.net import free_port
    from components.preprocess.schema import Schema

    schema = Schema.load(model_dir / "schema.json")
    row = {
        column.name: (column.categories[0] if column.categories else column.minimum)
        for column in schema.columns
    }
    port = free_port()
    command = _python(
        "plumb", "serve", str(model_dir), "--port", str(port), "--model-name", "m"
    )
    server = subprocess.Popen(
        command,
        cwd=ROOT,
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/v1/models/m:predict"
        with httpx.Client(timeout=5.0) as client:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if (
                        client.get(f"http://127.0.0.1:{port}/v1/models/m").status_code
                        == 200
                    ):
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    section.notes.append("plumb serve did not become ready")
                    return
                time.sleep(0.5)
            for _ in range(requests):
                client.post(url, json={"instances": [row]}).raise_for_status()
        status = Path(f"/proc/{server.pid}/status").read_text(encoding="utf-8")
        peak_kib = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
        section.add("plumb serve peak RSS (compressed model)", peak_kib / 1024, "MiB")
        section.notes.append(
            f"plumb serve peak RSS: VmHWM of the server process after {requests} "
            f"single-row requests, model {model_dir.name} from the pipeline section"
        )
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


RUNNERS: dict[str, Callable[..., Any]] = {
    "pipeline": bench_pipeline,
    "training": bench_training,
    "compression": bench_compression,
    "serving": bench_serving,
    "drift": bench_drift,
}


def run_benchmarks(
    sections: list[str], *, quick: bool, repeats: dict[str, int]
) -> dict[str, Any]:
    """Run the chosen sections in order; return the results document."""
    started = datetime.now(UTC)
    results: dict[str, Any] = {
        "date": started.isoformat(timespec="seconds"),
        "mode": "quick" if quick else "full",
        "machine": machine(),
        "git_commit": _git_commit(),
        "command": " ".join(["python", "-m", "bench", *sys.argv[1:]]),
        "sections": {},
    }
    model: Path | None = None
    for name in sections:
        section = Section(name=name)
        began = time.perf_counter()
        outcome = RUNNERS[name](section, quick=quick, repeats=repeats[name])
        if name == "pipeline":
            model = outcome
        if name == "serving" and model is not None and model.is_dir():
            probe_server_memory(section, model, requests=200 if quick else 1000)
        record = section.to_dict()
        record["repeats"] = repeats[name]
        record["seconds"] = round(time.perf_counter() - began, 1)
        results["sections"][name] = record
        logger.info("%s done in %.0f s", name, record["seconds"])
    results["seconds"] = round((datetime.now(UTC) - started).total_seconds(), 1)
    return results


def _git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
