"""The `plumb` command line: thin commands over plumb's libraries.

Bad input becomes one line on stderr and exit code 2 (a traceback only with `--debug`);
a failed pipeline task exits 1.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import click
import typer
import yaml
from rich.console import Console
from rich.table import Table

from components.common.config import PlumbConfig, load_config, parse_override_value
from components.common.errors import PlumbError
from components.common.logs import setup_logging

app = typer.Typer(
    name="plumb",
    help="Kubernetes-native MLOps: preprocess, train, compress, evaluate, serve, monitor.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
error_console = Console(stderr=True)
logger = logging.getLogger(__name__)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="YAML config file (default: ./plumb.yaml if present)."
    ),
]


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks and DEBUG logs.")
    ] = False,
) -> None:
    setup_logging("DEBUG" if debug else None)
    if debug:
        os.environ["PLUMB_LOG_LEVEL"] = "DEBUG"


def _parse_sets(pairs: list[str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise PlumbError(
                f"--set expects KEY=VALUE (e.g. training.epochs=3), got {pair!r}"
            )
        overrides[key.strip()] = (
            parse_override_value(text, where=f"--set {key.strip()}") if text else text
        )
    return overrides


def _load(config: Path | None, overrides: dict[str, Any]) -> PlumbConfig:
    return load_config(config, overrides=overrides)


@app.command()
def run(
    config: ConfigOption = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            help="Built-in dataset (flights, credit, breast-cancer) or a file path."
        ),
    ] = None,
    max_rows: Annotated[
        int | None, typer.Option(help="Use a seeded sample of at most this many rows.")
    ] = None,
    runs_dir: Annotated[
        Path, typer.Option(help="Where run folders are created.")
    ] = Path("runs"),
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override a config field: KEY=VALUE, e.g. training.epochs=3."
        ),
    ] = None,
    no_cache: Annotated[
        bool,
        typer.Option(
            "--no-cache",
            help="Run every stage, even those whose inputs did not change.",
        ),
    ] = False,
) -> None:
    """Run the whole pipeline locally through kfp's local runner.

    Stages whose inputs (data, config section, code, upstream stages) did not change
    since an earlier run in the same --runs-dir are taken from its stage cache.
    """
    from components.evaluate.metrics import check_gate_metrics
    from components.preprocess.datasets import resolve_task
    from pipelines.local import run_pipeline

    overrides = _parse_sets(set_ or [])
    if dataset is not None:
        overrides["data.dataset"] = dataset
    if max_rows is not None:
        overrides["data.max_rows"] = max_rows
    settings = _load(config, overrides)
    check_gate_metrics(
        settings.evaluation.gate.thresholds, task=resolve_task(settings.data)
    )
    summary = run_pipeline(
        settings, runs_dir=runs_dir, use_cache=not no_cache, preflight=_check_data
    )
    _print_summary(summary)


def _check_data(settings: PlumbConfig) -> None:
    """Check the data in-process, so a bad table fails fast with one clear line
    instead of a task traceback from inside the runner."""
    from components.preprocess.lib import check_data

    with console.status(f"Checking {settings.data.dataset} ..."), _quiet_logs():
        check_data(settings)


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """Hold plumb's INFO lines back: the preprocess task logs the same facts again."""
    package_logger = logging.getLogger("components")
    level = package_logger.level
    package_logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        package_logger.setLevel(level)


def _print_summary(summary: Any) -> None:
    table = Table(title=f"plumb run on {summary.dataset} ({summary.seconds:.0f} s)")
    table.add_column("what")
    table.add_column("value")
    for name, value in summary.metrics.items():
        table.add_row(name, f"{value:.4f}")
    verdict = "[green]passed[/green]" if summary.gate_passed else "[red]FAILED[/red]"
    table.add_row("gate", f"{verdict} ({'; '.join(summary.gate_reasons)})")
    if summary.model_size_bytes is not None:
        size = f"{summary.model_size_bytes:,} bytes ({summary.selected_model})"
        if summary.float_model_size_bytes:
            ratio = summary.float_model_size_bytes / summary.model_size_bytes
            size += f", {ratio:.1f}x smaller than float32"
        table.add_row("model size", size)
    if summary.drift_share is not None:
        drifted = "drifted" if summary.dataset_drifted else "no drift"
        table.add_row("drift", f"{drifted} (share {summary.drift_share:.2f})")
    if summary.cached_stages:
        table.add_row("cached stages", ", ".join(summary.cached_stages))
    console.print(table)
    # Paths go below the table, whole: they are what `plumb serve` and a browser need.
    paths = {
        "model": summary.model_path,
        "InferenceService": summary.inference_service_path
        or "not written: the gate failed",
        "evaluation report": summary.evaluation_report_path,
        "drift report": summary.drift_report_path,
        "run folder": summary.run_dir,
    }
    for name, path in paths.items():
        console.print(f"{name + ':':<19} {path}", soft_wrap=True, highlight=False)


