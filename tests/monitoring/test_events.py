"""Parsing KServe logger CloudEvents and decoding V1/V2 payloads with the schema."""

from __future__ import annotations

import json

import pytest
from monitor_helpers import kserve_headers

from components.monitoring.events import (
    EventError,
    decode_predictions,
    decode_rows,
    parse_event,
)
from components.preprocess.schema import ColumnSchema, Schema

SCHEMA = Schema(
    columns=[
        ColumnSchema("distance", "numeric"),
        ColumnSchema("carrier", "categorical", categories=["AA", "UA"]),
    ],
    target="arr_delayed",
    task="binary",
    classes=["delayed", "on_time"],
    positive_class="delayed",
)


def test_parse_kserve_request_event() -> None:
    """The headers KServe's logger sends give kind, id, service and endpoint."""
    body = json.dumps({"instances": [{"distance": 100, "carrier": "UA"}]}).encode()
    event = parse_event(kserve_headers("request", "abc", endpoint="canary"), body)
    assert (event.kind, event.event_id) == ("request", "abc")
    assert (event.inference_service, event.endpoint, event.namespace) == (
        "flights",
        "canary",
        "plumb",
    )
    assert event.payload["instances"][0]["carrier"] == "UA"


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        ({"Content-Type": "application/json"}, b'{"instances": []}', "not_cloudevent"),
        ({"Content-Type": "text/plain"}, b"hello", "not_cloudevent"),
        (
            {**kserve_headers("request", "a"), "Ce-Type": "com.example.x"},
            b"{}",
            "unknown_type",
        ),
        (kserve_headers("request", "a"), b"not json", "not_json"),
        (kserve_headers("request", "a"), b"[1, 2]", "not_json"),
        (
            {**kserve_headers("request", "a"), "Ce-Inferenceservicename": "../etc"},
            b"{}",
            "bad_attribute",
        ),
    ],
)
def test_bad_events_are_refused_with_a_reason(
    headers: dict[str, str], body: bytes, reason: str
) -> None:
    """Each kind of broken event raises EventError with its counted reason."""
    with pytest.raises(EventError) as caught:
        parse_event(headers, body)
    assert caught.value.reason == reason


def test_decode_v1_objects_and_lists() -> None:
    """V1 instances may be objects keyed by column or lists in schema order."""
    rows = decode_rows(
        {
            "instances": [
                {"distance": "12.5", "carrier": "AA"},
                [300, "UA"],
                [None, None],
            ]
        },
        SCHEMA,
    )
    assert rows == [
        {"distance": 12.5, "carrier": "AA"},
        {"distance": 300.0, "carrier": "UA"},
        {"distance": None, "carrier": None},
    ]


def test_decode_v2_tensors_per_column_and_matrix() -> None:
    """V2 inputs may be one tensor per column or a [rows, columns] tensor."""
    per_column = {
        "inputs": [
            {"name": "distance", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]},
            {
                "name": "carrier",
                "shape": [2],
                "datatype": "BYTES",
                "data": ["AA", "UA"],
            },
        ]
    }
    matrix = {
        "inputs": [
            {
                "name": "input-0",
                "shape": [2, 2],
                "datatype": "BYTES",
                "data": [1.0, "AA", 2.0, "UA"],
            }
        ]
    }
    expected = [{"distance": 1.0, "carrier": "AA"}, {"distance": 2.0, "carrier": "UA"}]
    assert decode_rows(per_column, SCHEMA) == expected
    assert decode_rows(matrix, SCHEMA) == expected


@pytest.mark.parametrize(
    "payload",
    [
        {"instances": [{"distance": "far", "carrier": "AA"}]},
        {"instances": [{"distance": 1.0}]},
        {"instances": [{"distance": float("inf"), "carrier": "AA"}]},
        {"instances": [[1.0]]},
        {"instances": []},
        {"rows": [1]},
        {
            "inputs": [
                {"name": "distance", "data": [1.0]},
                {"name": "carrier", "data": ["AA", "UA"]},
            ]
        },
    ],
)
def test_rows_that_do_not_fit_the_schema_are_refused(payload: dict) -> None:
    """Text in a numeric column, a missing column, infinity or no rows: EventError."""
    with pytest.raises(EventError):
        decode_rows(payload, SCHEMA)


def test_decode_predictions_v1_and_v2() -> None:
    """Numbers, class-probability pairs, labels and V2 outputs give one float a row."""
    assert decode_predictions({"predictions": [0.2, [0.3], [0.6, 0.4]]}, SCHEMA) == [
        0.2,
        0.3,
        0.4,
    ]
    assert decode_predictions({"predictions": ["delayed", "on_time"]}, SCHEMA) == [
        1.0,
        0.0,
    ]
    outputs = {"outputs": [{"name": "p", "shape": [2, 1], "data": [0.1, 0.9]}]}
    assert decode_predictions(outputs, SCHEMA) == [0.1, 0.9]
    # plumb's own predictor answers one object per row.
    plumb = {"predictions": [{"probability": 0.7, "label": "delayed"}, {"value": 2}]}
    assert decode_predictions(plumb, SCHEMA) == [0.7, 2.0]
    for bad in ({"x": 1}, float("nan"), 10**400):
        with pytest.raises(EventError):
            decode_predictions({"predictions": [bad]}, SCHEMA)
