"""The real kserve ModelServer serving a trained plumb model on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from components.common.model_runtime import load_model
from components.evaluate.explain import explain_rows
from components.preprocess.lib import PreparedData

MODEL_NAME = "plumb-model"

pytestmark = [pytest.mark.slow, pytest.mark.integration]

# Predictions travel as JSON doubles of float32 network outputs: the round trip is exact
# up to float formatting, so 1e-9 absolute leaves room only for printing.
VALUE_TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def rows(prepared_breast_cancer: PreparedData) -> pd.DataFrame:
    schema = prepared_breast_cancer.schema
    return prepared_breast_cancer.splits["test"][schema.feature_names].head(25)


@pytest.fixture(scope="module")
def expected(trained_model_dir: Path, rows: pd.DataFrame) -> np.ndarray:
    return load_model(trained_model_dir).predict(rows)


def _v1(server: Any, verb: str = "predict") -> str:
    return f"{server.base_url}/v1/models/{MODEL_NAME}:{verb}"


def _v2_inputs(rows: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {"name": name, "shape": [len(rows)], "datatype": "FP64", "data": values}
        for name, values in rows.to_dict(orient="list").items()
    ]


def test_binds_loopback_only(server: Any) -> None:
    """The HTTP socket listens on 127.0.0.1, not on every interface."""
    tcp = Path("/proc/net/tcp")
    if not tcp.exists():
        pytest.skip("needs Linux /proc/net/tcp")
    listening = [
        line.split()[1]
        for line in tcp.read_text().splitlines()[1:]
        if line.split()[3] == "0A"  # LISTEN
    ]
    ours = [address for address in listening if address.endswith(f":{server.port:04X}")]
    assert ours == [f"0100007F:{server.port:04X}"]
    assert "Uvicorn running on http://127.0.0.1" in server.log()


def test_v1_lists_match_in_process(
    server: Any, rows: pd.DataFrame, expected: np.ndarray
) -> None:
    """V1 rows as lists in schema order give the in-process probabilities and labels."""
    response = httpx.post(_v1(server), json={"instances": rows.values.tolist()})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    served = np.array([p["probability"] for p in predictions])
    np.testing.assert_allclose(served, expected, rtol=0, atol=VALUE_TOLERANCE)
    labels = [p["label"] for p in predictions]
    assert labels == ["malignant" if p >= 0.5 else "benign" for p in expected]


def test_concurrent_single_rows_each_get_their_own_answer(
    server: Any, rows: pd.DataFrame, expected: np.ndarray
) -> None:
    """Rows sent at once on many connections (batched by the server) answer as alone.

    A batched row may differ from the in-process value by float32 rounding of the
    matrix products over the batch, hence 1e-6 rather than VALUE_TOLERANCE.
    """
    import asyncio

    async def send_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(rows))
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            return await asyncio.gather(
                *(
                    client.post(_v1(server), json={"instances": [row]})
                    for row in rows.values.tolist()
                )
            )

    for _ in range(3):
        responses = asyncio.run(send_all())
        assert all(r.status_code == 200 for r in responses), responses[0].text
        served = [r.json()["predictions"][0]["probability"] for r in responses]
        np.testing.assert_allclose(served, expected, rtol=0, atol=1e-6)


def test_v1_objects_match_lists(
    server: Any, rows: pd.DataFrame, expected: np.ndarray
) -> None:
    """V1 rows keyed by column name (in any key order) answer like list rows."""
    shuffled = rows[list(reversed(rows.columns))]
    response = httpx.post(
        _v1(server), json={"instances": shuffled.to_dict(orient="records")}
    )
    assert response.status_code == 200, response.text
    served = np.array([p["probability"] for p in response.json()["predictions"]])
    np.testing.assert_allclose(served, expected, rtol=0, atol=VALUE_TOLERANCE)


def test_v2_infer_matches_in_process(
    server: Any, rows: pd.DataFrame, expected: np.ndarray
) -> None:
    """V2 /infer with one tensor per column gives the in-process probabilities."""
    response = httpx.post(
        f"{server.base_url}/v2/models/{MODEL_NAME}/infer",
        json={"id": "req-1", "inputs": _v2_inputs(rows)},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "req-1"
    outputs = {output["name"]: output for output in body["outputs"]}
    assert outputs["probability"]["shape"] == [len(rows)]
    np.testing.assert_allclose(
        outputs["probability"]["data"], expected, rtol=0, atol=VALUE_TOLERANCE
    )
    assert outputs["label"]["datatype"] == "BYTES"


def test_v2_columnar_tensors_match_in_process(
    server: Any, trained_model_dir: Path, rows: pd.DataFrame, expected: np.ndarray
) -> None:
    """V2 takes nested [rows, 1] columns and the transformed `features` tensor (JSON
    and binary) and answers with the in-process probabilities."""
    url = f"{server.base_url}/v2/models/{MODEL_NAME}/infer"
    nested = [
        {**tensor, "shape": [len(rows), 1], "data": [[v] for v in tensor["data"]]}
        for tensor in _v2_inputs(rows)
    ]
    matrix = load_model(trained_model_dir).transform.apply(rows)
    features = {"name": "features", "shape": list(matrix.shape), "datatype": "FP32"}
    header = json.dumps(
        {"inputs": [{**features, "parameters": {"binary_data_size": matrix.nbytes}}]}
    ).encode()
    answers = [
        httpx.post(url, json={"inputs": nested}),
        httpx.post(
            url, json={"inputs": [{**features, "data": matrix.ravel().tolist()}]}
        ),
        httpx.post(
            url,
            content=header + matrix.tobytes(),
            headers={
                "content-type": "application/octet-stream",
                "inference-header-content-length": str(len(header)),
            },
        ),
    ]
    for response in answers:
        assert response.status_code == 200, response.text
        outputs = {output["name"]: output for output in response.json()["outputs"]}
        np.testing.assert_allclose(
            outputs["probability"]["data"], expected, rtol=0, atol=VALUE_TOLERANCE
        )


BATCH_ROWS = 1_000
# The brief's bound for a full batch: every route parses the same JSON doubles and runs
# the same float32 network, so they agree far closer; 1e-6 leaves room for nothing else.
BATCH_TOLERANCE = 1e-6


def test_1000_row_batch_agrees_across_v1_v2_and_in_process(
    start_server: Any,
    trained_model_dir: Path,
    prepared_breast_cancer: PreparedData,
    tmp_path: Path,
) -> None:
    """A 1,000-row batch (ints, zeros and ones among the doubles) gets the in-process
    probabilities and labels from V1 list rows, V1 objects and V2 JSON columns."""
    schema = prepared_breast_cancer.schema
    test = prepared_breast_cancer.splits["test"][schema.feature_names]
    rng = np.random.default_rng(0)
    picked = test.iloc[rng.integers(0, len(test), size=BATCH_ROWS)]
    noise = rng.uniform(0.9, 1.1, size=picked.shape)
    instances: list[list[Any]] = (picked.to_numpy() * noise).tolist()
    for index in range(0, BATCH_ROWS, 7):  # exact ints, 0 and 1 take their own checks
        row = instances[index]
        row[0], row[1], row[2] = round(row[0]), 0, 1.0
    frame = pd.DataFrame(instances, columns=schema.feature_names)
    expected = load_model(trained_model_dir).predict(frame)
    columns = {name: [row[i] for row in instances] for i, name in enumerate(frame)}
    v2_inputs = [
        {"name": name, "shape": [BATCH_ROWS], "datatype": "FP64", "data": values}
        for name, values in columns.items()
    ]

    with start_server(trained_model_dir, tmp_path / "server.log") as server:
        v1_url = f"{server.base_url}/v1/models/{MODEL_NAME}:predict"
        objects = [dict(zip(frame.columns, row, strict=True)) for row in instances]
        v1_answers = [
            httpx.post(v1_url, json={"instances": body}, timeout=30)
            for body in (instances, objects)
        ]
        v2_answer = httpx.post(
            f"{server.base_url}/v2/models/{MODEL_NAME}/infer",
            json={"inputs": v2_inputs},
            timeout=30,
        )

    labels = ["malignant" if p >= 0.5 else "benign" for p in expected]
    for response in v1_answers:
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
        served = np.array([p["probability"] for p in predictions])
        np.testing.assert_allclose(served, expected, rtol=0, atol=BATCH_TOLERANCE)
        assert [p["label"] for p in predictions] == labels
    assert v2_answer.status_code == 200, v2_answer.text
    outputs = {output["name"]: output for output in v2_answer.json()["outputs"]}
    np.testing.assert_allclose(
        outputs["probability"]["data"], expected, rtol=0, atol=BATCH_TOLERANCE
    )
    assert outputs["label"]["data"] == labels


def test_v2_requested_outputs_are_filtered(server: Any, rows: pd.DataFrame) -> None:
    """`outputs` in a V2 request limits the answer to the outputs named there."""
    response = httpx.post(
        f"{server.base_url}/v2/models/{MODEL_NAME}/infer",
        json={"inputs": _v2_inputs(rows.head(2)), "outputs": [{"name": "label"}]},
    )
    assert response.status_code == 200, response.text
    assert [output["name"] for output in response.json()["outputs"]] == ["label"]


def test_v2_health_and_metadata(server: Any, rows: pd.DataFrame) -> None:
    """kserve's V2 health and metadata endpoints describe plumb's inputs and outputs."""
    base = server.base_url
    assert httpx.get(f"{base}/v2/health/live").status_code == 200
    assert httpx.get(f"{base}/v2/health/ready").status_code == 200
    assert httpx.get(f"{base}/v2/models/{MODEL_NAME}/ready").status_code == 200
    metadata = httpx.get(f"{base}/v2/models/{MODEL_NAME}").json()
    assert [tensor["name"] for tensor in metadata["inputs"]] == list(rows.columns)
    assert [tensor["name"] for tensor in metadata["outputs"]] == [
        "probability",
        "label",
    ]


def test_explain_matches_evaluation(
    server: Any, trained_model_dir: Path, rows: pd.DataFrame
) -> None:
    """:explain returns the attributions evaluation computes with explain_rows."""
    few = rows.head(4)
    response = httpx.post(
        _v1(server, "explain"), json={"instances": few.values.tolist()}
    )
    assert response.status_code == 200, response.text
    explanations = response.json()["explanations"]
    expected = explain_rows(load_model(trained_model_dir), few.reset_index(drop=True))
    assert len(explanations) == len(expected)
    for served, local in zip(explanations, expected, strict=True):
        assert served["attributions"].keys() == local.keys()
        np.testing.assert_allclose(
            list(served["attributions"].values()),
            list(local.values()),
            rtol=0,
            atol=VALUE_TOLERANCE,
        )


def test_unknown_model_is_404(server: Any, rows: pd.DataFrame) -> None:
    """A model name the server does not hold is answered 404."""
    response = httpx.post(
        f"{server.base_url}/v1/models/no-such-model:predict",
        json={"instances": rows.values.tolist()[:1]},
    )
    assert response.status_code == 404


def _malformed(
    columns: list[str], good_row: list[float], *, max_rows: int, max_body_bytes: int
) -> list[tuple[str, Any]]:
    """(case id, request) pairs; a request is (path, body, expected status, text)."""
    first = columns[0]
    record = dict(zip(columns, good_row, strict=True))
    v2 = [
        {"name": name, "shape": [1], "datatype": "FP64", "data": [value]}
        for name, value in record.items()
    ]

    def with_v2(index: int, **change: Any) -> list[dict[str, Any]]:
        tensors = [dict(tensor) for tensor in v2]
        tensors[index].update(change)
        return tensors

    width = len(columns)  # every breast-cancer column is numeric: width unchanged

    def features(**change: Any) -> dict[str, Any]:
        tensor = {"name": "features", "shape": [1, width], "datatype": "FP32"}
        return {**tensor, "data": [0.0] * width, **change}

    big_row = json.dumps(good_row)
    too_big = (
        '{"instances": ['
        + ",".join([big_row] * (max_body_bytes // len(big_row) + 10))
        + "]}"
    )
    return [
        ("empty-instances", ("v1", {"instances": []}, 400, "empty")),
        ("no-instances-key", ("v1", {"rows": [good_row]}, 400, "instances")),
        ("instances-not-list", ("v1", {"instances": {"a": 1}}, 400, "list")),
        ("row-too-short", ("v1", {"instances": [good_row[:-1]]}, 400, "instances[0]")),
        (
            "row-too-long",
            ("v1", {"instances": [[*good_row, 1.0]]}, 400, "instances[0]"),
        ),
        ("text-in-number", ("v1", {"instances": [["x", *good_row[1:]]]}, 400, first)),
        ("bool-in-number", ("v1", {"instances": [[True, *good_row[1:]]]}, 400, first)),
        (
            "null-never-missing",
            ("v1", {"instances": [[None, *good_row[1:]]]}, 400, first),
        ),
        ("nested-value", ("v1", {"instances": [[[1.0], *good_row[1:]]]}, 400, first)),
        (
            "unknown-column",
            ("v1", {"instances": [{**record, "bogus": 1}]}, 400, "bogus"),
        ),
        (
            "missing-column",
            (
                "v1",
                {"instances": [{k: v for k, v in record.items() if k != first}]},
                400,
                first,
            ),
        ),
        ("mixed-rows", ("v1", {"instances": [good_row, record]}, 400, "instances")),
        ("scalar-row", ("v1", {"instances": [3.0]}, 400, "instances")),
        (
            "too-many-rows",
            ("v1", {"instances": [good_row] * (max_rows + 1)}, 413, str(max_rows)),
        ),
        ("body-too-large", ("v1", too_big.encode(), 413, str(max_body_bytes))),
        ("invalid-json", ("v1", b'{"instances": [1, 2', 400, "")),
        (
            "huge-number",
            ("v1", b'{"instances": [[1e400' + b", 1.0" * 29 + b"]]}", 400, ""),
        ),
        (
            "explain-bad-row",
            ("explain", {"instances": [good_row[:3]]}, 400, "instances[0]"),
        ),
        (
            "v2-unknown-input",
            ("v2", {"inputs": with_v2(0, name="bogus")}, 400, "bogus"),
        ),
        ("v2-missing-input", ("v2", {"inputs": v2[1:]}, 400, first)),
        (
            "v2-bytes-for-number",
            ("v2", {"inputs": with_v2(0, datatype="BYTES", data=["a"])}, 400, first),
        ),
        ("v2-shape-mismatch", ("v2", {"inputs": with_v2(0, shape=[2])}, 400, first)),
        (
            "v2-ragged-rows",
            ("v2", {"inputs": with_v2(1, shape=[2], data=[1.0, 2.0])}, 400, columns[1]),
        ),
        ("v2-text-in-fp64", ("v2", {"inputs": with_v2(0, data=["x"])}, 400, first)),
        ("v2-empty-inputs", ("v2", {"inputs": []}, 400, "inputs")),
        ("v2-no-inputs-key", ("v2", {"tensors": v2}, 422, "")),
        ("v2-3d-shape", ("v2", {"inputs": with_v2(0, shape=[1, 1, 1])}, 400, first)),
        ("v2-invalid-json", ("v2", b'{"inputs": [', 400, "JSON")),
        (
            "v2-features-wrong-width",
            (
                "v2",
                {"inputs": [features(shape=[1, 2], data=[0.0, 1.0])]},
                400,
                "[1, 2]",
            ),
        ),
        (
            "v2-features-text",
            ("v2", {"inputs": [features(data=["x"] * width)]}, 400, "features"),
        ),
        (
            "v2-features-int-datatype",
            ("v2", {"inputs": [features(datatype="INT64")]}, 400, "FP32"),
        ),
        (
            "v2-unknown-output",
            ("v2", {"inputs": v2, "outputs": [{"name": "bogus"}]}, 400, "bogus"),
        ),
    ]


def _send(server: Any, route: str, body: Any) -> httpx.Response:
    url = {
        "v1": _v1(server),
        "explain": _v1(server, "explain"),
        "v2": f"{server.base_url}/v2/models/{MODEL_NAME}/infer",
    }[route]
    if isinstance(body, bytes):
        return httpx.post(
            url, content=body, headers={"content-type": "application/json"}
        )
    return httpx.post(url, json=body)


def test_malformed_requests_get_4xx_and_server_survives(
    server: Any, rows: pd.DataFrame
) -> None:
    """Each of 32 malformed requests is refused with 4xx naming the field; serving goes on."""
    good_row = rows.values.tolist()[0]
    cases = _malformed(
        list(rows.columns),
        good_row,
        max_rows=server.max_rows,
        max_body_bytes=server.max_body_bytes,
    )
    assert len(cases) >= 20
    failures = []
    for case_id, (route, body, status, text) in cases:
        response = _send(server, route, body)
        if response.status_code != status or text not in response.text:
            failures.append(f"{case_id}: {response.status_code} {response.text[:200]}")
        healthy = httpx.post(_v1(server), json={"instances": [good_row]})
        assert healthy.status_code == 200, f"server broken after {case_id}"
    assert not failures, "\n".join(failures)


def test_chunked_body_over_limit_is_413(server: Any) -> None:
    """A streamed body without Content-Length is cut off at the byte limit with 413."""

    def chunks() -> Any:
        yield b'{"instances": ['
        for _ in range(server.max_body_bytes // 1000 + 10):
            yield b"[" + b"1.0," * 249 + b"1.0],"
        yield b"]}"

    response = httpx.post(_v1(server), content=chunks())
    assert response.status_code == 413
    assert httpx.get(f"{server.base_url}/v2/health/ready").status_code == 200


def test_bad_binary_tensor_is_400(server: Any) -> None:
    """A binary V2 request whose data is shorter than declared is refused with 400."""
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "features",
                    "shape": [1, 30],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 120},
                }
            ]
        }
    ).encode()
    response = httpx.post(
        f"{server.base_url}/v2/models/{MODEL_NAME}/infer",
        content=header + b"\0" * 8,
        headers={"inference-header-content-length": str(len(header))},
    )
    assert response.status_code == 400
    assert "binary_data_size" in response.text


def test_refused_requests_log_one_warning_line(server: Any, rows: pd.DataFrame) -> None:
    """Each 4xx is one WARNING line with status, model and message; no traceback."""
    v2 = f"{server.base_url}/v2/models/{MODEL_NAME}/infer"
    bad = [
        (_v1(server), {"instances": [rows.values.tolist()[0][:-1]]}, 400),
        (v2, {"inputs": []}, 400),
        (v2, {"tensors": []}, 422),
        (f"{server.base_url}/v1/models/no-such-model:predict", {"instances": []}, 404),
    ]
    before = len(server.log().splitlines())
    messages = []
    for url, body, status in bad:
        response = httpx.post(url, json=body)
        assert response.status_code == status
        messages.append(response.json().get("error", "inputs: Field required"))
    new_lines = server.log().splitlines()[before:]
    warnings = [line for line in new_lines if " WARNING " in line]
    assert len(warnings) == len(bad), "\n".join(new_lines)
    for line, (_, _, status), message in zip(warnings, bad, messages, strict=True):
        assert " WARNING components.serving.rest: " in line
        assert f" {status} POST " in line and message in line
    models = [line.split("(model ")[1].split(")")[0] for line in warnings]
    assert models == [MODEL_NAME] * 3 + ["no-such-model"]
    assert not [line for line in new_lines if "Traceback" in line or " ERROR " in line]

    # A body refused by its declared size never reaches the app; it logs one line too.
    before = len(server.log().splitlines())
    too_big = httpx.post(_v1(server), content=b" " * (server.max_body_bytes + 1))
    assert too_big.status_code == 413
    new_lines = server.log().splitlines()[before:]
    (warning,) = [line for line in new_lines if " WARNING " in line]
    assert f" 413 POST /v1/models/{MODEL_NAME}:predict: " in warning


def test_client_hanging_up_mid_body_is_one_info_line(
    server: Any, rows: pd.DataFrame, expected: np.ndarray
) -> None:
    """A client that closes its connection halfway through a body: one INFO line, no
    ERROR or traceback, and the server answers the next request."""
    import socket
    import time

    before = len(server.log().splitlines())
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
            conn.sendall(
                f"POST /v1/models/{MODEL_NAME}:predict HTTP/1.1\r\n"
                "Host: 127.0.0.1\r\nContent-Type: application/json\r\n"
                "Content-Length: 1000\r\n\r\n".encode()
                + b'{"instances": [[1.0, '
            )
            time.sleep(0.2)  # the server is now waiting for the rest of the body
    response = httpx.post(_v1(server), json={"instances": rows.values.tolist()})
    assert response.status_code == 200
    served = [p["probability"] for p in response.json()["predictions"]]
    np.testing.assert_allclose(served, expected, rtol=0, atol=VALUE_TOLERANCE)

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        new_lines = server.log().splitlines()[before:]
        hung_up = [line for line in new_lines if "closed the connection" in line]
        if len(hung_up) == 3:
            break
        time.sleep(0.1)
    assert len(hung_up) == 3, "\n".join(new_lines)
    assert all(" INFO components.serving.rest: " in line for line in hung_up)
    assert not [line for line in new_lines if "Traceback" in line or " ERROR " in line]
