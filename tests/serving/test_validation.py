"""Request checks against a training schema with numeric and categorical columns."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from components.common.errors import SchemaError
from components.preprocess.schema import ColumnSchema, Schema
from components.preprocess.transform import Transform, category_codes
from components.serving.errors import http_status
from components.serving.validation import parse_instances, parse_tensors

SCHEMA = Schema(
    columns=[
        ColumnSchema(name="age", kind="numeric", minimum=18, maximum=90),
        ColumnSchema(name="income", kind="numeric", missing_share=0.1),
        ColumnSchema(name="city", kind="categorical", categories=["Lyon", "Paris"]),
        ColumnSchema(
            name="plan", kind="categorical", categories=["1", "2"], missing_share=0.2
        ),
    ],
    target="churn",
    task="binary",
    classes=["no", "yes"],
    positive_class="yes",
)


def test_mixed_rows_encode_like_transform_apply() -> None:
    """Parsed request rows encode to exactly the matrix Transform.apply builds."""
    rows = [
        [30, 1000.5, "Paris", "1"],
        [45, None, "Berlin", None],
        [60, 20.0, "Lyon", 2],
    ]
    parsed = parse_instances(rows, SCHEMA, max_rows=10)
    frame = pd.DataFrame(rows, columns=SCHEMA.feature_names)
    transform = Transform.fit(
        pd.DataFrame(
            {
                "age": [20, 40],
                "income": [1.0, 3.0],
                "city": ["Lyon", "Paris"],
                "plan": ["1", "2"],
            }
        ),
        SCHEMA,
    )
    codes = {
        step.name: category_codes(parsed.categorical[step.name], step.categories)
        for step in transform.categorical
    }
    encoded = transform.encode(parsed.numeric, codes, rows=parsed.rows)
    np.testing.assert_array_equal(encoded, transform.apply(frame))


@pytest.mark.parametrize(
    ("rows", "field"),
    [
        ([[30, 1.0, 3.5, "1"]], "city"),  # a float where a category belongs
        ([[30, 1.0, None, "1"]], "city"),  # null in a column never missing in training
        ([[30, 1.0, ["Paris"], "1"]], "city"),
        ([["30", 1.0, "Paris", "1"]], "age"),  # text in a number
        ([[30, float("inf"), "Paris", "1"]], "income"),
        ([[None, 1.0, "Paris", "1"]], "age"),
        ([{"age": 30, "income": 1.0, "town": "Paris", "plan": "1"}], "town"),
    ],
)
def test_bad_rows_name_the_field(rows: list, field: str) -> None:
    """Each bad row raises SchemaError (HTTP 400) whose message names the column."""
    with pytest.raises(SchemaError, match=field) as caught:
        parse_instances(rows, SCHEMA, max_rows=10)
    assert http_status(caught.value) == 400


def test_null_allowed_where_training_had_missing() -> None:
    """Null is accepted in columns that were missing in training, and becomes NaN."""
    parsed = parse_instances([[30, None, "Paris", None]], SCHEMA, max_rows=10)
    assert np.isnan(parsed.numeric["income"][0])
    assert parsed.categorical["plan"][0] is None


def test_v2_tensors_check_datatype_per_kind() -> None:
    """V2: BYTES for a category passes, BYTES for a number is refused by name."""
    good = [
        ("age", "INT64", [1], [30]),
        ("income", "FP64", [1], [1.0]),
        ("city", "BYTES", [1], ["Paris"]),
        ("plan", "BYTES", [1], ["2"]),
    ]
    assert parse_tensors(good, SCHEMA, max_rows=10).rows == 1
    bad = [("age", "BYTES", [1], ["30"]), *good[1:]]
    with pytest.raises(SchemaError, match="'age' is numeric"):
        parse_tensors(bad, SCHEMA, max_rows=10)


def test_not_loaded_model_is_503(trained_model_dir: Path) -> None:
    """kserve's REST app answers 503 for a registered model that has not loaded."""
    import kserve.model_server
    from kserve.model_repository import ModelRepository
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.model_repository_extension import ModelRepositoryExtension
    from kserve.protocol.rest.server import RESTServer

    from components.serving.model import PlumbModel

    model = PlumbModel("cold", trained_model_dir)  # load() not called
    registry = ModelRepository()
    registry.update(model)
    rest = RESTServer(
        "kserve.model_server:app",
        DataPlane(model_registry=registry),
        ModelRepositoryExtension(model_registry=registry),
        http_port=0,
    )
    rest.create_application()
    client = TestClient(kserve.model_server.app)
    response = client.post("/v1/models/cold:predict", json={"instances": [[1.0]]})
    assert response.status_code == 503
    model.load()
    assert asyncio.run(model.healthy())


