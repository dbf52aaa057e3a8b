"""KServe payload-logger events: CloudEvents in, feature rows and predictions out.

KServe's logger posts each request and each response of an InferenceService as a
CloudEvent in binary mode: the `ce-*` headers carry the attributes (`ce-type`
`org.kubeflow.serving.inference.request` or `...response`, `ce-id` shared by a
request and its response, and the extensions `ce-inferenceservicename`,
`ce-namespace`, `ce-component`, `ce-endpoint`), the body is the raw V1
(`instances` / `predictions`) or V2 (`inputs` / `outputs`) payload. `parse_event`
turns one into an `InferenceEvent`; `decode_rows` and `decode_predictions` read the
payload with the model's schema. The monitor (`service.py`) pairs and windows them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cloudevents.exceptions import GenericException
from cloudevents.http import from_http

from components.common.errors import PlumbError
from components.preprocess.schema import Schema

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
EVENT_TYPES = {REQUEST_TYPE: "request", RESPONSE_TYPE: "response"}
DEFAULT_ENDPOINT = "default"
# InferenceService names are DNS-1035 labels; endpoints are `default` or `canary`.
# Both become folder names and metric labels, so anything else is refused.
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class EventError(PlumbError):
    """An event the monitor refuses; `reason` labels the rejection metric."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class InferenceEvent:
    """One logged request or response of an InferenceService."""

    event_id: str
    kind: str
    inference_service: str
    namespace: str
    endpoint: str
    component: str
    payload: dict[str, Any]


def parse_event(headers: Mapping[str, str], body: bytes) -> InferenceEvent:
    """Parse one HTTP request of KServe's logger into an event.

    Args:
        headers: The HTTP headers (any case).
        body: The raw body.

    Raises:
        EventError: Not a CloudEvent, an unknown `ce-type`, a body that is not a JSON
            object, or a missing or malformed InferenceService name.
    """
    try:
        event = from_http(dict(headers), body)
    except GenericException as err:
        raise EventError(
            f"not a CloudEvent ({err}); the monitor takes KServe logger events with "
            "ce-specversion, ce-id, ce-type and ce-source headers",
            reason="not_cloudevent",
        ) from err
    if not str(event["id"]).strip():
        raise EventError(
            "ce-id is empty; KServe sets it to the request id that pairs a request "
            "with its response",
            reason="bad_attribute",
        )
    kind = EVENT_TYPES.get(str(event["type"]))
    if kind is None:
        raise EventError(
            f"unknown ce-type {event['type']!r}; expected {REQUEST_TYPE!r} or "
            f"{RESPONSE_TYPE!r}",
            reason="unknown_type",
        )
    payload = event.data
    if not isinstance(payload, dict):
        raise EventError(
            f"the {kind} body is not a JSON object (got {_preview(payload)}); KServe "
            "logs the V1 or V2 JSON payload",
            reason="not_json",
        )
    service = str(event.get("inferenceservicename") or "")
    endpoint = str(event.get("endpoint") or DEFAULT_ENDPOINT)
    for attribute, value in (("inferenceservicename", service), ("endpoint", endpoint)):
        if not _NAME.match(value):
            raise EventError(
                f"ce-{attribute} {value!r} is missing or not a DNS label; KServe sets "
                "it to the InferenceService name and default or canary",
                reason="bad_attribute",
            )
    return InferenceEvent(
        event_id=str(event["id"]),
        kind=kind,
        inference_service=service,
        namespace=str(event.get("namespace") or ""),
        endpoint=endpoint,
        component=str(event.get("component") or "predictor"),
        payload=payload,
    )


def decode_rows(payload: dict[str, Any], schema: Schema) -> list[dict[str, Any]]:
    """Read the feature rows of a V1 or V2 request with the model's schema.

    V1: `instances` holds objects keyed by column, or lists in schema column order.
    V2: `inputs` holds one tensor per column (named by the column), or one tensor of
    shape [rows, columns] in schema column order.

    Raises:
        EventError: The payload is neither protocol, or a row does not fit the schema
            (a missing column, text in a numeric column, infinity).
    """
    if "instances" in payload:
        rows = _v1_rows(payload["instances"], schema)
    elif "inputs" in payload:
        rows = _v2_rows(payload["inputs"], schema)
    else:
        raise EventError(
            f"request payload has neither 'instances' (V1) nor 'inputs' (V2); keys: "
            f"{sorted(payload)[:10]}",
            reason="bad_payload",
        )
    if not rows:
        raise EventError("request payload holds no rows", reason="bad_payload")
    return [_check_row(row, schema, index) for index, row in enumerate(rows)]


