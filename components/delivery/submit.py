"""Submit plumb's pipeline to a Kubeflow Pipelines endpoint with `kfp.Client`.

The pipeline is compiled fresh from `pipelines/training.py` into a temporary file, so
what runs on the cluster is the code checked out here. A run (or a recurring run) is
created in an experiment; optionally the call waits for the run to finish. Before any
of that, one GET on the API's healthz route turns the two common failures, a host that
does not answer and credentials it refuses, into one clear line each.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from components.delivery.errors import KfpAuthError, KfpUnreachableError, SubmitError

logger = logging.getLogger(__name__)

HEALTHZ_PATH = "/apis/v2beta1/healthz"
SUCCEEDED_STATES = frozenset({"SUCCEEDED"})


@dataclass(frozen=True)
class SubmitRequest:
    """What to submit where.

    Exactly one of `cron_expression` and `interval_seconds` makes it a recurring run;
    with neither it is a single run.
    """

    host: str
    """Base URL of the Kubeflow Pipelines API, e.g. http://localhost:8888."""
    arguments: Mapping[str, Any] = field(default_factory=dict)
    """Pipeline parameters (plumb's pipeline takes `config_json`)."""
    namespace: str = "kubeflow"
    """Kubeflow profile namespace the run belongs to (multi-user installs)."""
    experiment: str = "plumb"
    """Experiment to file the run under; created when missing."""
    run_name: str | None = None
    """Display name of the run (or recurring run); default: pipeline name and time."""
    enable_caching: bool = True
    """Reuse outputs of steps whose inputs did not change."""
    service_account: str | None = None
    """Kubernetes service account the run's pods use (e.g. plumb-pipeline)."""
    token: str | None = None
    """Bearer token for the API (an OIDC ID token or a service-account token)."""
    wait: bool = False
    """Block until the run finishes and fail unless it succeeded (single runs only)."""
    timeout_seconds: int = 3600
    """How long `wait` waits before giving up."""
    cron_expression: str | None = None
    """Six-field cron schedule (seconds first) of a recurring run."""
    interval_seconds: int | None = None
    """Period of a recurring run, as an alternative to a cron schedule."""
    max_concurrency: int = 1
    """Most runs of a recurring run that may be active at once."""
    connect_timeout_seconds: float = 10.0
    """Timeout of the reachability check."""

    @property
    def recurring(self) -> bool:
        """Whether this request creates a recurring run."""
        return self.cron_expression is not None or self.interval_seconds is not None


@dataclass(frozen=True)
class SubmitResult:
    """What the API created."""

    experiment_id: str
    run_id: str | None = None
    recurring_run_id: str | None = None
    state: str | None = None
    """Final state of a run that was waited for (SUCCEEDED), else None."""
    url: str | None = None
    """Link to the run in the Kubeflow UI."""


ClientFactory = Callable[..., Any]


def validate_request(request: SubmitRequest) -> None:
    """Check the request before touching the network.

    Raises:
        SubmitError: A field is out of range or two fields contradict each other.
    """
    if not request.host.startswith(("http://", "https://")):
        raise SubmitError(
            f"--host must be an http(s) URL of the Kubeflow Pipelines API, got "
            f"{request.host!r}; e.g. http://localhost:8888 after "
            "`kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8888:80`"
        )
    if request.cron_expression is not None and request.interval_seconds is not None:
        raise SubmitError(
            "give either --cron or --every-seconds for a recurring run, not both "
            f"(got {request.cron_expression!r} and {request.interval_seconds})"
        )
    if (
        request.cron_expression is not None
        and len(request.cron_expression.split()) != 6
    ):
        raise SubmitError(
            f"--cron needs six fields (seconds minutes hours day month weekday), got "
            f"{request.cron_expression!r}; e.g. '0 0 3 * * *' for 03:00 every day"
        )
    if request.interval_seconds is not None and request.interval_seconds < 60:
        raise SubmitError(
            f"--every-seconds must be at least 60, got {request.interval_seconds}"
        )
    if request.recurring and request.wait:
        raise SubmitError("--wait applies to single runs, not to recurring runs")
    if request.timeout_seconds < 1:
        raise SubmitError(f"--timeout must be positive, got {request.timeout_seconds}")
    if request.max_concurrency < 1:
        raise SubmitError(
            f"--max-concurrency must be at least 1, got {request.max_concurrency}"
        )


def check_endpoint(
    host: str, *, token: str | None = None, timeout_seconds: float = 10.0
) -> None:
    """Fail fast when the API does not answer or refuses the credentials.

    Raises:
        KfpUnreachableError: Nothing answers at `host` (refused, DNS, timeout, TLS).
        KfpAuthError: The API answered 401 or 403.
        SubmitError: Any other non-success answer (e.g. 404: not a KFP API).
    """
    url = host.rstrip("/") + HEALTHZ_PATH
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(url, headers=headers, timeout=timeout_seconds)
    except httpx.TransportError as err:
        raise KfpUnreachableError(
            f"cannot reach the Kubeflow Pipelines API at {host!r} ({err}); check "
            "--host, and that a port-forward or ingress to ml-pipeline is running"
        ) from err
    if response.status_code in (401, 403):
        raise KfpAuthError(
            f"the Kubeflow Pipelines API at {host!r} refused the credentials "
            f"(HTTP {response.status_code}); pass a valid --token (or "
            "PLUMB_KFP_TOKEN), e.g. an ID token for your Kubeflow profile"
        )
    if response.is_redirect:
        raise KfpAuthError(
            f"the Kubeflow Pipelines API at {host!r} redirected to "
            f"{response.headers.get('location')!r}, a login page: pass --token "
            "(or PLUMB_KFP_TOKEN) so requests are authenticated"
        )
    if response.status_code >= 400:
        raise SubmitError(
            f"{url!r} answered HTTP {response.status_code}; is {host!r} the "
            "Kubeflow Pipelines API (ml-pipeline) and not another service?"
        )


