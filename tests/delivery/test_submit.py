"""`plumb submit`: errors for unreachable or refusing endpoints, and what it sends.

No Kubeflow Pipelines API server can run here. The unreachable-host check talks to a
closed port on 127.0.0.1 for real. The other tests stand up a small HTTP server on
127.0.0.1 that answers the v2beta1 REST routes kfp.Client calls (healthz, experiments,
runs, recurring runs) the way ml-pipeline does; the real kfp.Client talks to it over
HTTP, so the compiled pipeline and the request bodies are the ones a cluster would get.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from components.delivery.errors import KfpAuthError, KfpUnreachableError, SubmitError
from components.delivery.submit import SubmitRequest, check_endpoint, submit_pipeline

from .conftest import ROOT


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeKfp(BaseHTTPRequestHandler):
    """Answers the ml-pipeline v2beta1 routes kfp.Client uses; records the bodies."""

    requests: list[tuple[str, str, dict[str, Any]]]
    token: str | None
    final_state = "SUCCEEDED"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Stay quiet."""

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        if self.token and self.headers.get("Authorization") != f"Bearer {self.token}":
            self._reply(401, {"error": "Unauthorized", "code": 16})
            return False
        return True

    def do_GET(self) -> None:
        """Healthz, experiment lookup by name, run state."""
        self.requests.append(("GET", self.path, {}))
        if not self._authorised():
            return
        if self.path.startswith("/apis/v2beta1/healthz"):
            self._reply(200, {"multi_user": False})
        elif self.path.startswith("/apis/v2beta1/experiments"):
            self._reply(200, {"experiments": [], "total_size": 0})
        elif self.path.startswith("/apis/v2beta1/runs/"):
            run_id = self.path.rsplit("/", 1)[-1]
            self._reply(200, {"run_id": run_id, "state": self.final_state})
        else:
            self._reply(404, {"error": "not found"})

    def do_POST(self) -> None:
        """Create experiment, run, recurring run."""
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        self.requests.append(("POST", self.path, body))
        if not self._authorised():
            return
        if self.path == "/apis/v2beta1/experiments":
            self._reply(200, {**body, "experiment_id": "exp-1"})
        elif self.path == "/apis/v2beta1/runs":
            self._reply(200, {**body, "run_id": "run-1", "state": "PENDING"})
        elif self.path == "/apis/v2beta1/recurringruns":
            self._reply(200, {**body, "recurring_run_id": "rr-1"})
        else:
            self._reply(404, {"error": "not found"})


@pytest.fixture
def fake_kfp() -> Iterator[tuple[str, type[FakeKfp]]]:
    """A stand-in ml-pipeline API on 127.0.0.1, stopped after the test."""
    handler = type("Handler", (FakeKfp,), {"requests": [], "token": None})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_unreachable_host_is_one_clear_error() -> None:
    """A closed 127.0.0.1 port gives KfpUnreachableError naming the host and a fix."""
    host = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(KfpUnreachableError, match="cannot reach") as info:
        submit_pipeline(SubmitRequest(host=host), package_path=ROOT / "pyproject.toml")
    assert host in str(info.value) and "port-forward" in str(info.value)


def test_cli_reports_unreachable_host_in_one_line_with_exit_2() -> None:
    """`plumb submit` against a closed port exits 2 with one `error:` line."""
    host = f"http://127.0.0.1:{_closed_port()}"
    result = subprocess.run(
        [sys.executable, "-m", "plumb", "submit", "--host", host],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach")


def test_refused_credentials_are_an_auth_error(
    fake_kfp: tuple[str, type[FakeKfp]],
) -> None:
    """A 401 from the API becomes KfpAuthError telling to pass --token."""
    host, handler = fake_kfp
    handler.token = "right-token"
    with pytest.raises(KfpAuthError, match="--token"):
        check_endpoint(host, token="wrong-token")
    check_endpoint(host, token="right-token")


def test_not_a_kfp_api_is_named(fake_kfp: tuple[str, type[FakeKfp]]) -> None:
    """A server without the healthz route is reported as not the KFP API."""
    host, _ = fake_kfp
    with pytest.raises(SubmitError, match="not another service"):
        check_endpoint(host + "/somewhere-else")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"host": "localhost:8888"}, "http"),
        ({"cron_expression": "0 3 * * *"}, "six fields"),
        ({"cron_expression": "0 0 3 * * *", "interval_seconds": 3600}, "not both"),
        ({"interval_seconds": 5}, "at least 60"),
        ({"interval_seconds": 3600, "wait": True}, "single runs"),
    ],
)
def test_bad_requests_fail_before_the_network(
    fields: dict[str, Any], message: str
) -> None:
    """Contradictory or malformed options are refused with a message saying why."""
    request = SubmitRequest(**{"host": "http://127.0.0.1:9", **fields})
    with pytest.raises(SubmitError, match=message):
        submit_pipeline(request)


@pytest.mark.slow
def test_submit_compiles_and_creates_a_run_with_caching_off(
    fake_kfp: tuple[str, type[FakeKfp]],
) -> None:
    """A run is created in the experiment with the compiled pipeline, the parameters,
    caching off and the token; --wait returns the final state."""
    host, handler = fake_kfp
    handler.token = "t0ken"
    result = submit_pipeline(
        SubmitRequest(
            host=host,
            arguments={"config_json": '{"data": {"dataset": "breast-cancer"}}'},
            experiment="plumb-tests",
            run_name="nightly",
            enable_caching=False,
            service_account="plumb-pipeline",
            token="t0ken",
            wait=True,
            timeout_seconds=30,
        )
    )
    assert result.run_id == "run-1" and result.state == "SUCCEEDED"
    posts = {path: body for method, path, body in handler.requests if method == "POST"}
    assert posts["/apis/v2beta1/experiments"]["display_name"] == "plumb-tests"
    run = posts["/apis/v2beta1/runs"]
    assert run["display_name"] == "nightly"
    assert run["experiment_id"] == "exp-1"
    assert run["service_account"] == "plumb-pipeline"
    spec = run["pipeline_spec"]
    assert spec["pipelineInfo"]["name"] == "plumb-training"
    assert run["runtime_config"]["parameters"]["config_json"].startswith('{"data"')
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks and all(
        task.get("cachingOptions", {}).get("enableCache") is not True
        for task in tasks.values()
    )


def test_failed_run_fails_the_wait(fake_kfp: tuple[str, type[FakeKfp]]) -> None:
    """--wait on a run that ends FAILED raises SubmitError naming the run."""
    host, handler = fake_kfp
    handler.final_state = "FAILED"
    with pytest.raises(SubmitError, match="run-1 ended FAILED"):
        submit_pipeline(
            SubmitRequest(host=host, wait=True, timeout_seconds=30),
            package_path=ROOT / "pipelines" / "training.yaml",
        )


def test_recurring_run_is_created_on_a_cron_schedule(
    fake_kfp: tuple[str, type[FakeKfp]],
) -> None:
    """--cron creates a recurring run with the schedule and max concurrency."""
    host, handler = fake_kfp
    result = submit_pipeline(
        SubmitRequest(
            host=host,
            cron_expression="0 0 3 * * *",
            max_concurrency=2,
            run_name="nightly",
        ),
        package_path=ROOT / "pipelines" / "training.yaml",
    )
    assert result.recurring_run_id == "rr-1"
    body = next(b for m, p, b in handler.requests if p == "/apis/v2beta1/recurringruns")
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *"
    assert int(body["max_concurrency"]) == 2
    assert body["display_name"] == "nightly"
