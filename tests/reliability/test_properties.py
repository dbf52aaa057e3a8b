"""Property-based tests (hypothesis) of the transform and of request decoding.

The transform must survive a JSON round trip and encode every row a schema allows into
a finite matrix of the right shape; the predictor's and the monitor's decoders must
accept every valid row and answer anything else, arbitrary JSON included, with plumb's
bad-input error only (which the servers map to 4xx), never another exception.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components.common.errors import PlumbError, SchemaError
from components.monitoring.events import EventError, decode_predictions, decode_rows
from components.preprocess.schema import ColumnSchema, Schema
from components.preprocess.transform import (
    CategoricalStep,
    NumericStep,
    Transform,
    category_codes,
)
from components.serving.errors import RequestTooLargeError, http_status
from components.serving.validation import parse_instances, parse_tensors

MAX_ROWS = 50
PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,  # tmp_path: one file, overwritten
    ],
)

finite = st.floats(allow_nan=False, allow_infinity=False)
names = st.text(alphabet=string.ascii_letters + "_ ", min_size=1, max_size=8)
category_text = st.text(max_size=6)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=30,
)


@st.composite
def schemas(draw: st.DrawFn) -> Schema:
    """A binary-task schema of 1-5 numeric and categorical columns."""
    column_names = draw(st.lists(names, min_size=1, max_size=5, unique=True))
    columns = []
    for name in column_names:
        missing_share = draw(st.sampled_from([0.0, 0.2]))
        if draw(st.booleans()):
            columns.append(
                ColumnSchema(name=name, kind="numeric", missing_share=missing_share)
            )
        else:
            categories = draw(
                st.lists(category_text, min_size=1, max_size=4, unique=True)
            )
            columns.append(
                ColumnSchema(
                    name=name,
                    kind="categorical",
                    categories=sorted(categories),
                    missing_share=missing_share,
                )
            )
    return Schema(
        columns=columns,
        target="y",
        task="binary",
        classes=["0", "1"],
        positive_class="1",
    )


def _value(column: ColumnSchema) -> st.SearchStrategy[Any]:
    """A value a request may hold in this column."""
    if column.kind == "numeric":
        value: st.SearchStrategy[Any] = finite | st.integers(-(2**53), 2**53)
    else:
        value = st.sampled_from(column.categories) | category_text | st.integers()
    return value | st.none() if column.missing_share > 0 else value


@st.composite
def schema_and_rows(draw: st.DrawFn) -> tuple[Schema, list[list[Any]]]:
    """A schema and 1-MAX_ROWS rows (lists in column order) that fit it."""
    schema = draw(schemas())
    row = st.tuples(*(_value(column) for column in schema.columns)).map(list)
    return schema, draw(st.lists(row, min_size=1, max_size=MAX_ROWS))


@st.composite
def transforms(draw: st.DrawFn) -> Transform:
    """Any fitted state: finite medians and means, positive scales, text categories."""
    numeric = [
        NumericStep(
            name=f"n{index}",
            median=draw(finite),
            mean=draw(finite),
            scale=draw(st.floats(min_value=1e-12, max_value=1e12)),
        )
        for index in range(draw(st.integers(0, 4)))
    ]
    categorical = [
        CategoricalStep(
            name=f"c{index}",
            categories=draw(st.lists(category_text, max_size=5, unique=True)),
        )
        for index in range(draw(st.integers(0, 3)))
    ]
    return Transform(numeric=numeric, categorical=categorical)


def _fit(schema: Schema, scale: float) -> Transform:
    """A transform fitted on three training rows of the given magnitude."""
    training = {
        column.name: [0.0, scale, -2.5 * scale]
        if column.kind == "numeric"
        else column.categories[:1] * 3
        for column in schema.columns
    }
    return Transform.fit(pd.DataFrame(training), schema)


@PROPERTY_SETTINGS
@given(transform=transforms())
def test_transform_round_trips_through_json(
    transform: Transform, tmp_path: Path
) -> None:
    """to_dict -> JSON text -> from_dict, and save -> load, give the same transform."""
    again = Transform.from_dict(json.loads(json.dumps(transform.to_dict())))
    assert again == transform
    path = tmp_path / "transform.json"
    transform.save(path)
    assert Transform.load(path) == transform
    assert again.width == transform.width
    assert again.output_names == transform.output_names


@PROPERTY_SETTINGS
@given(case=schema_and_rows(), scale=st.floats(min_value=1e-6, max_value=1e6))
def test_valid_rows_are_accepted_and_encode_finite(
    case: tuple[Schema, list[list[Any]]], scale: float
) -> None:
    """Rows that fit the schema parse, and encode to a finite (rows, width) matrix."""
    schema, rows = case
    transform = _fit(schema, scale)
    parsed = parse_instances(rows, schema, max_rows=MAX_ROWS)
    assert parsed.rows == len(rows)
    codes = {
        step.name: category_codes(parsed.categorical[step.name], step.categories)
        for step in transform.categorical
    }
    matrix = transform.encode(parsed.numeric, codes, rows=parsed.rows)
    assert matrix.shape == (len(rows), transform.width)
    assert matrix.dtype == np.float32
    assert np.isfinite(matrix).all()
    # Each categorical block is one-hot: exactly one 1 per row.
    offset = len(transform.numeric)
    for step in transform.categorical:
        block = matrix[:, offset : offset + len(step.categories) + 1]
        assert (block.sum(axis=1) == 1.0).all()
        offset += len(step.categories) + 1
    # Objects keyed by column parse to the same values as lists.
    records = [dict(zip(schema.feature_names, row, strict=True)) for row in rows]
    as_objects = parse_instances(records, schema, max_rows=MAX_ROWS)
    for name, values in parsed.numeric.items():
        np.testing.assert_array_equal(as_objects.numeric[name], values)


@PROPERTY_SETTINGS
@given(case=schema_and_rows())
def test_monitor_decodes_every_valid_row(case: tuple[Schema, list[list[Any]]]) -> None:
    """The monitor's decoder takes the same valid rows the predictor does."""
    schema, rows = case
    decoded = decode_rows({"instances": rows}, schema)
    assert len(decoded) == len(rows)
    assert all(set(row) == set(schema.feature_names) for row in decoded)


