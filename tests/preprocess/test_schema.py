"""Schema inference and validation."""

import numpy as np
import pandas as pd
import pytest

from components.common.errors import DataError, SchemaError
from components.preprocess.schema import Schema, infer_schema, validate_frame


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "distance": [100.0, 250.0, np.nan, 400.0],
            "carrier": ["AA", "UA", "AA", None],
            "label": ["yes", "no", "yes", "no"],
        }
    )


def test_infers_kinds_categories_and_ranges() -> None:
    """Numbers become numeric with min/max; text becomes categorical with its values."""
    schema = infer_schema(
        _frame(), features=["distance", "carrier"], target="label", task="binary"
    )
    distance, carrier = schema.columns
    assert (distance.kind, distance.minimum, distance.maximum) == (
        "numeric",
        100.0,
        400.0,
    )
    assert distance.missing_share == pytest.approx(0.25)
    assert (carrier.kind, carrier.categories) == ("categorical", ["AA", "UA"])
    assert schema.classes == ["no", "yes"]
    assert schema.positive_class == "yes"


def test_round_trips_through_json(tmp_path) -> None:
    """A saved schema loads back equal."""
    schema = infer_schema(
        _frame(), features=["distance", "carrier"], target="label", task="binary"
    )
    schema.save(tmp_path / "schema.json")
    assert Schema.load(tmp_path / "schema.json") == schema


def test_text_in_numeric_column_is_an_error() -> None:
    """A mostly numeric column with a stray word names the column and the value."""
    frame = pd.DataFrame(
        {"x": [str(i) for i in range(40)] + ["n/a"], "y": [0, 1] * 20 + [0]}
    )
    with pytest.raises(DataError, match=r"column 'x' is numeric but holds text: 'n/a'"):
        infer_schema(frame, features=["x"], target="y", task="binary")


def test_single_class_and_missing_target_are_errors() -> None:
    """One class, or no target values at all, cannot train a classifier."""
    frame = pd.DataFrame(
        {"x": [1, 2, 3], "y": ["a", "a", "a"], "z": [None, None, None]}
    )
    with pytest.raises(DataError, match="single class 'a'"):
        infer_schema(frame, features=["x"], target="y", task="binary")
    with pytest.raises(DataError, match="all missing"):
        infer_schema(frame, features=["x"], target="z", task="binary")


def test_labels_follow_positive_class() -> None:
    """Labels are 1.0 exactly where the target equals the positive class."""
    frame = _frame()
    schema = infer_schema(
        frame, features=["distance"], target="label", task="binary", positive_class="no"
    )
    assert schema.labels(frame).tolist() == [0.0, 1.0, 0.0, 1.0]


def test_validate_frame_rejects_missing_columns_text_and_infinity() -> None:
    """Later tables must carry every feature with numbers where numbers belong."""
    schema = infer_schema(
        _frame(), features=["distance", "carrier"], target="label", task="binary"
    )
    validate_frame(_frame(), schema)
    with pytest.raises(SchemaError, match="missing column 'carrier'"):
        validate_frame(_frame().drop(columns=["carrier"]), schema)
    with pytest.raises(SchemaError, match="'distance' must be numeric, got 'far'"):
        validate_frame(_frame().assign(distance=["far", 1, 2, 3]), schema)
    with pytest.raises(SchemaError, match="infinity"):
        validate_frame(_frame().assign(distance=[1.0, np.inf, 2.0, 3.0]), schema)
