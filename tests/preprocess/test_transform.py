"""The fitted transform: same numbers in training and serving."""

import numpy as np
import pandas as pd
import pytest

from components.common.errors import SchemaError
from components.preprocess.schema import infer_schema
from components.preprocess.transform import UNKNOWN, Transform


@pytest.fixture
def train() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "distance": [100.0, 200.0, 300.0, np.nan],
            "carrier": ["AA", "UA", "AA", "DL"],
            "label": [1, 0, 1, 0],
        }
    )


@pytest.fixture
def transform(train: pd.DataFrame) -> Transform:
    schema = infer_schema(
        train, features=["distance", "carrier"], target="label", task="binary"
    )
    return Transform.fit(train, schema)


def test_fit_learns_median_mean_and_scale(transform: Transform) -> None:
    """Missing numbers take the training median before scaling to mean 0, std 1."""
    (step,) = transform.numeric
    filled = np.array([100.0, 200.0, 300.0, 200.0])
    assert step.median == 200.0
    assert step.mean == pytest.approx(filled.mean())
    assert step.scale == pytest.approx(filled.std())


def test_output_layout(transform: Transform, train: pd.DataFrame) -> None:
    """Numeric columns come first, then one-hot blocks ending in the unknown bucket."""
    assert transform.output_names == [
        "distance",
        "carrier=AA",
        "carrier=DL",
        "carrier=UA",
        f"carrier={UNKNOWN}",
    ]
    matrix = transform.apply(train)
    assert matrix.dtype == np.float32
    assert matrix.shape == (4, 5)
    assert matrix[:, 1:].sum(axis=1).tolist() == [1.0] * 4
    assert matrix[:, 0].mean() == pytest.approx(0.0, abs=1e-6)


def test_json_round_trip_gives_identical_numbers(
    transform: Transform, train: pd.DataFrame, tmp_path
) -> None:
    """The transform saved at training and loaded at serving yields bit-identical rows."""
    transform.save(tmp_path / "transform.json")
    served = Transform.load(tmp_path / "transform.json")
    assert np.array_equal(served.apply(train), transform.apply(train))


def test_unseen_and_missing_categories_go_to_unknown(transform: Transform) -> None:
    """A carrier never seen in training, or none at all, lights the unknown bucket only."""
    rows = pd.DataFrame({"distance": [150.0, 150.0], "carrier": ["ZZ", None]})
    matrix = transform.apply(rows)
    assert matrix[:, 1:4].sum() == 0.0
    assert matrix[:, 4].tolist() == [1.0, 1.0]


def test_row_order_of_columns_does_not_matter(transform: Transform) -> None:
    """Columns are matched by name, not by position."""
    rows = pd.DataFrame({"carrier": ["UA"], "distance": [300.0]})
    assert transform.apply(rows)[0, 3] == 1.0


def test_missing_column_and_text_are_schema_errors(transform: Transform) -> None:
    """Serving rows without a column, or with text for a number, fail clearly."""
    with pytest.raises(SchemaError, match="missing column 'carrier'"):
        transform.apply(pd.DataFrame({"distance": [1.0]}))
    with pytest.raises(SchemaError, match="'distance' must be numeric"):
        transform.apply(pd.DataFrame({"distance": ["far"], "carrier": ["AA"]}))
