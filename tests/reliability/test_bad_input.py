"""The bad-input corpus: CLI arguments, config and data files, predictor and monitor HTTP.

Every case asserts the clear error (exit code 2 and one `error:` line naming the
problem, or the HTTP status and a message) and that the process still works afterwards:
the CLI runs the next case in the same interpreter, the servers answer a good request
after each bad one. The predictor and the monitor are started once for the module.
tests/test_cli.py, tests/serving/test_server.py and tests/monitoring cover more cases
of the same kinds; this table adds truncated and non-UTF-8 files, deep nesting, NaN and
infinity, huge numbers and batches, wrong content types and the feedback token.
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_helpers import (
    MODEL_NAME,
    TOKEN,
    ServerProcess,
    event_headers,
    start_monitor,
    start_predictor,
)

pytestmark = pytest.mark.integration

MAX_ROWS = 100
MAX_BODY_BYTES = 200_000
MAX_EVENT_BYTES = 100_000
DEEP = 5000
"""Nesting depth of the deep-JSON cases: past every parser's recursion limit."""

# -- the CLI, config files and data files -------------------------------------------

GOOD_CSV = "a,b,y\n" + "".join(f"{i},{i * 3 % 7},{i % 2}\n" for i in range(60))


@dataclass(frozen=True)
class CliCase:
    """Arguments after `plumb`, files to write first, and the expected message."""

    args: list[str]
    message: str
    files: tuple[tuple[str, bytes], ...] = ()


def _csv(name: str, text: str | bytes) -> tuple[tuple[str, bytes], ...]:
    return ((name, text if isinstance(text, bytes) else text.encode()),)


RUN_CSV = ["run", "--set", "data.target=y", "--dataset"]
CLI_CASES: dict[str, CliCase] = {
    "csv-truncated-in-a-quote": CliCase(
        [*RUN_CSV, "t.csv"],
        "cannot read data file 't.csv'",
        _csv("t.csv", GOOD_CSV + '61,"unterminated,1\n'),
    ),
    "csv-not-utf8": CliCase(
        [*RUN_CSV, "l.csv"],
        "is not UTF-8 text",
        _csv("l.csv", GOOD_CSV.encode() + "61,caf\xe9,1\n".encode("latin-1")),
    ),
    "csv-rows-wider-than-header": CliCase(
        [*RUN_CSV, "r.csv"],
        "hold more values than its header names columns (3: a, b, y)",
        _csv("r.csv", "a,b,y\n" + "".join(f"{i},{i},{i % 2},9\n" for i in range(40))),
    ),
    "csv-infinity": CliCase(
        [*RUN_CSV, "i.csv"],
        "column 'b' holds infinity",
        _csv("i.csv", "a,b,y\n" + "".join(f"{i},inf,{i % 2}\n" for i in range(40))),
    ),
    "csv-missing-feature-column": CliCase(
        [*RUN_CSV, "g.csv", "--set", "data.features=[a, zz]"],
        "column 'zz' not found in file 'g.csv'",
        _csv("g.csv", GOOD_CSV),
    ),
    "parquet-that-is-not-parquet": CliCase(
        [*RUN_CSV, "x.parquet"],
        "cannot read data file 'x.parquet'",
        _csv("x.parquet", b"PAR1 this is not a parquet file"),
    ),
    "unsupported-file-type": CliCase(
        [*RUN_CSV, "x.xlsx"], "unknown dataset 'x.xlsx'", _csv("x.xlsx", b"1")
    ),
    "config-yaml-syntax": CliCase(
        ["config", "--config", "c.yaml"],
        "is not valid YAML: line 2, column 1",
        _csv("c.yaml", "data: [unclosed\n"),
    ),
    "config-not-utf8": CliCase(
        ["config", "--config", "c.yaml"],
        "is not valid YAML",
        _csv("c.yaml", b"data:\n  dataset: \xff\xfe\n"),
    ),
    "config-deeply-nested": CliCase(
        ["config", "--config", "c.yaml"],
        "nests too deeply",
        _csv("c.yaml", "data: " + "[" * DEEP + "]" * DEEP + "\n"),
    ),
    "config-a-list": CliCase(
        ["config", "--config", "c.yaml"],
        "must hold a mapping of sections, got list",
        _csv("c.yaml", "- data\n- training\n"),
    ),
    "config-wrong-type": CliCase(
        ["config", "--config", "c.yaml"],
        "data.dataset: Input should be a valid string (got 5)",
        _csv("c.yaml", "data:\n  dataset: 5\n"),
    ),
    "config-nan": CliCase(
        ["config", "--config", "c.yaml"],
        "training.epochs: Input should be a finite number (got nan)",
        _csv("c.yaml", "training:\n  epochs: .nan\n"),
    ),
    "set-broken-yaml": CliCase(
        ["run", "--set", "training.epochs=[oops"],
        "training.epochs: Input should be a valid integer",
    ),
    "set-deeply-nested": CliCase(
        ["run", "--set", "training.epochs=" + "[" * DEEP],
        "--set training.epochs nests too deeply",
    ),
    "serve-missing-model-dir": CliCase(
        ["serve", "no-such-model"], "model directory 'no-such-model' does not exist"
    ),
    "serve-zero-row-cap": CliCase(
        ["serve", ".", "--max-rows", "0"], "--max-rows must be >= 1"
    ),
    "serve-zero-byte-cap": CliCase(
        ["serve", ".", "--max-body-bytes", "0"], "--max-body-bytes must be >= 1"
    ),
    "serve-port-out-of-range": CliCase(
        ["serve", ".", "--port", "99999"], "--port 99999 is not a TCP port"
    ),
    "serve-endless-batch-window": CliCase(
        ["serve", ".", "--batch-window-ms", "inf"],
        "--batch-window-ms must be between 0 and 1000 ms, got inf",
    ),
    "serve-nan-batch-window": CliCase(
        ["serve", ".", "--batch-window-ms", "nan"],
        "--batch-window-ms must be between 0 and 1000 ms, got nan",
    ),
    "serve-window-without-batching": CliCase(
        ["serve", ".", "--batch-window-ms", "5", "--no-batching"],
        "--batch-window-ms 5 needs batching; drop --no-batching or the window",
    ),
    "serve-host-not-this-machine": CliCase(
        ["serve", ".", "--host", "192.0.2.1"], "cannot listen on 192.0.2.1:8080"
    ),
    "monitor-not-a-model-dir": CliCase(
        ["monitor", "--model-dir", ".", "--state-dir", "state"],
        "no schema.json in model directory '.'",
    ),
    "drift-without-current": CliCase(
        ["drift", "--reference", "g.csv"],
        "--current is required",
        _csv("g.csv", GOOD_CSV),
    ),
}