NUMERIC_SCHEMA = Schema(
    columns=[
        ColumnSchema(name="age", kind="numeric"),
        ColumnSchema(name="income", kind="numeric", missing_share=0.1),
    ],
    target="churn",
    task="binary",
    classes=["no", "yes"],
    positive_class="yes",
)


def test_numeric_rows_take_the_one_pass_path_and_encode_alike() -> None:
    """All-numeric list rows become one matrix that encodes like Transform.apply."""
    rows = [[30, 1000.5], [45, 20], [61.5, 7.0]]
    parsed = parse_instances(rows, NUMERIC_SCHEMA, max_rows=10)
    assert parsed.matrix is not None and parsed.matrix.shape == (3, 2)
    frame = pd.DataFrame(rows, columns=NUMERIC_SCHEMA.feature_names)
    transform = Transform.fit(frame, NUMERIC_SCHEMA)
    np.testing.assert_array_equal(
        transform.encode(parsed.matrix, {}, rows=3), transform.apply(frame)
    )
    np.testing.assert_array_equal(
        transform.encode(parsed.numeric, {}, rows=3), transform.apply(frame)
    )


@pytest.mark.parametrize(
    ("bad", "field", "row"),
    [(True, "age", 1), ("7", "age", 1), (None, "age", 1), (float("nan"), "age", 1)],
)
def test_numeric_rows_outside_the_one_pass_path_name_field_and_row(
    bad: object, field: str, row: int
) -> None:
    """A bool, text, null or NaN among numbers is refused naming column and row."""
    rows: list[list[object]] = [[30, 1.0], [bad, 2.0]]
    with pytest.raises(SchemaError, match=f"'{field}'.*row {row}"):
        parse_instances(rows, NUMERIC_SCHEMA, max_rows=10)


def test_v2_numeric_lists_take_the_one_pass_path_and_encode_alike() -> None:
    """V2 JSON number columns become one matrix that encodes like Transform.apply."""
    frame = pd.DataFrame({"age": [30, 0, 1, 61], "income": [1000.5, 1.0, 0.0, 7.25]})
    tensors = [
        (name, "FP64", [4], values)
        for name, values in frame.to_dict(orient="list").items()
    ]
    parsed = parse_tensors(tensors, NUMERIC_SCHEMA, max_rows=10)
    assert parsed.matrix is not None and parsed.matrix.shape == (4, 2)
    transform = Transform.fit(frame, NUMERIC_SCHEMA)
    np.testing.assert_array_equal(
        transform.encode(parsed.matrix, {}, rows=4), transform.apply(frame)
    )


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (True, "'income' must be a number, got True.*row 2"),
        (False, "'income' must be a number, got False.*row 2"),
        ("7", "'income' must be a number, got '7'.*row 2"),
        ([1.0], "'income' must be a number, got \\[1.0\\].*row 2"),
        (10**400, "'income' holds a number beyond the float64 range at row 2"),
    ],
)
def test_v2_and_object_rows_refuse_non_numbers_by_field_and_row(
    bad: object, message: str
) -> None:
    """A bool (which numpy would read as 0 or 1), text, a list or a huge int among
    numbers is refused naming column and row, in V2 tensors and V1 objects alike."""
    incomes: list[object] = [1.0, 0.0, bad]
    tensors = [("age", "INT64", [3], [30, 1, 0]), ("income", "FP64", [3], incomes)]
    with pytest.raises(SchemaError, match=message):
        parse_tensors(tensors, NUMERIC_SCHEMA, max_rows=10)
    objects = [{"age": 30, "income": value} for value in incomes]
    with pytest.raises(SchemaError, match=message):
        parse_instances(objects, NUMERIC_SCHEMA, max_rows=10)