@app.command("compile")
def compile_(
    output: Annotated[
        Path | None,
        typer.Option(help="Where to write the YAML (default: the committed file)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Compile for this config: its values become the default parameter, "
            "and its GPUs / shared volume become task resources (default: the "
            "built-in defaults).",
        ),
    ] = None,
) -> None:
    """Compile the pipeline to the YAML the Kubeflow UI uploads."""
    from pipelines.training import COMPILED_PIPELINE, compile_pipeline

    settings = _load(config, {}) if config is not None else None
    path = compile_pipeline(output or COMPILED_PIPELINE, config=settings)
    console.print(f"Wrote {path}")


@app.command()
def serve(
    model_dir: Annotated[
        Path, typer.Argument(help="Model directory (/mnt/models on a cluster).")
    ],
    model_name: Annotated[
        str, typer.Option(help="Name in the URL: /v1/models/NAME:predict.")
    ] = "plumb-model",
    host: Annotated[
        str, typer.Option(help="Address to bind; 0.0.0.0 inside a container.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8080,
    grpc_port: Annotated[
        int | None, typer.Option(help="Also serve V2 over gRPC on this port.")
    ] = None,
    no_grpc: Annotated[
        bool, typer.Option("--no-grpc", help="No gRPC server (the default).")
    ] = False,
    workers: Annotated[int, typer.Option(help="Uvicorn worker processes.")] = 1,
    max_rows: Annotated[
        int, typer.Option(help="Most rows per request; more is HTTP 413.")
    ] = 10_000,
    max_body_bytes: Annotated[
        int, typer.Option(help="Largest request body; more is HTTP 413.")
    ] = 16 * 1024 * 1024,
    batching: Annotated[
        bool,
        typer.Option(help="Run requests waiting at the same moment as one model call."),
    ] = True,
    batch_window_ms: Annotated[
        float,
        typer.Option(
            help="With batching, wait this long for more requests (0: no waiting)."
        ),
    ] = 0.0,
    threads: Annotated[
        int, typer.Option(help="Model intra-op threads per worker process.")
    ] = 1,
    latency_log: Annotated[
        bool,
        typer.Option(help="Log kserve's timing lines for every request (default off)."),
    ] = False,
) -> None:
    """Serve a model directory with KServe's V1/V2 protocols (the predictor)."""
    from components.serving.server import ServeOptions
    from components.serving.server import serve as run_server

    if no_grpc and grpc_port is not None:
        raise PlumbError("--grpc-port and --no-grpc contradict each other; pick one")
    run_server(
        ServeOptions(
            model_dir=model_dir,
            model_name=model_name,
            host=host,
            port=port,
            grpc_port=grpc_port,
            workers=workers,
            max_rows=max_rows,
            max_body_bytes=max_body_bytes,
            batching=batching,
            batch_window_ms=batch_window_ms,
            threads=threads,
            latency_log=latency_log,
        )
    )


@app.command("config")
def show_config(config: ConfigOption = None) -> None:
    """Validate the config and print it with every default filled in."""
    from components.preprocess.datasets import resolve_builtin

    settings = _load(config, {})
    shown = settings.model_copy(update={"data": resolve_builtin(settings.data)})
    console.print(yaml.safe_dump(shown.model_dump(), sort_keys=False), end="")


@app.command()
def submit(
    host: Annotated[
        str,
        typer.Option(
            envvar="PLUMB_KFP_HOST",
            help="Kubeflow Pipelines API URL, e.g. http://localhost:8888.",
        ),
    ],
    config: ConfigOption = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config field: KEY=VALUE."),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(help="Set a pipeline parameter directly: NAME=VALUE."),
    ] = None,
    namespace: Annotated[
        str, typer.Option(help="Kubeflow profile namespace of the run.")
    ] = "kubeflow",
    experiment: Annotated[str, typer.Option(help="Experiment to file it under.")] = (
        "plumb"
    ),
    run_name: Annotated[str | None, typer.Option(help="Name of the run.")] = None,
    caching: Annotated[
        bool, typer.Option("--caching/--no-caching", help="Reuse cached step outputs.")
    ] = True,
    service_account: Annotated[
        str | None,
        typer.Option(help="Service account of the run's pods, e.g. plumb-pipeline."),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(envvar="PLUMB_KFP_TOKEN", help="Bearer token for the API."),
    ] = None,
    wait: Annotated[
        bool, typer.Option(help="Wait for the run and fail unless it succeeds.")
    ] = False,
    timeout: Annotated[int, typer.Option(help="Seconds --wait waits at most.")] = 3600,
    cron: Annotated[
        str | None,
        typer.Option(help="Create a recurring run on this 6-field cron schedule."),
    ] = None,
    every_seconds: Annotated[
        int | None, typer.Option(help="Create a recurring run with this period.")
    ] = None,
    max_concurrency: Annotated[
        int, typer.Option(help="Most active runs of a recurring run.")
    ] = 1,
) -> None:
    """Compile the pipeline and submit it to Kubeflow Pipelines (or schedule it)."""
    from components.delivery.submit import SubmitRequest, submit_pipeline

    settings = _load(config, _parse_sets(set_ or []))
    arguments: dict[str, Any] = {"config_json": settings.to_json()}
    arguments.update(_parse_params(param or []))
    request = SubmitRequest(
        host=host,
        arguments=arguments,
        namespace=namespace,
        experiment=experiment,
        run_name=run_name,
        enable_caching=caching,
        service_account=service_account,
        token=token,
        wait=wait,
        timeout_seconds=timeout,
        cron_expression=cron,
        interval_seconds=every_seconds,
        max_concurrency=max_concurrency,
    )
    result = submit_pipeline(request)
    if result.recurring_run_id:
        console.print(f"Recurring run {result.recurring_run_id}: {result.url}")
    else:
        state = f" ({result.state})" if result.state else ""
        console.print(f"Run {result.run_id}{state}: {result.url}")


def _parse_params(pairs: list[str]) -> dict[str, Any]:
    from pipelines.training import training_pipeline

    known = set(training_pipeline.component_spec.inputs or {})
    params: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise PlumbError(f"--param expects NAME=VALUE, got {pair!r}")
        if name not in known:
            raise PlumbError(
                f"--param {name!r}: the pipeline has no such parameter; it takes "
                f"{', '.join(sorted(known))} (use --set for config fields)"
            )
        params[name] = text
    return params


@app.command()
def promote(
    from_: Annotated[
        str, typer.Option("--from", help="Environment whose model is promoted.")
    ],
    to: Annotated[str, typer.Option("--to", help="Environment receiving it.")],
    canary_percent: Annotated[
        int,
        typer.Option(help="Traffic share of the new model at first; 100 = no canary."),
    ] = 10,
    verdict: Annotated[
        str | None,
        typer.Option(help="Candidate's verdict.json (default: beside its model)."),
    ] = None,
    no_worse_than_target: Annotated[
        bool,
        typer.Option(help="Refuse a candidate worse than the target's current model."),
    ] = False,
    target_verdict: Annotated[
        str | None, typer.Option(help="Target model's verdict.json (for the check).")
    ] = None,
    tolerance: Annotated[
        float, typer.Option(help="Allowed absolute slack per metric for the check.")
    ] = 0.0,
    repo: Annotated[
        Path, typer.Option(help="Git repository holding manifests/.")
    ] = Path("."),
    push: Annotated[bool, typer.Option(help="Push the commit afterwards.")] = False,
    remote: Annotated[str, typer.Option(help="Remote to push to.")] = "origin",
) -> None:
    """Promote a model between environments as one git commit (GitOps)."""
    from components.delivery.gitops import promote as promote_model

    change = promote_model(
        repo,
        source_env=from_,
        target_env=to,
        canary_percent=canary_percent,
        verdict=verdict,
        require_no_worse=no_worse_than_target,
        target_verdict=target_verdict,
        tolerance=tolerance,
        push=push,
        remote=remote,
    )
    _print_change(change)


canary_app = typer.Typer(
    help="End a canary rollout started by `plumb promote`.", no_args_is_help=True
)
app.add_typer(canary_app, name="canary")
EnvOption = Annotated[str, typer.Option("--env", help="Environment, e.g. prod.")]
RepoOption = Annotated[Path, typer.Option(help="Git repository holding manifests/.")]
PushOption = Annotated[bool, typer.Option(help="Push the commit afterwards.")]


@canary_app.command("finish")
def canary_finish(
    env: EnvOption, repo: RepoOption = Path("."), push: PushOption = False
) -> None:
    """Send all traffic to the canary's model (one commit)."""
    from components.delivery.gitops import finish_canary

    _print_change(finish_canary(repo, env=env, push=push))


@canary_app.command("rollback")
def canary_rollback(
    env: EnvOption, repo: RepoOption = Path("."), push: PushOption = False
) -> None:
    """Drop the canary and keep the previous model (one commit)."""
    from components.delivery.gitops import rollback_canary

    _print_change(rollback_canary(repo, env=env, push=push))


def _print_change(change: Any) -> None:
    console.print(change.message, end="", markup=False, highlight=False)
    pushed = "pushed" if change.pushed else "not pushed (use --push, or git push)"
    console.print(f"Committed {change.commit[:12]}, {pushed}.")


@app.command("monitor")
def monitor(
    model_dir: Annotated[
        Path, typer.Option(help="Model directory (schema.json, reference.parquet).")
    ],
    state_dir: Annotated[
        Path, typer.Option(help="Where windows, labels and reports are kept.")
    ],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    config: ConfigOption = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override a config field, e.g. monitoring.window_rows=500."
        ),
    ] = None,
) -> None:
    """Serve the drift monitor KServe's request logger posts to."""
    from components.monitoring.service import serve

    settings = _load(config, _parse_sets(set_ or []))
    serve(
        model_dir=model_dir,
        state_dir=state_dir,
        config=settings.monitoring,
        host=host,
        port=port,
    )