def _predictor_decode(payload: Any, schema: Schema) -> None:
    if isinstance(payload, dict) and "inputs" in payload:
        inputs = payload["inputs"]
        tensors = [
            (
                str(item.get("name")),
                str(item.get("datatype")),
                item.get("shape"),
                item.get("data"),
            )
            for item in (inputs if isinstance(inputs, list) else [])
            if isinstance(item, dict)
        ]
        parse_tensors(tensors, schema, max_rows=MAX_ROWS)  # type: ignore[arg-type]
    else:
        instances = payload.get("instances") if isinstance(payload, dict) else payload
        parse_instances(instances, schema, max_rows=MAX_ROWS)


@PROPERTY_SETTINGS
@given(schema=schemas(), payload=json_values)
def test_arbitrary_json_gives_only_bad_input_errors(
    schema: Schema, payload: Any
) -> None:
    """Any JSON value is accepted or refused with a 4xx error, never another exception."""
    for body in (payload, {"instances": payload}, {"instances": [payload]}):
        try:
            _predictor_decode(body, schema)
        except (SchemaError, RequestTooLargeError) as err:
            assert 400 <= http_status(err) < 500
            assert str(err)
        try:
            decode_rows(body if isinstance(body, dict) else {"instances": body}, schema)
        except EventError as err:
            assert err.reason and str(err)
        try:
            decode_predictions({"predictions": payload}, schema)
        except EventError as err:
            assert err.reason and str(err)


@PROPERTY_SETTINGS
@given(
    schema=schemas(),
    columns=st.lists(
        st.tuples(
            names,
            st.sampled_from(["FP64", "FP32", "INT64", "BYTES", "BOOL", "WAT"]),
            st.lists(st.integers(-2, 4), max_size=3),
            st.lists(json_scalars, max_size=6),
        ),
        max_size=5,
    ),
)
def test_arbitrary_v2_tensors_give_only_bad_input_errors(
    schema: Schema, columns: list[tuple[str, str, list[int], list[Any]]]
) -> None:
    """Any V2 tensor list (names, datatypes, shapes, values) parses or raises a 4xx."""
    # Half the time use the schema's own names so the value checks are reached.
    named = [
        (schema.feature_names[index % len(schema.feature_names)], *rest)
        if index % 2
        else (name, *rest)
        for index, (name, *rest) in enumerate(columns)
    ]
    for tensors in (columns, named):
        try:
            parse_tensors(tensors, schema, max_rows=MAX_ROWS)  # type: ignore[arg-type]
        except PlumbError as err:
            assert 400 <= http_status(err) < 500


def test_too_many_rows_is_413() -> None:
    """One row over the cap is refused as too large (413), naming the cap."""
    schema = Schema(
        columns=[ColumnSchema(name="x", kind="numeric")],
        target="y",
        task="binary",
        classes=["0", "1"],
        positive_class="1",
    )
    try:
        parse_instances([[1.0]] * (MAX_ROWS + 1), schema, max_rows=MAX_ROWS)
    except RequestTooLargeError as err:
        assert http_status(err) == 413
        assert str(MAX_ROWS) in str(err)
    else:
        raise AssertionError("expected RequestTooLargeError")