@pytest.mark.parametrize("case_id", list(CLI_CASES))
def test_cli_bad_input_exits_2_with_one_clear_line(
    case_id: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each bad argument, config or data file: exit 2, one `error:` line, no run folder."""
    from plumb import cli

    case = CLI_CASES[case_id]
    for name, content in case.files:
        (tmp_path / name).write_bytes(content)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["plumb", *case.args])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    stderr = capsys.readouterr().err
    assert exited.value.code == 2, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    assert case.message in errors[0]
    assert "Traceback" not in stderr
    assert not (tmp_path / "runs").exists()


def test_serve_on_a_port_in_use_exits_2_before_loading(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`plumb serve` on a taken port: one `error:` line naming the port, exit 2."""
    from plumb import cli

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setattr(sys, "argv", ["plumb", "serve", ".", "--port", str(port)])
        with pytest.raises(SystemExit) as exited:
            cli.main()
    stderr = capsys.readouterr().err
    assert exited.value.code == 2, stderr
    assert (
        f"error: cannot listen on 127.0.0.1:{port} (Address already in use)" in stderr
    )
    assert "Traceback" not in stderr


# -- HTTP -----------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpCase:
    """One request and the answer it must get."""

    path: str
    body: bytes
    status: int
    message: str
    headers: tuple[tuple[str, str | bytes], ...] = (
        ("content-type", "application/json"),
    )


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _deep(prefix: str, suffix: str = "") -> bytes:
    return (prefix + "[" * DEEP + "]" * DEEP + suffix).encode()


V1 = f"/v1/models/{MODEL_NAME}:predict"
V2 = f"/v2/models/{MODEL_NAME}/infer"
EXPLAIN = f"/v1/models/{MODEL_NAME}:explain"


def _predictor_cases(names: list[str], row: list[float]) -> dict[str, HttpCase]:
    tail = b"," + b",".join(json.dumps(value).encode() for value in row[1:])
    first = names[0]

    def v2_input(**change: Any) -> bytes:
        tensor = {"name": first, "shape": [1], "datatype": "FP64", "data": [row[0]]}
        return _json({"inputs": [{**tensor, **change}]})

    return {
        "nan-literal": HttpCase(
            V1, b'{"instances": [[NaN' + tail + b"]]}", 400, "JSON"
        ),
        "infinity-literal": HttpCase(
            V1, b'{"instances": [[Infinity' + tail + b"]]}", 400, "JSON"
        ),
        "number-beyond-float64": HttpCase(
            V1, b'{"instances": [[1' + b"0" * 400 + tail + b"]]}", 400, "infinity"
        ),
        "nan-as-text": HttpCase(
            V1, _json({"instances": [["NaN", *row[1:]]]}), 400, f"{first!r} must be"
        ),
        "infinity-as-text": HttpCase(
            V1, _json({"instances": [["Infinity", *row[1:]]]}), 400, first
        ),
        "deeply-nested-array": HttpCase(V1, _deep(""), 400, "depth limit"),
        "deeply-nested-instances": HttpCase(
            V1, _deep('{"instances": ', "}"), 400, "depth limit"
        ),
        "deeply-nested-v2": HttpCase(V2, _deep('{"inputs": ', "}"), 400, "error"),
        "deeply-nested-explain": HttpCase(
            EXPLAIN, _deep('{"instances": ', "}"), 400, "depth limit"
        ),
        "body-not-utf8": HttpCase(
            V1, b'{"instances": [["\xff\xfe"' + tail + b"]]}", 400, "UTF-8"
        ),
        "content-type-text-plain": HttpCase(
            V1,
            _json({"instances": [row]}),
            400,
            "send it as application/json",
            (("content-type", "text/plain"),),
        ),
        "content-type-form": HttpCase(
            V1,
            b"instances=1",
            400,
            "send it as application/json",
            (("content-type", "application/x-www-form-urlencoded"),),
        ),
        "content-type-octet-stream": HttpCase(
            V1,
            b"\x00\x01\x02",
            400,
            "JSON",
            (("content-type", "application/octet-stream"),),
        ),
        "empty-body": HttpCase(V1, b"", 400, "empty document"),
        "body-null": HttpCase(V1, b"null", 400, "got NoneType"),
        "body-a-list": HttpCase(V1, b"[1, 2]", 400, "got list"),
        "instances-null": HttpCase(V1, b'{"instances": null}', 400, "instances"),
        "empty-batch": HttpCase(V1, _json({"instances": []}), 400, "empty"),
        "huge-batch-over-row-cap": HttpCase(
            V1, _json({"instances": [row] * (MAX_ROWS + 1)}), 413, f"{MAX_ROWS} allowed"
        ),
        "huge-body-over-byte-cap": HttpCase(
            V1,
            _json({"instances": [row] * (MAX_BODY_BYTES // 50)}),
            413,
            f"{MAX_BODY_BYTES} byte limit",
        ),
        "duplicate-column-v2": HttpCase(
            V2,
            _json(
                {
                    "inputs": [
                        {"name": name, "shape": [1], "datatype": "FP64", "data": [v]}
                        for name, v in [*zip(names, row, strict=True), (first, row[0])]
                    ]
                }
            ),
            400,
            f"{first!r} twice",
        ),
        "v2-data-null": HttpCase(V2, v2_input(data=None), 422, "data"),
        "v2-shape-overflows": HttpCase(
            V2, v2_input(shape=[10**12, 10**12]), 400, "[1000000000000, 1000000000000]"
        ),
        "explain-empty-batch": HttpCase(
            EXPLAIN, _json({"instances": []}), 400, "empty"
        ),
    }


EVENTS = "/events"
FEEDBACK = "/feedback"


def _headers(kind: str, **change: str) -> tuple[tuple[str, str], ...]:
    return tuple({**event_headers(kind), **change}.items())


def _monitor_cases(names: list[str], row: list[float]) -> dict[str, HttpCase]:
    record = dict(zip(names, row, strict=True))
    first = names[0]
    auth = (("authorization", f"Bearer {TOKEN}"),)
    as_json = (("content-type", "application/json"), *auth)
    request = _headers("request")
    return {
        "event-deeply-nested": HttpCase(
            EVENTS, _deep('{"instances": ', "}"), 400, "recursion", request
        ),
        "event-not-utf8": HttpCase(
            EVENTS, b'{"instances": [{"a": "\xff"}]}', 400, "not a JSON object", request
        ),
        "event-empty-body": HttpCase(EVENTS, b"", 400, "not a JSON object", request),
        "event-empty-batch": HttpCase(
            EVENTS, _json({"instances": []}), 400, "no rows", request
        ),
        "event-missing-column": HttpCase(
            EVENTS,
            _json({"instances": [{k: v for k, v in record.items() if k != first}]}),
            400,
            f"lacks column {first!r}",
            request,
        ),
        "event-infinity": HttpCase(
            EVENTS,
            _json({"instances": [{**record, first: "Infinity"}]}),
            400,
            "holds infinity",
            request,
        ),
        "event-number-beyond-float64": HttpCase(
            EVENTS,
            b'{"instances": [{"' + first.encode() + b'": 1' + b"0" * 400 + b"}]}",
            400,
            "finite number",
            request,
        ),
        "event-over-size-cap": HttpCase(
            EVENTS,
            _json({"instances": [record] * (MAX_EVENT_BYTES // 500)}),
            413,
            "exceeds max_event_bytes",
            request,
        ),
        "event-not-a-cloudevent": HttpCase(
            EVENTS, _json({"instances": [record]}), 400, "not a CloudEvent"
        ),
        "event-bad-specversion": HttpCase(
            EVENTS,
            _json({"instances": [record]}),
            400,
            "invalid specversion",
            _headers("request", **{"Ce-Specversion": "9.9"}),
        ),
        "event-empty-id": HttpCase(
            EVENTS,
            _json({"instances": [record]}),
            400,
            "ce-id is empty",
            _headers("request", **{"Ce-Id": ""}),
        ),
        "event-structured-truncated": HttpCase(
            EVENTS,
            b'{"specversion": "1.0", "id": ',
            400,
            "not a CloudEvent",
            (("content-type", "application/cloudevents+json"),),
        ),
        "response-nan-prediction": HttpCase(
            EVENTS, b'{"predictions": [NaN]}', 400, "not a number", _headers("response")
        ),
        "response-predictions-object": HttpCase(
            EVENTS,
            _json({"predictions": {"a": 1}}),
            400,
            "must be a list",
            _headers("response"),
        ),
        "feedback-without-token": HttpCase(
            FEEDBACK, _json({"labels": {"a": 1}}), 401, "bearer token"
        ),
        "feedback-wrong-token": HttpCase(
            FEEDBACK,
            _json({"labels": {"a": 1}}),
            401,
            "bearer token",
            (("content-type", "application/json"), ("authorization", "Bearer nope")),
        ),
        "feedback-basic-auth": HttpCase(
            FEEDBACK,
            _json({"labels": {"a": 1}}),
            401,
            "bearer token",
            (("content-type", "application/json"), ("authorization", f"Basic {TOKEN}")),
        ),
        "feedback-non-ascii-token": HttpCase(
            FEEDBACK,
            _json({"labels": {"a": 1}}),
            401,
            "bearer token",
            (
                ("content-type", "application/json"),
                ("authorization", b"Bearer \xff\xfe"),
            ),
        ),
        "feedback-text-plain": HttpCase(
            FEEDBACK,
            _json({"labels": {"a": 1}}),
            415,
            "application/json",
            (("content-type", "text/plain"), *auth),
        ),
        "feedback-truncated-json": HttpCase(
            FEEDBACK, b'{"labels": ', 400, "not JSON", as_json
        ),
        "feedback-not-utf8": HttpCase(
            FEEDBACK, b'{"labels": {"\xff": 1}}', 400, "not JSON", as_json
        ),
        "feedback-deeply-nested": HttpCase(
            FEEDBACK, _deep('{"labels": ', "}"), 400, "nests too deeply", as_json
        ),
        "feedback-nan-label": HttpCase(
            FEEDBACK, b'{"labels": {"a": NaN}}', 400, "label nan", as_json
        ),
        "feedback-empty-labels": HttpCase(
            FEEDBACK, _json({"labels": {}}), 400, "feedback body must be", as_json
        ),
        "feedback-wrong-class": HttpCase(
            FEEDBACK, _json({"labels": {"a": "maybe"}}), 400, "one of", as_json
        ),
        "feedback-over-size-cap": HttpCase(
            FEEDBACK,
            _json({"labels": {str(i): 1 for i in range(MAX_EVENT_BYTES // 8)}}),
            413,
            "exceeds max_event_bytes",
            as_json,
        ),
    }


PREDICTOR_IDS = list(_predictor_cases(["x"] * 2, [1.0, 2.0]))
MONITOR_IDS = list(_monitor_cases(["x", "y"], [1.0, 2.0]))


def test_corpus_holds_at_least_forty_cases() -> None:
    """The corpus spans CLI, files, predictor and monitor with 40+ cases in all."""
    counts = [len(CLI_CASES), len(PREDICTOR_IDS), len(MONITOR_IDS)]
    assert sum(counts) >= 40, counts
    assert min(counts) >= 15, counts


@pytest.fixture(scope="module")
def predictor(
    trained_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """The predictor with small caps, started once for the module."""
    log = tmp_path_factory.mktemp("predictor") / "predictor.log"
    server = start_predictor(
        trained_model_dir,
        log,
        "--max-rows",
        str(MAX_ROWS),
        "--max-body-bytes",
        str(MAX_BODY_BYTES),
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def monitor(
    trained_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """The monitor with a feedback token and a small event cap, started once."""
    root = tmp_path_factory.mktemp("monitor")
    server = start_monitor(
        trained_model_dir,
        root / "state",
        root / "monitor.log",
        max_event_bytes=MAX_EVENT_BYTES,
    )
    yield server
    server.stop()


def _post(server: ServerProcess, case: HttpCase) -> httpx.Response:
    return httpx.post(
        server.url + case.path,
        content=case.body,
        headers=dict(case.headers),
        timeout=60,
    )


def _check(response: httpx.Response, case: HttpCase) -> None:
    assert response.status_code == case.status, response.text[:500]
    body = response.json()
    text = json.dumps(body)
    assert case.message in text or case.message in str(body), text[:500]


def _predictor_works(server: ServerProcess, row: list[float]) -> None:
    good = httpx.post(server.url + V1, json={"instances": [row]}, timeout=30)
    assert good.status_code == 200, good.text
    assert server.healthy()


def _monitor_works(server: ServerProcess, row: list[float], names: list[str]) -> None:
    record = dict(zip(names, row, strict=True))
    good = httpx.post(
        server.url + EVENTS,
        content=_json({"instances": [record]}),
        headers=event_headers("request"),
        timeout=30,
    )
    assert good.status_code == 200, good.text
    assert server.healthy()


@pytest.mark.parametrize("case_id", PREDICTOR_IDS)
def test_predictor_answers_bad_requests_with_4xx(
    case_id: str,
    predictor: ServerProcess,
    good_rows: list[list[float]],
    feature_names: list[str],
) -> None:
    """Each malformed request gets its 4xx and message; the predictor keeps serving."""
    case = _predictor_cases(feature_names, good_rows[0])[case_id]
    _check(_post(predictor, case), case)
    _predictor_works(predictor, good_rows[0])


@pytest.mark.parametrize("case_id", MONITOR_IDS)
def test_monitor_answers_bad_requests_with_4xx(
    case_id: str,
    monitor: ServerProcess,
    good_rows: list[list[float]],
    feature_names: list[str],
) -> None:
    """Each malformed event or feedback gets its 4xx and message; the monitor keeps going."""
    case = _monitor_cases(feature_names, good_rows[0])[case_id]
    _check(_post(monitor, case), case)
    _monitor_works(monitor, good_rows[0], feature_names)


def test_huge_values_give_finite_predictions(
    predictor: ServerProcess, good_rows: list[list[float]]
) -> None:
    """Finite but absurd values (1e300) are answered with a finite probability, not null."""
    rows = [[1e300] * len(good_rows[0]), [-1e300] * len(good_rows[0])]
    for path in (V1, EXPLAIN):
        response = httpx.post(
            predictor.url + path, json={"instances": rows}, timeout=30
        )
        assert response.status_code == 200, response.text
        answers = response.json().get("predictions") or response.json()["explanations"]
        assert all(0.0 <= answer["probability"] <= 1.0 for answer in answers)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=25,
)
wrappers: list[Callable[[Any], Any]] = [
    lambda value: value,
    lambda value: {"instances": value},
    lambda value: {"instances": [value]},
    lambda value: {"inputs": value},
    lambda value: {
        "inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": value}]
    },
]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(value=json_values, wrap=st.sampled_from(range(len(wrappers))))
def test_arbitrary_json_never_gets_a_5xx(
    predictor: ServerProcess, monitor: ServerProcess, value: Any, wrap: int
) -> None:
    """Any JSON body to the predictor's three routes and the monitor's /events: no 5xx."""
    body = _json(wrappers[wrap](value))
    for server, path, headers in (
        (predictor, V1, {"content-type": "application/json"}),
        (predictor, V2, {"content-type": "application/json"}),
        (predictor, EXPLAIN, {"content-type": "application/json"}),
        (monitor, EVENTS, event_headers("request")),
    ):
        response = httpx.post(
            server.url + path, content=body, headers=headers, timeout=30
        )
        assert response.status_code < 500, (path, body[:200], response.text[:300])