@app.command("drift")
def drift(
    reference: Annotated[
        Path | None,
        typer.Option(help="Reference table (default: the model's reference.parquet)."),
    ] = None,
    current: Annotated[Path | None, typer.Option(help="Current table.")] = None,
    output: Annotated[Path, typer.Option(help="Folder for the report.")] = Path(
        "drift-report"
    ),
    schema: Annotated[Path | None, typer.Option(help="schema.json to use.")] = None,
    model_dir: Annotated[
        Path | None, typer.Option(help="Model directory: schema and predictions.")
    ] = None,
    config: ConfigOption = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override a config field, e.g. monitoring.drift_share=0.3."
        ),
    ] = None,
) -> None:
    """Write the monitor's drift report for two CSV or Parquet files."""
    from components.common.artifacts import REFERENCE_FILE
    from components.monitoring.batch import drift_report

    if current is None:
        raise PlumbError("--current is required: the table to check for drift")
    if reference is None:
        if model_dir is None:
            raise PlumbError(
                "--reference is required without --model-dir (whose reference.parquet "
                "it defaults to)"
            )
        reference = model_dir / REFERENCE_FILE
    settings = _load(config, _parse_sets(set_ or []))
    report = drift_report(
        reference_path=reference,
        current_path=current,
        output_dir=output,
        config=settings.monitoring,
        schema_path=schema,
        model_dir=model_dir,
    )
    verdict = "drifted" if report["drifted"] else "no drift"
    columns = ", ".join(report["drifted_column_names"]) or "none"
    console.print(
        f"{verdict}: drift share {report['drift_share']:.2f}, drifted columns: "
        f"{columns}; report in {output}"
    )


def main() -> None:
    """Entry point of the `plumb` console script."""
    debug = "--debug" in sys.argv[1:]
    try:
        code = app(standalone_mode=False)
    except (click.exceptions.ClickException, typer.TyperException) as err:
        # typer 0.29 raises its bundled click's exceptions (subclasses of
        # TyperException); both kinds know how to print themselves as one usage line.
        show = getattr(err, "show", None)
        if show is None:
            raise
        show()
        code = getattr(err, "exit_code", 2)
    except (click.exceptions.Abort, typer.Abort):
        error_console.print("aborted")
        code = 1
    except PlumbError as err:
        if debug:
            raise
        error_console.print(
            f"error: {err}", markup=False, highlight=False, soft_wrap=True
        )
        code = 2
    except Exception as err:
        from pipelines.local import PipelineFailedError

        if debug or not isinstance(err, PipelineFailedError):
            raise
        # kfp colours its messages; the error line stays plain text.
        message = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
        error_console.print(
            f"error: {message}", markup=False, highlight=False, soft_wrap=True
        )
        code = 1
    sys.exit(code if isinstance(code, int) else 0)