def decode_predictions(payload: dict[str, Any], schema: Schema) -> list[float]:
    """Read one prediction per row from a V1 or V2 response.

    A row's prediction is a number (probability or value), a pair of class
    probabilities (the positive one is kept), for `binary` a class label, or plumb's
    predictor's object per row (`{"probability": p, "label": l}` or `{"value": v}`).

    Raises:
        EventError: The payload is neither protocol or holds a value of another form.
    """
    if "predictions" in payload:
        values = payload["predictions"]
        if not isinstance(values, list):
            raise EventError("V1 'predictions' must be a list", reason="bad_payload")
    elif "outputs" in payload:
        outputs = payload["outputs"]
        if not isinstance(outputs, list) or not outputs:
            raise EventError(
                "V2 'outputs' must be a non-empty list", reason="bad_payload"
            )
        tensor = _tensor(outputs[0])
        values = _reshape(tensor)
    else:
        raise EventError(
            f"response payload has neither 'predictions' (V1) nor 'outputs' (V2); "
            f"keys: {sorted(payload)[:10]}",
            reason="bad_payload",
        )
    return [_prediction(value, schema) for value in values]


def _v1_rows(instances: Any, schema: Schema) -> list[dict[str, Any]]:
    if not isinstance(instances, list):
        raise EventError("V1 'instances' must be a list", reason="bad_payload")
    names = schema.feature_names
    rows = []
    for index, instance in enumerate(instances):
        if isinstance(instance, dict):
            rows.append(instance)
        elif isinstance(instance, list) and len(instance) == len(names):
            rows.append(dict(zip(names, instance, strict=True)))
        else:
            raise EventError(
                f"instance {index} is {_preview(instance)}; send an object keyed by "
                f"column or a list of {len(names)} values in the order {names}",
                reason="schema",
            )
    return rows


def _v2_rows(inputs: Any, schema: Schema) -> list[dict[str, Any]]:
    if not isinstance(inputs, list) or not inputs:
        raise EventError("V2 'inputs' must be a non-empty list", reason="bad_payload")
    tensors = [_tensor(item) for item in inputs]
    names = schema.feature_names
    if len(tensors) == 1 and tensors[0]["name"] not in names:
        matrix = _reshape(tensors[0])
        return _v1_rows(matrix, schema)
    columns = {tensor["name"]: _reshape(tensor) for tensor in tensors}
    lengths = {len(values) for values in columns.values()}
    if len(lengths) != 1:
        raise EventError(
            f"V2 input tensors differ in length ({sorted(lengths)}); send one value per "
            "row in each",
            reason="schema",
        )
    (count,) = lengths
    return [
        {name: _scalar(values[row]) for name, values in columns.items()}
        for row in range(count)
    ]


def _tensor(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict) or not isinstance(item.get("data"), list):
        raise EventError(
            f"V2 tensor {_preview(item)} needs 'name', 'shape' and a 'data' list",
            reason="bad_payload",
        )
    return {"name": str(item.get("name", "")), **item}


def _reshape(tensor: dict[str, Any]) -> list[Any]:
    # V2 sends data flat (or nested) with a shape; rows are the first dimension.
    data = tensor["data"]
    shape = tensor.get("shape") or [len(data)]
    if data and isinstance(data[0], list):
        return data
    if len(shape) == 2 and shape[1] > 1:
        width = int(shape[1])
        if len(data) != int(shape[0]) * width:
            raise EventError(
                f"V2 tensor {tensor['name']!r} has {len(data)} values for shape {shape}",
                reason="bad_payload",
            )
        return [data[start : start + width] for start in range(0, len(data), width)]
    return data


def _scalar(value: Any) -> Any:
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


def _check_row(row: dict[str, Any], schema: Schema, index: int) -> dict[str, Any]:
    checked: dict[str, Any] = {}
    for column in schema.columns:
        if column.name not in row:
            raise EventError(
                f"row {index} lacks column {column.name!r}; expected columns "
                f"{schema.feature_names}",
                reason="schema",
            )
        value = row[column.name]
        if value is None:
            checked[column.name] = None
        elif column.kind == "numeric":
            checked[column.name] = _number(value, column=column.name, index=index)
        elif isinstance(value, dict | list):
            raise EventError(
                f"row {index} column {column.name!r} holds {_preview(value)}; send a "
                "single category",
                reason="schema",
            )
        else:
            checked[column.name] = str(value)
    return checked


def _number(value: Any, *, column: str, index: int) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise EventError(
            f"row {index} column {column!r} must be numeric, got {_preview(value)}",
            reason="schema",
        )
    try:
        number = float(value)
    except (ValueError, OverflowError) as err:
        raise EventError(
            f"row {index} column {column!r} must be a finite number, got "
            f"{_preview(value)}",
            reason="schema",
        ) from err
    if math.isinf(number):
        raise EventError(
            f"row {index} column {column!r} holds infinity; send a finite number or null",
            reason="schema",
        )
    return None if math.isnan(number) else number


def _prediction(value: Any, schema: Schema) -> float:
    if isinstance(value, dict):
        # plumb's predictor answers one object per row: probability (and label) or value.
        value = value.get("probability", value.get("value"))
    if isinstance(value, list):
        if len(value) == 1:
            value = value[0]
        elif len(value) == 2 and schema.task == "binary":
            value = value[1]
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and _finite(value):
        return float(value)
    if isinstance(value, str) and schema.task == "binary" and value in schema.classes:
        return 1.0 if value == schema.positive_class else 0.0
    raise EventError(
        f"prediction {_preview(value)} is not a number, a pair of class probabilities "
        "or a class label",
        reason="bad_payload",
    )


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float range
        return False


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