def submit_pipeline(
    request: SubmitRequest,
    *,
    package_path: str | Path | None = None,
    client_factory: ClientFactory | None = None,
) -> SubmitResult:
    """Compile (unless given a package) and submit the pipeline.

    Args:
        request: Where and how to submit.
        package_path: A compiled pipeline YAML; default: compile pipelines/training.py.
        client_factory: Builds the client (default `kfp.Client`); tests inject one.

    Returns:
        The IDs of what was created, and the final state when `wait` was asked for.

    Raises:
        SubmitError: Bad request, unreachable API, refused credentials, or a run that
            did not succeed while waited for.
    """
    validate_request(request)
    check_endpoint(
        request.host,
        token=request.token,
        timeout_seconds=request.connect_timeout_seconds,
    )
    factory = client_factory or _kfp_client
    client = factory(
        host=request.host, namespace=request.namespace, existing_token=request.token
    )

    with tempfile.TemporaryDirectory(prefix="plumb-submit-") as tmp:
        package = Path(package_path) if package_path else _compile(Path(tmp))
        with _api_errors(request.host):
            experiment = client.create_experiment(
                name=request.experiment, namespace=request.namespace
            )
            experiment_id = experiment.experiment_id
            if request.recurring:
                return _create_recurring_run(client, request, package, experiment_id)
            run = client.create_run_from_pipeline_package(
                pipeline_file=str(package),
                arguments=dict(request.arguments),
                run_name=request.run_name,
                experiment_id=experiment_id,
                namespace=request.namespace,
                enable_caching=request.enable_caching,
                service_account=request.service_account,
            )
            run_id = run.run_id
            url = f"{request.host.rstrip('/')}/#/runs/details/{run_id}"
            logger.info("Created run %s in experiment %s", run_id, request.experiment)
            if not request.wait:
                return SubmitResult(experiment_id=experiment_id, run_id=run_id, url=url)
            state = _wait(client, run_id, request.timeout_seconds)
    return SubmitResult(
        experiment_id=experiment_id, run_id=run_id, state=state, url=url
    )


def _kfp_client(**kwargs: Any) -> Any:
    import kfp

    return kfp.Client(**kwargs)


def _compile(folder: Path) -> Path:
    from pipelines.training import compile_pipeline

    return compile_pipeline(folder / "plumb-training.yaml")


def _create_recurring_run(
    client: Any, request: SubmitRequest, package: Path, experiment_id: str
) -> SubmitResult:
    job_name = request.run_name or "plumb-training-recurring"
    recurring = client.create_recurring_run(
        experiment_id=experiment_id,
        job_name=job_name,
        cron_expression=request.cron_expression,
        interval_second=request.interval_seconds,
        max_concurrency=request.max_concurrency,
        no_catchup=True,
        params=dict(request.arguments),
        pipeline_package_path=str(package),
        enable_caching=request.enable_caching,
        service_account=request.service_account,
    )
    recurring_run_id = recurring.recurring_run_id
    logger.info(
        "Created recurring run %s (%s)",
        recurring_run_id,
        request.cron_expression or f"every {request.interval_seconds} s",
    )
    return SubmitResult(
        experiment_id=experiment_id,
        recurring_run_id=recurring_run_id,
        url=f"{request.host.rstrip('/')}/#/recurringrun/details/{recurring_run_id}",
    )


def _wait(client: Any, run_id: str, timeout_seconds: int) -> str:
    try:
        run = client.wait_for_run_completion(run_id=run_id, timeout=timeout_seconds)
    except TimeoutError as err:
        raise SubmitError(
            f"run {run_id} did not finish within {timeout_seconds} s; it keeps "
            "running on the cluster (raise --timeout to wait longer)"
        ) from err
    state = str(run.state).upper()
    if state in SUCCEEDED_STATES:
        logger.info("Run %s succeeded", run_id)
        return state
    reason = getattr(getattr(run, "error", None), "message", None) or "no message"
    raise SubmitError(f"run {run_id} ended {state}: {reason}")


@contextmanager
def _api_errors(host: str) -> Iterator[None]:
    """Translate kfp_server_api / urllib3 failures into `SubmitError`s."""
    try:
        yield
    except SubmitError:
        raise
    except Exception as exc:
        status = getattr(exc, "status", None)
        if status in (401, 403):
            raise KfpAuthError(
                f"the Kubeflow Pipelines API at {host!r} refused the request "
                f"(HTTP {status}: {getattr(exc, 'reason', '')}); check --token and "
                "that your profile may use --namespace"
            ) from exc
        if type(exc).__name__ in {"MaxRetryError", "NewConnectionError"}:
            raise KfpUnreachableError(
                f"lost the Kubeflow Pipelines API at {host!r} ({exc})"
            ) from exc
        if status is not None:
            body = str(getattr(exc, "body", "") or "")[:300]
            raise SubmitError(
                f"the Kubeflow Pipelines API at {host!r} answered HTTP {status}: "
                f"{body or getattr(exc, 'reason', '')}"
            ) from exc
        raise