def test_v2_null_in_a_sometimes_missing_column_is_nan() -> None:
    """Null leaves the one-pass path and is still NaN where training had missing."""
    tensors = [("age", "INT64", [2], [30, 40]), ("income", "FP64", [2], [None, 2.0])]
    parsed = parse_tensors(tensors, NUMERIC_SCHEMA, max_rows=10)
    assert np.isnan(parsed.numeric["income"][0]) and parsed.numeric["age"][1] == 40


def test_ints_beyond_exact_doubles_still_parse_as_floats() -> None:
    """An int no double holds exactly leaves the one-pass path and parses as float()."""
    rows = [[2**60, 1.5], [3, 2**53 + 1]]
    parsed = parse_instances(rows, NUMERIC_SCHEMA, max_rows=10)
    np.testing.assert_array_equal(parsed.numeric["age"], [float(2**60), 3.0])
    np.testing.assert_array_equal(parsed.numeric["income"], [1.5, float(2**53 + 1)])
    tensors = [
        (name, "INT64", [2], list(column))
        for name, column in zip(
            NUMERIC_SCHEMA.feature_names, zip(*rows, strict=True), strict=True
        )
    ]
    np.testing.assert_array_equal(
        parse_tensors(tensors, NUMERIC_SCHEMA, max_rows=10).matrix, parsed.matrix
    )


@pytest.mark.parametrize("flags", [3, 300], ids=["few zeros and ones", "many"])
def test_a_bool_among_zeros_and_ones_is_refused(flags: int) -> None:
    """A bool hidden among 0/1 flags is found, whether few or most values are flags."""
    rows: list[list[object]] = [
        [index % 2 if index < flags else 2.5, 1.5] for index in range(400)
    ]
    rows[flags - 1][0] = True
    with pytest.raises(
        SchemaError, match=f"'age' must be a number, got True.*row {flags - 1}"
    ):
        parse_instances(rows, NUMERIC_SCHEMA, max_rows=1000)
    rows[flags - 1][0] = 1
    parsed = parse_instances(rows, NUMERIC_SCHEMA, max_rows=1000)
    assert parsed.matrix is not None
    assert parsed.matrix[:flags, 0].sum() == (flags - 1) // 2 + 1


def test_features_tensor_beyond_float32_is_clipped_not_nan(
    trained_model_dir: Path,
) -> None:
    """Finite `features` values too large for float32 are clipped to the transform's
    bound (as raw rows are), so the answer is a probability, never null."""
    from kserve import InferInput, InferRequest

    from components.preprocess.transform import SCALED_LIMIT
    from components.serving.model import PlumbModel
    from components.serving.validation import parse_feature_matrix

    width = 3
    matrix = parse_feature_matrix(
        [1e300, -3e38, 0.5], datatype="FP64", shape=[1, width], width=width, max_rows=5
    )
    assert matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix, [[SCALED_LIMIT, -SCALED_LIMIT, 0.5]])
    for bad, message in (
        (float("nan"), "NaN or infinity in row 0"),
        (10**400, "no float"),
    ):
        with pytest.raises(SchemaError, match=message):
            parse_feature_matrix(
                [bad, 0.0, 0.0], datatype="FP64", shape=[1, 3], width=3, max_rows=5
            )

    model = PlumbModel("m", trained_model_dir)
    model.load()
    width = model.runtime.transform.width
    tensor = InferInput("features", [2, width], "FP32")
    huge = np.full((2, width), 3e38, dtype=np.float32) * [[1.0], [-1.0]]
    tensor.set_data_from_numpy(huge.astype(np.float32), binary_data=False)
    answer = asyncio.run(model.predict(InferRequest("m", infer_inputs=[tensor])))
    probabilities = list(answer.outputs[0].data)
    assert all(0.0 <= p <= 1.0 for p in probabilities), probabilities
